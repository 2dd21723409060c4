// Rater page: keyboard answering, the outline switch, one image per screen, and a single
// submission per trial. Without JavaScript the form still works (all rows visible).
(function () {
  "use strict";
  const form = document.getElementById("trial-form");
  if (!form) return;
  const rows = Array.from(form.querySelectorAll(".row"));
  const candidates = Array.from(form.querySelectorAll(".candidate"));
  const single = form.dataset.layout === "single";
  const previous = document.getElementById("previous-image");
  const next = document.getElementById("next-image");
  const submit = document.getElementById("submit-trial");
  let current = 0;

  const answered = (row) => row.querySelector("input:checked") !== null;
  const candidateOf = (row) => candidates.indexOf(row.closest(".candidate"));

  function show(index) {
    current = Math.max(0, Math.min(index, rows.length - 1));
    rows.forEach((row, i) => row.classList.toggle("current", i === current));
    if (single) {
      const visible = candidateOf(rows[current]);
      candidates.forEach((c, i) => { c.hidden = i !== visible; });
      previous.hidden = visible === 0;
      next.hidden = visible === candidates.length - 1;
      submit.hidden = visible !== candidates.length - 1;
    }
    rows[current].scrollIntoView({ block: "nearest" });
  }

  function firstUnanswered() {
    return rows.findIndex((row) => !answered(row));
  }

  function choose(row, value) {
    const input = row.querySelector(`input[value="${value}"]`);
    if (!input) return false;
    input.checked = true;
    return true;
  }

  function advance() {
    const after = rows.findIndex((row, i) => i > current && !answered(row));
    const target = after !== -1 ? after : firstUnanswered();
    // Everything answered (e.g. a refused answer shown again): step on row by row.
    show(target !== -1 ? target : Math.min(current + 1, rows.length - 1));
  }

  // Rank mode: a rank given to one image is taken from the image that had it, so ranks
  // stay a permutation as the rater types (the server refuses ties anyway).
  function releaseRank(row) {
    if (form.dataset.mode !== "rank") return;
    const value = row.querySelector("input:checked")?.value;
    rows.forEach((other) => {
      if (other === row || other.dataset.criterion !== row.dataset.criterion) return;
      const taken = other.querySelector(`input[value="${value}"]:checked`);
      if (taken) taken.checked = false;
    });
  }

  function jumpToCandidate(delta) {
    const target = candidateOf(rows[current]) + delta;
    const index = rows.findIndex((row) => candidateOf(row) === target);
    if (index !== -1) show(index);
  }

  rows.forEach((row, i) => {
    row.addEventListener("change", () => { current = i; releaseRank(row); advance(); });
    row.addEventListener("click", () => { if (!answered(row)) show(i); });
  });
  if (single) {
    previous.addEventListener("click", () => jumpToCandidate(-1));
    next.addEventListener("click", () => jumpToCandidate(1));
  }

  const scene = document.getElementById("scene");
  const toggle = document.getElementById("outline-toggle");
  function toggleOutline() {
    const outlined = toggle.getAttribute("aria-pressed") !== "true";
    scene.src = outlined ? scene.dataset.outlined : scene.dataset.plain;
    toggle.setAttribute("aria-pressed", String(outlined));
    toggle.textContent = outlined ? "Outline on (M)" : "Outline off (M)";
  }
  toggle.addEventListener("click", toggleOutline);

  // The check below replaces the browser's: in the one-image layout a missing answer is
  // in a hidden fieldset, which the browser's check cannot show, and it then drops the
  // submission without a word (the submit event never fires).
  form.noValidate = true;
  let sent = false;
  form.addEventListener("submit", (event) => {
    const missing = firstUnanswered();
    if (missing !== -1) {
      event.preventDefault();
      show(missing);
      return;
    }
    if (sent) { event.preventDefault(); return; }  // a double click sends once
    sent = true;
    submit.disabled = true;
  });

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const key = event.key;
    if (/^[1-9]$/.test(key)) {
      if (choose(rows[current], key)) { event.preventDefault(); releaseRank(rows[current]); advance(); }
    } else if (key === "Backspace" || key === "ArrowUp") {
      event.preventDefault(); show(current - 1);
    } else if (key === "ArrowDown") {
      event.preventDefault(); show(current + 1);
    } else if (key === "m" || key === "M") {
      toggleOutline();
    } else if (key === "Enter") {
      event.preventDefault();
      form.requestSubmit(submit.hidden ? undefined : submit);
    }
  });

  const start = firstUnanswered();
  show(start === -1 ? 0 : start);
})();
