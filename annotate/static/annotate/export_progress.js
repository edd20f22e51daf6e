// Live progress for an export in the admin: polls the lead API and reloads the page when the job ends.
for (const bar of document.querySelectorAll("progress[data-export]")) {
  const label = bar.nextElementSibling;
  const poll = async () => {
    const response = await fetch(`/api/v1/exports/${bar.dataset.export}/`, { credentials: "same-origin" });
    if (!response.ok) return;
    const job = await response.json();
    bar.max = Math.max(job.total, 1);
    bar.value = job.done;
    label.textContent = `${job.done} / ${job.total} judgements (${job.state})`;
    if (job.state === "done" || job.state === "failed") window.location.reload();
    else setTimeout(poll, 1000);
  };
  if (["queued", "running"].includes(bar.dataset.state)) poll();
}
