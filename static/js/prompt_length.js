// Prompt boxes: a live count against the limit, and a clear word when a paste goes past it.
// The server refuses an overlong prompt; the browser no longer cuts one short in silence
// (a `maxlength` would drop whatever a paste brings past the limit, without a word).
(() => {
  const number = (n) => n.toLocaleString("en");

  function counter(box) {
    let shown = box.nextElementSibling;
    if (!shown || !shown.matches(".length-count")) {
      shown = document.createElement("p");
      shown.className = "length-count";
      shown.setAttribute("aria-live", "polite");
      box.after(shown);
    }
    return shown;
  }

  function update(box, pasted) {
    const max = Number(box.dataset.maxLength);
    const length = box.value.length;
    const over = length - max;
    const shown = counter(box);
    shown.classList.toggle("over", over > 0);
    if (over > 0) {
      box.setAttribute("aria-invalid", "true");
      shown.setAttribute("role", "alert");
      shown.textContent = `${pasted ? "The paste made the prompt" : "The prompt is"} ${number(length)} `
        + `characters, ${number(over)} over the limit of ${number(max)}. Nothing was cut: `
        + "shorten it before submitting.";
    } else {
      if (box.getAttribute("aria-invalid") === "true" && !box.dataset.serverInvalid) {
        box.removeAttribute("aria-invalid");
      }
      shown.removeAttribute("role");
      shown.textContent = `${number(length)} / ${number(max)} characters`;
    }
  }

  function setUp(root) {
    root.querySelectorAll("textarea[data-max-length]").forEach((box) => update(box, false));
  }

  let pasting = null;
  document.addEventListener("paste", (event) => {
    if (event.target.matches("textarea[data-max-length]")) pasting = event.target;
  });
  document.addEventListener("input", (event) => {
    if (!event.target.matches("textarea[data-max-length]")) return;
    update(event.target, pasting === event.target);
    pasting = null;
  });
  document.addEventListener("DOMContentLoaded", () => setUp(document));
  document.addEventListener("htmx:load", (event) => setUp(event.target));
})();
