// Edit form: show the chosen reference images before upload, saying which one is edited:
// the first upload, unless an earlier output is being edited and the uploads only guide it.
document.addEventListener("change", (event) => {
  if (!event.target.matches("input[name=references]")) return;
  const editingOutput = event.target.form.querySelector("input[name=source]") !== null;
  const list = document.querySelector(".reference-previews");
  list.replaceChildren();
  [...event.target.files].forEach((file, index) => {
    const item = document.createElement("li");
    const image = document.createElement("img");
    image.src = URL.createObjectURL(file);
    image.alt = `reference ${index + 1}: ${file.name}`;
    const caption = document.createElement("span");
    const role = index === 0 && !editingOutput ? "edited" : "guide";
    const size = file.size < 1e6 ? `${Math.ceil(file.size / 1e3)} KB` : `${(file.size / 1e6).toFixed(1)} MB`;
    caption.textContent = `${role} · ${file.name} · ${size}`;
    item.append(image, caption);
    list.append(item);
  });
});
