// The launch form: choosing another taste reloads the form with that taste's settings and fallbacks.
for (const select of document.querySelectorAll("[data-reload-with]")) {
  select.addEventListener("change", () => {
    location.search = `?${select.dataset.reloadWith}=${encodeURIComponent(select.value)}`;
  });
}
