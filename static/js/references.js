// Edit form: show the chosen reference images (the first is the one edited) before upload.
document.addEventListener("change", (event) => {
  if (!event.target.matches("input[name=references]")) return;
  const list = document.querySelector(".reference-previews");
  list.replaceChildren();
  [...event.target.files].forEach((file, index) => {
    const item = document.createElement("li");
    const image = document.createElement("img");
    image.src = URL.createObjectURL(file);
    image.alt = `reference ${index + 1}: ${file.name}`;
    const caption = document.createElement("span");
    caption.textContent = `${index === 0 ? "edited · " : ""}${file.name} · ${(file.size / 1e6).toFixed(1)} MB`;
    item.append(image, caption);
    list.append(item);
  });
});
