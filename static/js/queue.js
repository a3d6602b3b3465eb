// Review queue: "select all" for the bulk bar; keys j/k to move through the rows (Enter
// opens one) and u to undo the last decision.
document.addEventListener("change", (event) => {
  if (!event.target.matches("[data-select-all]")) return;
  const form = event.target.closest("form");
  form.querySelectorAll("input[name=requests]").forEach((box) => {
    box.checked = event.target.checked;
  });
});

document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target.closest("input:not([type=checkbox]), select, textarea")) return;
  if (event.key === "u") document.getElementById("undo")?.click();
  if (event.key === "j" || event.key === "k") {
    const links = [...document.querySelectorAll("#queue .queue-link")];
    if (!links.length) return;
    const at = cursorIndex(links);
    const to = event.key === "j" ? Math.min(at + 1, links.length - 1) : Math.max(at - 1, 0);
    links[to].focus();
    event.preventDefault();
  }
});

// The keyboard cursor survives the live refresh. The rows are swapped every few seconds and
// the focused link goes with them, so the next j started again from the top: the row in
// focus is remembered by its request and focused again in the new rows.
let cursor = null;
let refocus = false;

function cursorIndex(links) {
  const at = links.indexOf(document.activeElement);
  if (at >= 0 || cursor === null) return at;
  return links.findIndex((link) => link.closest(".queue-item")?.dataset.request === cursor);
}

document.addEventListener("focusin", (event) => {
  if (!event.target.matches("#queue .queue-link")) return;
  cursor = event.target.closest(".queue-item")?.dataset.request ?? null;
});

document.addEventListener("htmx:beforeSwap", (event) => {
  if (!event.detail.target?.closest?.("#queue")) return;
  refocus = Boolean(document.activeElement?.matches("#queue .queue-link"));
});

document.addEventListener("htmx:afterSettle", () => {
  if (!refocus || cursor === null) return;
  refocus = false;
  const item = document.querySelector(`#queue .queue-item[data-request="${CSS.escape(cursor)}"]`);
  item?.querySelector(".queue-link")?.focus({ preventScroll: true });
});
