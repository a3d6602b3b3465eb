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
    const at = links.indexOf(document.activeElement);
    const to = event.key === "j" ? Math.min(at + 1, links.length - 1) : Math.max(at - 1, 0);
    links[to].focus();
    event.preventDefault();
  }
});
