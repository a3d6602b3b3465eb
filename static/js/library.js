// Library: "select all on this page" for the bulk actions.
document.addEventListener("change", (event) => {
  if (!event.target.matches("[data-select-all]")) return;
  const form = event.target.closest("form");
  form.querySelectorAll("input[name=requests]").forEach((box) => {
    box.checked = event.target.checked;
  });
});
