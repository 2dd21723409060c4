"""Load test of the rater pages (studies/) on the production server setup: gunicorn in
front of evalsite.wsgi, PostgreSQL with persistent connections, DEBUG off.

    .venv/bin/python bench/study_load.py [--raters 50] [--duration 20] [--think 0]

What it does, all in this one invocation:
  1. creates a fresh database (evalsite_bench_<pid>) on the PostgreSQL server of
     --database-url (default postgresql://postgres@127.0.0.1:5432/, trust auth) and a
     temporary folder for EVALSITE_VAR_DIR, MEDIA_ROOT and the weights; both are removed
     at the end, also on failure or Ctrl-C (--keep leaves them for a look);
  2. in a child process: migrates, collects the static files, builds the tiny checkpoints
     and the demo dataset, generates a three-method experiment in-process and creates a
     live study on it (6 trials per rater, one attention check, a quota per (item, method)
     so large that it never runs out during the run);
  3. starts gunicorn on a free local port and waits until it answers. The default, 4 sync
     workers (production's worker class), was the best of those tried on an otherwise idle
     2-core machine: about 10% more ratings/s and a lower p95 than sync 3 and gthread 2x4,
     3x2 or 3x4 (gthread 2x4 held up better while other programs took CPU, which is no
     state to benchmark in); --workers and --threads (> 1: gthread) choose another;
  4. runs --raters concurrent raters, each with its own keep-alive connection and cookies
     (a small HTTP/1.1 client on asyncio streams, no dependency): entry link -> consent
     page -> consent -> (trial page, answer) until redirected to the completion page. A
     finished rater is replaced at once, so that --raters stay active until --warmup and
     then --duration seconds have passed; only the latter part is measured. Every field
     gets a random score 1-5, except on the attention-check trial: there the rater finds
     the untouched scene among the images (fetching them and comparing bytes with the
     plain scene; --careless answers at random instead) and gives it the worst Similarity.
     --double-click of the answers (default 10%) are posted twice at once on two
     connections. Raters answer as fast as the server lets them, or, with --think S, after
     looking at each trial for S seconds on average (0.5 S to 1.5 S);
  5. compares the database with what the clients sent: every trial the server accepted
     (answered with a 303) must be 'answered' with exactly the scores sent, once.

Reported: latency (p50/p95/p99/max) per kind of request, answered trials/s and ratings/s
(a rating = one score of one image on one criterion: a row of studies_rating, counted
from the clients' accepted answers), the CPU used by gunicorn, by PostgreSQL for this
database, by the client and by everything else on the machine (Linux), and lost /
duplicated / unexpected ratings. Targets: >= 200 ratings/s, p95 of the answer POSTs
< 150 ms, none lost or duplicated. The exit status is 1 when a rating is lost, duplicated
or unexpected; the throughput and latency targets are only reported (machines are noisy)
unless --strict is given.

Without think time every rater waits only for the server, so by Little's law the mean
latency is raters / requests per second: the run measures the server's capacity, and no
2-core machine gets 50 such raters under 150 ms. `--think 1.2` paces 50 raters like quick
people to about the target of 200 ratings/s, which is where the p95 target is meant.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from urllib.parse import urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
TARGET_RATINGS_PER_S = 200.0
TARGET_P95_MS = 150.0
TRIALS_PER_RATER = 6

# Copy-paste and two tiny PBE checkpoints, as the studies' tests use.
EXPERIMENT = (ROOT / "examples" / "tiny_three_methods.toml").read_text().replace(
    'name = "three-methods"', 'name = "load"', 1)


# --- Setup (runs in a child process with the server's environment) ------------------------

def setup_study(ratings_per_pair: int) -> None:
    """Migrate, build weights, dataset and outputs, create the live study; print its token."""
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "evalsite.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from evalsite.demo_data import build_demo_dataset
    from evalsite.experiment_config import parse_experiment_config
    from evalsite.selectors import experiment_jobs
    from evalsite.services.datasets import dataset_import
    from evalsite.services.experiments import experiment_evaluate
    from evalsite.services.generation import job_run
    from generators.tiny import build_all, build_tiny_pbe
    from studies.services import study_create

    call_command("migrate", interactive=False, verbosity=0)
    call_command("collectstatic", interactive=False, verbosity=0)  # as the production image does
    weights = Path(settings.EVALSITE_WEIGHTS_DIR)
    build_all(weights / "tiny")
    build_tiny_pbe(weights / "tiny" / "pbe_seed1", seed=1)
    dataset_import(path=build_demo_dataset(Path(settings.VAR_DIR) / "demo-dataset"), name="demo")
    experiment = experiment_evaluate(config=parse_experiment_config(EXPERIMENT)).experiment
    for job in experiment_jobs(experiment).order_by("id"):
        report = job_run(job_id=job.pk)
        if report.status != "succeeded":
            raise SystemExit(f"generation job {job.pk}: {report.status} {report.problems}")
    study = study_create(name="load test", experiment=experiment, ratings_per_pair=ratings_per_pair,
                         trials_per_rater=TRIALS_PER_RATER, attention_checks=1, live=True)
    print("STUDY " + json.dumps({"token": study.token, "items": study.items.count(),
                                 "methods": study.methods.count(), "criteria": study.criteria.count()}))


# --- A small HTTP/1.1 client on asyncio streams ---------------------------------------------

@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        return next((v for k, v in self.headers if k == name), "")

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Connection:
    """One keep-alive connection; reopened when the server closed it (gunicorn's sync
    workers close after every response, gthread ones after their keep-alive timeout)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Response:
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}"]
        head += [f"{k}: {v}" for k, v in headers.items()]
        if method == "POST":
            head += ["Content-Type: application/x-www-form-urlencoded", f"Content-Length: {len(body)}"]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        for attempt in range(2):
            reused = self.writer is not None
            if not reused:
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            try:
                self.writer.write(data)
                await self.writer.drain()
                return await self._response()
            except (ConnectionError, asyncio.IncompleteReadError, EmptyResponse):
                self.close()
                # A reused connection the server had closed meanwhile: send again on a new
                # one, as browsers do. A fresh connection that fails is a real error.
                if not reused or attempt:
                    raise
        raise AssertionError("unreachable")

    async def _response(self) -> Response:
        line = await self.reader.readline()
        if not line:
            raise EmptyResponse("the server closed the connection")
        status = int(line.split(None, 2)[1])
        headers = []
        while (line := await self.reader.readline()) not in (b"\r\n", b"\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            headers.append((name.strip().lower(), value.strip()))
        lookup = dict(headers)
        if status in (204, 304) or status < 200:
            body = b""
        elif "content-length" in lookup:
            body = await self.reader.readexactly(int(lookup["content-length"]))
        elif lookup.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while size := int((await self.reader.readline()).split(b";")[0], 16):
                body += await self.reader.readexactly(size)
                await self.reader.readline()
            while await self.reader.readline() not in (b"\r\n", b""):
                pass
        else:
            body = await self.reader.read()
            lookup["connection"] = "close"
        if lookup.get("connection", "").lower() == "close":
            self.close()
        return Response(status, headers, body)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class EmptyResponse(ConnectionError):
    pass


# --- Measurements -----------------------------------------------------------------------------

@dataclass
class Stats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    trials: int = 0  # accepted answers (a double post once)
    ratings: int = 0
    double_posts: int = 0
    raters_started: int = 0
    raters_finished: int = 0
    window: tuple[float, float] = (0.0, 0.0)  # the measured part of the run (perf_counter)
    cpu: list = field(default_factory=list)  # cpu_sample() at the window's start and end

    def measured(self, at: float) -> bool:
        return self.window[0] <= at < self.window[1]


@dataclass
class Ledger:
    """What the clients know the server accepted, to compare with the database."""
    accepted: dict[str, dict[str, int]] = field(default_factory=dict)  # trial token -> {field: score}
    uncertain: set[str] = field(default_factory=set)  # an answer whose POST failed: stored or not


class Rater:
    def __init__(self, host: str, port: int, study: dict, stats: Stats, ledger: Ledger, rng: random.Random, args):
        self.conn, self.second = Connection(host, port), Connection(host, port)
        self.study, self.stats, self.ledger, self.rng = study, stats, ledger, rng
        self.think, self.double_click, self.careless = args.think, args.double_click, args.careless
        self.cookies: dict[str, str] = {}

    def _headers(self) -> dict[str, str]:
        headers = {"User-Agent": "evalsite-bench"}
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        return headers

    async def _request(self, kind: str, method: str, path: str, form: dict | None = None, conn=None) -> Response:
        body = urlencode(form).encode() if form is not None else b""
        start = time.perf_counter()
        try:
            response = await (conn or self.conn).request(method, path, self._headers(), body)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            self.stats.errors[f"{kind}: {type(exc).__name__}"] += 1
            raise RaterFailed(kind) from None
        if self.stats.measured(start):
            self.stats.latencies[kind].append(time.perf_counter() - start)
        for name, value in response.headers:
            if name == "set-cookie":
                try:
                    jar = SimpleCookie(value)
                except CookieError:
                    continue
                for morsel in jar.values():
                    self.cookies[morsel.key] = morsel.coded_value
        return response

    def _expect(self, kind: str, response: Response, *statuses: int) -> Response:
        if response.status not in statuses:
            self.stats.errors[f"{kind}: HTTP {response.status}"] += 1
            raise RaterFailed(kind)
        return response

    @staticmethod
    def _location(response: Response) -> str:
        """Where a redirect goes (path and query), as a browser would follow it."""
        target = urlsplit(response.header("location"))
        return target.path + (f"?{target.query}" if target.query else "")

    async def run(self, deadline: float) -> bool:
        """True unless a request failed (counted in stats.errors)."""
        try:
            entry = self._expect("GET entry", await self._request("GET entry", "GET", f"/r/{self.study['token']}/"),
                                 302)
            consent_url = self._location(entry)  # the forms post back to the page's own URL
            page = self._expect("GET consent", await self._request("GET consent", "GET", consent_url), 200)
            consented = self._expect("POST consent", await self._request(
                "POST consent", "POST", consent_url, {"csrfmiddlewaretoken": _csrf(page.text)}), 303)
            rate_url = self._location(consented)
            while time.perf_counter() < deadline:
                page = self._expect("GET trial", await self._request("GET trial", "GET", rate_url), 200, 302)
                if page.status == 302:
                    done_url = self._location(page)
                    if not urlsplit(done_url).path.endswith("/done/"):
                        self.stats.errors[f"GET trial: redirected to {urlsplit(done_url).path}"] += 1
                        raise RaterFailed("GET trial")
                    done = self._expect("GET done", await self._request("GET done", "GET", done_url), 200)
                    if 'id="completion-code"' not in done.text:
                        self.stats.errors["GET done: no completion code"] += 1
                    self.stats.raters_finished += self.stats.measured(time.perf_counter())
                    return True
                await self._answer(page.text, rate_url)
            return True
        except RaterFailed:
            return False
        finally:
            self.conn.close()
            self.second.close()

    async def _answer(self, html: str, rate_url: str) -> None:
        found = re.search(r'name="trial" value="([^"]+)"', html)
        fields = sorted(set(re.findall(r'name="(s\d+-[A-Za-z0-9_-]+)"', html)))
        if found is None or not fields:
            self.stats.errors["GET trial: no trial form (no work left?)"] += 1
            raise RaterFailed("GET trial")
        trial = found.group(1)
        answer = {name: self.rng.randint(1, 5) for name in fields}
        slots = len({name.split("-", 1)[0] for name in fields})
        if slots > self.study["methods"] and not self.careless:
            await self._attend(html, answer)
        form = {"csrfmiddlewaretoken": _csrf(html), "trial": trial, **answer}
        if self.think:
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * self.think)
        double = self.rng.random() < self.double_click
        posts = [self._request("POST answer", "POST", rate_url, form)]
        if double:
            posts.append(self._request("POST answer", "POST", rate_url, form, conn=self.second))
        results = await asyncio.gather(*posts, return_exceptions=True)
        accepted = [isinstance(r, Response) and r.status == 303
                    and urlsplit(self._location(r)).path == urlsplit(rate_url).path for r in results]
        for r, good in zip(results, accepted):
            if isinstance(r, Response) and not good:
                self.stats.errors[f"POST answer: HTTP {r.status}"] += 1
        if not any(accepted):
            self.ledger.uncertain.add(trial)
            raise RaterFailed("POST answer")
        self.ledger.accepted[trial] = answer
        if self.stats.measured(time.perf_counter()):
            self.stats.trials += 1
            self.stats.ratings += len(answer)
            self.stats.double_posts += double

    async def _attend(self, html: str, answer: dict[str, int]) -> None:
        """An attention-check trial (one image more than there are methods: the untouched
        scene): find that image as an attentive person would, by looking, here by comparing
        the images' bytes with the plain scene's, and give it the worst Similarity, 5."""
        plain = re.search(r'data-plain="([^"]+)"', html)
        tags = [tag for tag in re.findall(r"<img\b[^>]*>", html) if "candidate-image" in tag]
        candidates = [re.search(r'src="([^"]+)"', tag).group(1) for tag in tags]
        if plain is None or not candidates:
            self.stats.notes["attention check: images not found, answered at random"] += 1
            return
        scene = self._expect("GET image", await self._request("GET image", "GET", plain.group(1)), 200).body
        for slot, url in enumerate(candidates):
            image = self._expect("GET image", await self._request("GET image", "GET", url), 200).body
            if image == scene:
                for name in answer:
                    if name.endswith("-similarity"):
                        answer[name] = 5 if name.startswith(f"s{slot}-") else self.rng.randint(1, 4)
                return
        self.stats.notes["attention check: scene not among the images, answered at random"] += 1


class RaterFailed(Exception):
    pass


def _csrf(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    return found.group(1) if found else ""


async def run_load(host: str, port: int, study: dict, args, ledger: Ledger, gunicorn_pid: int,
                   database: str) -> Stats:
    """--raters raters at all times until the warm-up and --duration have passed; a finished
    rater is replaced at once. Requests started during the warm-up are not measured, nor
    answers accepted after the end; requests in flight at the end are finished."""
    stats, rng = Stats(), random.Random(args.seed)
    now = time.perf_counter()
    stats.window = (now + args.warmup, now + args.warmup + args.duration)
    deadline = stats.window[1]

    async def seat(number: int):
        # Entries spread over the first half of the warm-up, so raters are not in lockstep.
        await asyncio.sleep(args.warmup / 2 * number / args.raters)
        while time.perf_counter() < deadline:
            if stats.measured(time.perf_counter()):
                stats.raters_started += 1
            rater = Rater(host, port, study, stats, ledger, random.Random(rng.random()), args)
            if not await rater.run(deadline):
                await asyncio.sleep(0.1)  # it failed (the errors say how): no tight loop of failures

    async def sample_cpu():
        for at in stats.window:
            await asyncio.sleep(max(0.0, at - time.perf_counter()))
            stats.cpu.append(cpu_sample(gunicorn_pid, database))

    await asyncio.gather(sample_cpu(), *(seat(number) for number in range(args.raters)))
    return stats


# --- Verification against the database -------------------------------------------------------

def verify(dsn: str, study: str, ledger: Ledger) -> dict:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute("""
            SELECT t.token, t.status, r.slot, c.key, r.score, r.candidate_id = (t.slot_order ->> r.slot)::bigint
            FROM studies_trial t
            JOIN studies_rater ra ON ra.id = t.rater_id
            JOIN studies_study s ON s.id = ra.study_id
            LEFT JOIN studies_rating r ON r.trial_id = t.id
            LEFT JOIN studies_criterion c ON c.id = r.criterion_id
            WHERE s.token = %s""", [study]).fetchall()
        total, distinct = conn.execute("""
            SELECT count(*), count(DISTINCT (r.trial_id, r.candidate_id, r.criterion_id))
            FROM studies_rating r JOIN studies_criterion c ON c.id = r.criterion_id
            JOIN studies_study s ON s.id = c.study_id WHERE s.token = %s""", [study]).fetchone()
    status: dict[str, str] = {}
    stored: dict[str, Counter] = defaultdict(Counter)
    misplaced = 0
    for token, trial_status, slot, key, score, in_its_slot in rows:
        status[token] = trial_status
        if slot is not None:
            stored[token][(f"s{slot}-{key}", score)] += 1
            misplaced += not in_its_slot
    lost_trials = lost = 0
    for token, answer in ledger.accepted.items():
        expected = Counter((name, score) for name, score in answer.items())
        missing = sum((expected - stored.get(token, Counter())).values())
        if status.get(token) != "answered" or missing:
            lost_trials += 1
            lost += missing if status.get(token) == "answered" else len(answer)
    unexpected = sum(
        sum(counts.values()) for token, counts in stored.items()
        if token not in ledger.accepted and token not in ledger.uncertain
    ) + sum(
        sum((stored[token] - Counter(answer.items())).values()) for token, answer in ledger.accepted.items()
    )
    return {
        "submitted": sum(len(a) for a in ledger.accepted.values()), "stored": total, "lost": lost,
        "lost_trials": lost_trials, "duplicated": total - distinct, "unexpected": unexpected,
        "misplaced": misplaced, "uncertain_trials": len(ledger.uncertain - set(ledger.accepted)),
        "answered_trials": sum(1 for s in status.values() if s == "answered"),
        "accepted_trials": len(ledger.accepted),
    }


# --- Where the CPU time went (Linux /proc; skipped elsewhere) ---------------------------------

def cpu_sample(gunicorn_pid: int, database: str) -> dict[str, float] | None:
    """CPU seconds used so far by the whole machine, gunicorn (master and workers), the
    PostgreSQL backends serving the benchmark's database, and this client."""
    try:
        ticks = os.sysconf("SC_CLK_TCK")
        with open("/proc/stat") as handle:
            values = [int(v) for v in handle.readline().split()[1:]]
        sample = {"machine": (sum(values) - values[3] - values[4]) / ticks, "gunicorn": 0.0, "postgres": 0.0}
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                with open(f"/proc/{entry.name}/stat") as handle:
                    stat = handle.read()
                with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                    title = handle.read()
            except OSError:
                continue
            rest = stat[stat.rindex(")") + 2:].split()
            seconds = (int(rest[11]) + int(rest[12])) / ticks  # utime + stime
            if int(entry.name) == gunicorn_pid or int(rest[1]) == gunicorn_pid:
                sample["gunicorn"] += seconds
            elif title.startswith(b"postgres: ") and f" {database} ".encode() in title:
                sample["postgres"] += seconds
        times = os.times()
        sample["client"] = times.user + times.system
        return sample
    except (OSError, ValueError, IndexError):
        return None


def cpu_report(stats: Stats, elapsed: float) -> list[str]:
    """Cores used by each side, and what the server's CPU time per rating would allow on
    this machine if nothing else ran on it (the client excluded: raters are elsewhere)."""
    if len(stats.cpu) != 2 or None in stats.cpu or not stats.ratings:
        return []
    before, after = stats.cpu
    used = {k: (after[k] - before[k]) / elapsed for k in before}
    other = max(0.0, used["machine"] - used["gunicorn"] - used["postgres"] - used["client"])
    server_ms = 1000 * (used["gunicorn"] + used["postgres"]) * elapsed / stats.ratings
    cores = os.cpu_count() or 1
    return [
        f"cpu, cores busy: gunicorn {used['gunicorn']:.2f}, postgres (this database) {used['postgres']:.2f}, "
        f"this client {used['client']:.2f}, everything else {other:.2f} (machine {used['machine']:.2f} of {cores})",
        f"server cpu per rating {server_ms:.2f} ms (gunicorn {1000 * used['gunicorn'] * elapsed / stats.ratings:.2f}"
        f" + postgres {1000 * used['postgres'] * elapsed / stats.ratings:.2f}): at most ~{1000 * cores / server_ms:.0f}"
        f" ratings/s on {cores} cores with nothing else running",
    ]


# --- Report ---------------------------------------------------------------------------------

def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank."""
    if not sorted_values:
        return float("nan")
    rank = max(1, -(-len(sorted_values) * q // 100))
    return sorted_values[int(rank) - 1]


def report(stats: Stats, check: dict, args, server: str) -> bool:
    elapsed = stats.window[1] - stats.window[0]
    ratings_per_s = stats.ratings / elapsed
    print()
    print(f"server   {server}")
    print(f"load     {args.raters} raters for {args.duration:g} s (after {args.warmup:g} s warm-up), "
          f"think {args.think:g} s, double posts {args.double_click:.0%}; "
          f"in the measured part {stats.raters_started} raters entered, {stats.raters_finished} finished")
    print()
    print(f"{'request':<14}{'n':>7}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    order = ["GET entry", "GET consent", "POST consent", "GET trial", "GET image", "POST answer", "GET done"]
    all_requests: list[float] = []
    for kind in order + sorted(set(stats.latencies) - set(order)):
        values = sorted(stats.latencies.get(kind, []))
        all_requests += values
        if values:
            print(f"{kind:<14}{len(values):>7}" + "".join(
                f"{1000 * percentile(values, q):>9.1f}" for q in (50, 95, 99)) + f"{1000 * values[-1]:>9.1f}")
    all_requests.sort()
    if all_requests:
        print(f"{'all':<14}{len(all_requests):>7}" + "".join(
            f"{1000 * percentile(all_requests, q):>9.1f}" for q in (50, 95, 99)) + f"{1000 * all_requests[-1]:>9.1f}")
    print()
    print(f"requests/s        {len(all_requests) / elapsed:8.1f}")
    print(f"answered trials/s {stats.trials / elapsed:8.1f}   ({stats.trials} in {elapsed:g} s, "
          f"{stats.double_posts} posted twice)")
    print(f"ratings/s         {ratings_per_s:8.1f}   ({stats.ratings} ratings)")
    if stats.errors:
        print("errors            " + ", ".join(f"{k} x{n}" for k, n in sorted(stats.errors.items())))
    if stats.notes:
        print("notes             " + ", ".join(f"{k} x{n}" for k, n in sorted(stats.notes.items())))
    for line in cpu_report(stats, elapsed):
        print(line)
    if not args.think:
        print(f"(no think time: each rater waits only for the server, so the mean latency is raters / "
              f"requests/s, Little's law; a p95 under {TARGET_P95_MS:g} ms with {args.raters} raters needs "
              f"well over {1000 * args.raters / TARGET_P95_MS:.0f} requests/s. --think paces raters like people.)")
    print()
    print(f"database (warm-up and measured run): {check['accepted_trials']} trials accepted by the server, "
          f"{check['answered_trials']} answered in the database; ratings submitted {check['submitted']}, "
          f"stored {check['stored']}")
    print(f"lost {check['lost']} (in {check['lost_trials']} trials), duplicated {check['duplicated']}, "
          f"unexpected {check['unexpected']}, in the wrong slot {check['misplaced']}"
          + (f"; {check['uncertain_trials']} answers whose POST failed are not counted" if check["uncertain_trials"]
             else ""))
    p95 = percentile(sorted(stats.latencies.get("POST answer", [])), 95) * 1000
    intact = not (check["lost"] or check["duplicated"] or check["unexpected"] or check["misplaced"])
    verdicts = [
        (f"ratings/s >= {TARGET_RATINGS_PER_S:g}", f"{ratings_per_s:.1f}", ratings_per_s >= TARGET_RATINGS_PER_S),
        (f"p95 POST answer < {TARGET_P95_MS:g} ms", f"{p95:.1f} ms", p95 < TARGET_P95_MS),
        ("no rating lost", str(check["lost"]), check["lost"] == 0),
        ("no rating duplicated", str(check["duplicated"] + check["unexpected"] + check["misplaced"]),
         check["duplicated"] == check["unexpected"] == check["misplaced"] == 0),
    ]
    print()
    for name, value, ok in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {name:<26} {value}")
    return intact and (not args.strict or all(ok for _, _, ok in verdicts) and not stats.errors)


# --- Processes, database, orchestration ---------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_answering(host: str, port: int, process: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with socket.create_connection((host, port), timeout=1) as s:
                s.sendall(f"GET /accounts/login/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                if s.recv(12).startswith(b"HTTP/1."):
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"gunicorn did not answer within {timeout:g} s:\n{log.read_text()[-3000:]}")


def first_traceback(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Traceback")), None)
    if start is None:
        return "(no traceback in the server's log)"
    return "\n".join(["the server's first error:"] + lines[max(0, start - 1):start + 40])


def stop(process: subprocess.Popen | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _interrupted(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--raters", type=int, default=50, help="concurrent raters (default 50)")
    parser.add_argument("--duration", type=float, default=20, help="seconds measured (default 20)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of load before, not measured (default 3)")
    parser.add_argument("--think", type=float, default=0.0,
                        help="mean seconds a rater looks at a trial before answering (default 0: at once)")
    parser.add_argument("--double-click", type=float, default=0.1, help="share of answers posted twice (0.1)")
    parser.add_argument("--careless", action="store_true",
                        help="answer attention checks at random too (raters who fail them are sent to the end early)")
    parser.add_argument("--workers", type=int, default=4, help="gunicorn worker processes (default 4)")
    parser.add_argument("--threads", type=int, default=1, help="threads per worker; > 1 = gthread (default 1: sync)")
    parser.add_argument("--database-url", default="postgresql://postgres@127.0.0.1:5432/",
                        help="PostgreSQL server; its database (default postgres) is only used to create and "
                             "drop the benchmark's own database")
    parser.add_argument("--ratings-per-pair", type=int, default=10_000, help="the study's quota (never reached)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", action="store_true", help="keep the database and the temporary folder")
    parser.add_argument("--strict", action="store_true", help="also fail when a throughput or latency target "
                                                              "is missed or a request failed")
    args = parser.parse_args()

    import psycopg
    from psycopg import sql

    server = urlsplit(args.database_url)
    maintenance = args.database_url if server.path.strip("/") else server._replace(path="/postgres").geturl()
    name = f"evalsite_bench_{os.getpid()}"
    dsn = server._replace(path=f"/{name}").geturl()
    work = Path(tempfile.mkdtemp(prefix="evalsite-study-load-"))
    gunicorn = None
    created = False
    signal.signal(signal.SIGTERM, _interrupted)  # ends the run like Ctrl-C: through the finally below
    try:
        try:
            with psycopg.connect(maintenance, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.OperationalError as exc:
            raise SystemExit(f"cannot create a database on {server.hostname}:{server.port or 5432} ({exc}); "
                             f"this benchmark needs PostgreSQL (see --database-url)") from None
        created = True
        env = {
            **os.environ,
            "DATABASE_URL": dsn,
            "DATABASE_CONN_MAX_AGE": "300",
            "DJANGO_DEBUG": "0",
            "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
            "EVALSITE_VAR_DIR": str(work / "var"),
            "MEDIA_ROOT": str(work / "media"),
            "EVALSITE_WEIGHTS_DIR": str(work / "weights"),
            "EVALSITE_DEVICE": "cpu",
            "PYTHONPATH": str(ROOT),
        }
        print(f"database {name} on {server.hostname}:{server.port or 5432}, files in {work}")
        print("setting up: migrate, static files, tiny weights, demo dataset, experiment outputs, study ...", flush=True)
        started = time.monotonic()
        setup = subprocess.run([sys.executable, __file__, "--setup-study", str(args.ratings_per_pair)],
                               env=env, cwd=ROOT, capture_output=True, text=True)
        found = re.search(r"^STUDY (.*)$", setup.stdout, re.M)
        if setup.returncode or not found:
            print(setup.stdout[-3000:], setup.stderr[-5000:], sep="\n", file=sys.stderr)
            raise SystemExit(f"setup failed (exit {setup.returncode})")
        study = json.loads(found.group(1))
        print(f"study {study['token']}: {study['items']} items x {study['methods']} methods, "
              f"{study['criteria']} criteria, {TRIALS_PER_RATER} trials per rater, 1 attention check "
              f"(setup {time.monotonic() - started:.0f} s)")

        host, port = "127.0.0.1", free_port()
        command = [sys.executable, "-m", "gunicorn", "evalsite.wsgi:application", "--bind", f"{host}:{port}",
                   "--workers", str(args.workers), "--access-logfile", "-"]
        if args.threads > 1:
            command += ["--worker-class", "gthread", "--threads", str(args.threads)]
        described = f"gunicorn {' '.join(command[command.index('--workers'):])} on {host}:{port} " \
                    f"({os.cpu_count()} CPUs), PostgreSQL, DATABASE_CONN_MAX_AGE=300, DEBUG off"
        log = work / "gunicorn.log"
        with open(log, "ab") as log_file:
            gunicorn = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log_file, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        wait_until_answering(host, port, gunicorn, log)
        print(f"server {described}", flush=True)

        ledger = Ledger()
        print(f"running {args.raters} raters: {args.warmup:g} s warm-up, then {args.duration:g} s measured ...",
              flush=True)
        stats = asyncio.run(run_load(host, port, study, args, ledger, gunicorn.pid, name))
        stop(gunicorn)
        check = verify(dsn, study["token"], ledger)
        ok = report(stats, check, args, described)
        if any("HTTP 5" in error for error in stats.errors):
            print(first_traceback(log))
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        stop(gunicorn)
        if args.keep:
            print(f"kept database {name} and {work}")
        else:
            if created:
                try:
                    with psycopg.connect(maintenance, autocommit=True) as conn:
                        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                except psycopg.Error as exc:
                    print(f"could not drop database {name}: {exc}", file=sys.stderr)
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--setup-study":
        setup_study(int(sys.argv[2]))
    else:
        sys.exit(main())
