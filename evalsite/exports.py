"""An experiment's comparison table as CSV, LaTeX (booktabs), JSON and plain text, and its
per-sample values as CSV. The CSV column names are a contract: add columns at the end,
never rename or reorder them."""
from __future__ import annotations

import csv
import io
import json
from typing import Iterable, Iterator

from evalsite.models import SampleScore
from evalsite.results import ResultsTable
from evalsite.results import format_value as formatted

RESULT_COLUMNS = (
    "experiment", "method", "method_identity", "metric", "value", "ci_low", "ci_high", "n_generated", "n_real",
    "extractor", "extractor_sha256", "protocol", "seeds", "computed_at",
    # added after the first release of this export:
    "std", "p_holm_vs_best", "significantly_worse_than_best", "best", "interval", "note",
)
SAMPLE_COLUMNS = (
    "experiment", "method", "method_identity", "metric", "sample_id", "seed", "value", "output", "extractor",
    "extractor_sha256", "computed_at", "note",
)


def scored_cells(table: ResultsTable):
    """(row, column, cell) of every computed number, row by row."""
    for row in table.rows:
        for column in table.columns:
            cell = row.cells.get(column.metric)
            if cell is not None:
                yield row, column, cell


def result_rows(table: ResultsTable) -> list[dict]:
    rows = []
    for row, column, cell in scored_cells(table):
        score = cell.score
        rows.append({
            "experiment": table.experiment.name,
            "method": row.key,
            "method_identity": row.method.identity,
            "metric": column.metric,
            "value": score.value,
            "ci_low": _blank(score.ci_low),
            "ci_high": _blank(score.ci_high),
            "n_generated": score.n_generated,
            "n_real": _blank(score.n_real),
            "extractor": score.extractor,
            "extractor_sha256": score.extractor_sha256,
            "protocol": score.protocol,
            "seeds": " ".join(str(s) for s in score.seeds),
            "computed_at": score.computed_at.isoformat(),
            "std": _blank(score.std),
            "p_holm_vs_best": _blank(cell.p_holm),
            "significantly_worse_than_best": "yes" if cell.worse else "no",
            "best": "yes" if cell.best else "no",
            "interval": score.provenance.get("interval", ""),
            "note": score.provenance.get("note", ""),
        })
    return rows


def results_csv(table: ResultsTable) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=RESULT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(result_rows(table))
    return buffer.getvalue()


def sample_rows(table: ResultsTable) -> Iterator[dict]:
    """Per-sample values of every score in the table (region CLIP score), streamed."""
    for row, column, cell in scored_cells(table):
        if column.metric != "clip_score":
            continue  # the only metric with a value per output
        score = cell.score
        values = (SampleScore.objects.filter(score=score).select_related("sample", "output")
                  .order_by("sample__sample_id", "seed"))
        for value in values.iterator(chunk_size=2000):
            yield {
                "experiment": table.experiment.name,
                "method": row.key,
                "method_identity": row.method.identity,
                "metric": column.metric,
                "sample_id": value.sample.sample_id,
                "seed": value.seed,
                "value": value.value,
                "output": value.output.image.name if value.output else "",
                "extractor": score.extractor,
                "extractor_sha256": score.extractor_sha256,
                "computed_at": score.computed_at.isoformat(),
                "note": score.provenance.get("note", ""),
            }


def csv_lines(rows: Iterable[dict], columns) -> Iterator[str]:
    """CSV text line by line, for streaming responses and files alike."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(row)
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def results_json(table: ResultsTable, *, per_sample: bool = True) -> str:
    payload = {
        "experiment": table.experiment.name,
        "dataset": str(table.experiment.dataset),
        "n_samples": table.n_samples,
        "samples_in_dataset": table.samples_in_dataset,
        "seeds": table.seeds,
        "notes": table.notes,
        "note": table.stand_in_note,
        "columns": [
            {"metric": c.metric, "label": c.label, "higher_is_better": c.protocol.higher_is_better,
             "protocol": c.protocol.protocol}
            for c in table.columns
        ],
        "rows": [
            {
                "method": row.key,
                "family": row.method.family,
                "params": row.method.params,
                "method_identity": row.method.identity,
                "scores": {
                    metric: None if cell is None else {
                        "value": cell.score.value, "ci_low": cell.score.ci_low, "ci_high": cell.score.ci_high,
                        "std": cell.score.std, "n_generated": cell.score.n_generated, "n_real": cell.score.n_real,
                        "best": cell.best, "significantly_worse_than_best": cell.worse, "p_holm_vs_best": cell.p_holm,
                        "computed_at": cell.score.computed_at.isoformat(), "provenance": cell.score.provenance,
                    }
                    for metric, cell in row.cells.items()
                },
            }
            for row in table.rows
        ],
        "missing": table.missing,
    }
    if per_sample:
        payload["per_sample"] = list(sample_rows(table))
    return json.dumps(payload, indent=2)


def results_latex(table: ResultsTable) -> str:
    """A booktabs table to paste into a paper: best per column in bold, intervals in
    brackets, * where a method is significantly worse than the best."""
    lines = [
        f"% evalsite: experiment {_latex(table.experiment.name)}, dataset {_latex(str(table.experiment.dataset))}",
        *(f"% {note}" for note in table.notes),
        "% needs \\usepackage{booktabs}",
        "\\begin{table}[t]",
        "\\centering",
        f"\\begin{{tabular}}{{l{'c' * len(table.columns)}}}",
        "\\toprule",
        "Method & " + " & ".join(f"{_latex(c.label)} {_LATEX_ARROW[c.protocol.higher_is_better]}" for c in table.columns)
        + " \\\\",
        "\\midrule",
    ]
    for row in table.rows:
        cells = []
        for column in table.columns:
            cell = row.cells.get(column.metric)
            if cell is None:
                cells.append("--")
                continue
            text = formatted(column.metric, cell.value)
            if cell.best:
                text = f"\\textbf{{{text}}}"
            if cell.worse:
                text += "$^{*}$"
            score = cell.score
            if score.ci_low is not None:
                text += (f" {{\\scriptsize [{formatted(column.metric, score.ci_low)}, "
                         f"{formatted(column.metric, score.ci_high)}]}}")
            elif score.std is not None:
                text += f" {{\\scriptsize $\\pm$ {formatted(column.metric, score.std)}}}"
            cells.append(text)
        lines.append(f"{_latex(row.key)} & " + " & ".join(cells) + " \\\\")
    caption = f"N = {table.n_samples} samples $\\times$ {len(table.seeds)} seed(s)."
    metrics = {c.metric for c in table.columns}
    if metrics & {"clip_score", "fid", "fid_clip"}:
        caption += " Brackets: 95\\% bootstrap intervals (FID-type: over the generated set)."
    if "kid" in metrics:
        caption += " KID: mean $\\pm$ standard deviation over subsets."
    if "clip_score" in metrics and any(c.worse for _, _, c in scored_cells(table)):
        caption += " $^{*}$ CLIP score significantly worse than the best (Wilcoxon signed-rank, Holm-corrected)."
    if table.stand_in:
        caption += f" {_latex(table.stand_in_note.capitalize())}."
    lines += ["\\bottomrule", "\\end{tabular}", f"\\caption{{{caption}}}", "\\end{table}", ""]
    return "\n".join(lines)


def results_text(table: ResultsTable) -> str:
    """For the terminal: aligned columns, * and (best) marks, then the notes."""
    header = ["method"] + [f"{c.label} {c.arrow}" for c in table.columns]
    body = []
    for row in table.rows:
        line = [row.key]
        for column in table.columns:
            cell = row.cells.get(column.metric)
            if cell is None:
                line.append("--")
                continue
            score = cell.score
            text = formatted(column.metric, cell.value)
            if score.ci_low is not None:
                text += f" [{formatted(column.metric, score.ci_low)}, {formatted(column.metric, score.ci_high)}]"
            elif score.std is not None:
                text += f" ± {formatted(column.metric, score.std)}"
            text += (" *" if cell.worse else "") + (" (best)" if cell.best else "")
            line.append(text)
        body.append(line)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    out = ["  ".join(text.ljust(width) for text, width in zip(r, widths)).rstrip() for r in [header, *body]]
    return "\n".join(out + [""] + [f"  {note}" for note in table.notes]) + "\n"


def _blank(value):
    return "" if value is None else value


_LATEX_ARROW = {True: "$\\uparrow$", False: "$\\downarrow$"}
_LATEX_SPECIAL = {"\\": "\\textbackslash{}", "&": "\\&", "%": "\\%", "$": "\\$", "#": "\\#", "_": "\\_",
                  "{": "\\{", "}": "\\}", "~": "\\textasciitilde{}", "^": "\\textasciicircum{}"}


def _latex(text: str) -> str:
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)
