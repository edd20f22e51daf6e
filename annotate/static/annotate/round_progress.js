// The round cockpit's live progress: polls the round's progress feed and updates the bars and what the round
// waits for (leases, jobs; rendered by the server); reloads the page when the round's state (and so its actions)
// changes.
const cockpit = document.getElementById("cockpit");
if (cockpit) {
  const shownActions = cockpit.dataset.actions.trim();
  // Irreversible actions (cancel) ask first.
  for (const form of cockpit.querySelectorAll("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }
  const units = { sampling: "pairs", annotation: "labels", training: "steps", evaluation: "labels", base: "labels" };
  const poll = async () => {
    const response = await fetch(cockpit.dataset.progressUrl, { credentials: "same-origin" });
    if (!response.ok) return;
    const progress = await response.json();
    if (progress.actions.join(" ") !== shownActions) {
      window.location.reload();
      return;
    }
    for (const step of Object.keys(units)) {
      const bar = cockpit.querySelector(`progress[data-step="${step}"]`);
      if (!bar) continue; // no child-vs-base pairs when the parent is the base
      bar.max = Math.max(1, progress[step].total);
      bar.value = progress[step].done;
      cockpit.querySelector(`[data-count="${step}"]`).textContent =
        `${progress[step].done} / ${progress[step].total} ${units[step]}`;
    }
    cockpit.querySelector('[data-field="state"]').textContent = progress.state;
    cockpit.querySelector('[data-field="error"]').textContent = progress.error;
    cockpit.querySelector('[data-field="paused"]').textContent = progress.paused ? " (paused)" : "";
    cockpit.querySelector('[data-field="waits"]').innerHTML = progress.waits_html;
    const win = progress.evaluation.win;
    if (win && win.rate !== null) {
      cockpit.querySelector('[data-field="win"]').textContent =
        `Child's win rate ${win.rate.toFixed(3)}, 95% interval [${win.low.toFixed(3)}, ${win.high.toFixed(3)}] over ${win.n} judgements.`;
    }
    const cumulative = progress.base.win;
    if (cumulative && cumulative.rate !== null) {
      cockpit.querySelector('[data-field="cumulative"]').textContent =
        `Against the base (measured, not part of the rule): ${cumulative.rate.toFixed(3)}, 95% interval [${cumulative.low.toFixed(3)}, ${cumulative.high.toFixed(3)}] over ${cumulative.n} judgements.`;
    }
  };
  setInterval(() => poll().catch(() => {}), 2000);
}
