// Library: "select all on this page" for the bulk actions.
document.addEventListener("change", (event) => {
  if (!event.target.matches("[data-select-all]")) return;
  const form = event.target.closest("form");
  form.querySelectorAll("input[name=requests]").forEach((box) => {
    box.checked = event.target.checked;
  });
});

// The search box filters as one types; its change on leaving it would only ask again.
// (Kept out of hx-trigger: a trigger filter is evaluated code, which the policy refuses.)
document.addEventListener("change", (event) => {
  if (event.target.id === "library-q") event.stopPropagation();
}, true);
