// Flash messages ("Request #20 is queued.") belong to the moment they were made. Django
// shows each once, but the page stays open while htmx changes it underneath (progress
// polling, the queue's filters and refreshes, decisions), so a message outlived the state
// it described. Confirmations now fade after a few seconds and go at once when htmx moves
// the page on; errors stay until dismissed. Every message can be dismissed.
(() => {
  const SHOWN_MS = 6000;

  function dismiss(message) {
    const list = message.parentElement;
    message.remove();
    if (list && !list.children.length) list.remove();
  }

  function setUp(root) {
    root.querySelectorAll(".messages .message:not([data-ready])").forEach((message) => {
      message.dataset.ready = "";
      const close = document.createElement("button");
      close.type = "button";
      close.className = "link dismiss";
      close.setAttribute("aria-label", "Dismiss");
      close.textContent = "×";
      close.addEventListener("click", () => dismiss(message));
      message.append(close);
      if (!message.classList.contains("error") && !message.classList.contains("warning")) {
        message.setAttribute("role", "status");
        setTimeout(() => dismiss(message), SHOWN_MS);
      }
    });
  }

  document.addEventListener("DOMContentLoaded", () => setUp(document));
  document.addEventListener("htmx:pushedIntoHistory", () => {
    document.querySelectorAll(".messages .message:not(.error)").forEach(dismiss);
  });
})();
