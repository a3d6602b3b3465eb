// The review page's claim: htmx takes it on load and renews it while the page is open
// (see #claim); this ends it when the page closes, so other reviewers are not told for
// minutes that someone is looking at it.
(() => {
  const claim = () => document.getElementById("claim");

  window.addEventListener("pagehide", () => {
    const element = claim();
    if (!element) return;
    const form = new FormData();
    form.append("csrfmiddlewaretoken", element.dataset.csrf);
    navigator.sendBeacon(element.dataset.release, form);
  });

  // A page brought back from the back-forward cache released its claim when it was left.
  window.addEventListener("pageshow", (event) => {
    if (event.persisted && claim()) htmx.trigger(claim(), "renew");
  });
})();
