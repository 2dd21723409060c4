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
    if (target !== -1) show(target);
  }

  function jumpToCandidate(delta) {
    const target = candidateOf(rows[current]) + delta;
    const index = rows.findIndex((row) => candidateOf(row) === target);
    if (index !== -1) show(index);
  }

  rows.forEach((row, i) => {
    row.addEventListener("change", () => { current = i; advance(); });
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
      if (choose(rows[current], key)) { event.preventDefault(); advance(); }
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
