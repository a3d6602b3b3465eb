// Review queue: "select all" for the bulk bar, and `u` to undo the last decision.
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
});
