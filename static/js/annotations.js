// Notes on images. Any element with data-annotations-url that holds an <img> and an
// .annotation-layer (the review page, the request page, the full-size viewer) shows the
// notes' numbered markers over the picture, in 0-1 coordinates of the image; the layer takes
// the image's zoom and pan transform, so a marker stays on the same pixels. With
// data-annotate, note mode (the `m` key or a "Note" button) lets a reviewer click a spot for
// a pin or drag a box, then write the note in a small form. The policy refuses style
// attributes: every position is set here from data- attributes.
(() => {
  const state = { noteMode: false, draft: null, popover: null, showResolved: new Set() };
  const observed = new WeakSet();
  const MIN_BOX_PIXELS = 6;

  const typing = (el) => el.closest && el.closest("textarea, select, input, [contenteditable]");
  const overlayOpen = () => document.querySelector(".overlay:not([hidden])");
  const layerOf = (wrapper) => wrapper.querySelector(".annotation-layer");

  function csrfToken(wrapper) {
    if (wrapper && wrapper.dataset.csrf) return wrapper.dataset.csrf;
    try {
      const headers = JSON.parse(document.body.getAttribute("hx-headers") || "{}");
      if (headers["X-CSRFToken"]) return headers["X-CSRFToken"];
    } catch (error) { /* fall through to a form's token */ }
    const input = document.querySelector("input[name=csrfmiddlewaretoken]");
    if (input) return input.value;
    const cookie = document.cookie.split("; ").find((part) => part.startsWith("csrftoken="));
    return cookie ? decodeURIComponent(cookie.slice("csrftoken=".length)) : "";
  }

  // Where the picture is drawn inside its <img> box: object-fit letterboxes (contain) or
  // crops (cover) it, and the notes belong to the picture, not to the box.
  function pictureBox(img) {
    const boxWidth = img.offsetWidth;
    const boxHeight = img.offsetHeight;
    const natural = [img.naturalWidth, img.naturalHeight];
    const fit = getComputedStyle(img).objectFit;
    if (!natural[0] || !natural[1] || !boxWidth || !boxHeight || fit === "fill") {
      return { left: 0, top: 0, width: boxWidth, height: boxHeight };
    }
    const contain = Math.min(boxWidth / natural[0], boxHeight / natural[1]);
    const scale = fit === "cover" ? Math.max(boxWidth / natural[0], boxHeight / natural[1])
      : fit === "scale-down" ? Math.min(1, contain)
        : fit === "none" ? 1 : contain;
    const width = natural[0] * scale;
    const height = natural[1] * scale;
    return { left: (boxWidth - width) / 2, top: (boxHeight - height) / 2, width, height };
  }

  function offsetWithin(element, ancestor) {
    let left = 0;
    let top = 0;
    let node = element;
    while (node && node !== ancestor) {
      left += node.offsetLeft;
      top += node.offsetTop;
      node = node.offsetParent;
    }
    return { left, top };
  }

  // Lay the layer over the picture and give it the image's transform (the review page zooms
  // the <img> itself); a layer with no <img> beside it fills its parent, which is inside the
  // transformed element (the viewer's #viewer-annotations).
  function place(wrapper) {
    const layer = layerOf(wrapper);
    if (!layer) return;
    const img = layer.parentElement.querySelector("img");
    if (img) {
      const box = pictureBox(img);
      const at = offsetWithin(img, layer.offsetParent);
      layer.style.left = `${at.left + box.left}px`;
      layer.style.top = `${at.top + box.top}px`;
      layer.style.width = `${box.width}px`;
      layer.style.height = `${box.height}px`;
      const style = getComputedStyle(img);
      const origin = style.transformOrigin.split(" ").map(parseFloat);
      layer.style.transformOrigin = `${origin[0] - box.left}px ${origin[1] - box.top}px`;
      layer.style.transform = style.transform === "none" ? "" : style.transform;
    } else {
      layer.classList.add("fills-parent");
    }
    // Whatever zooms the layer, its box on screen against its own size is the zoom.
    const scale = layer.offsetWidth ? layer.getBoundingClientRect().width / layer.offsetWidth : 1;
    layer.style.setProperty("--marker-scale", String(1 / (scale || 1)));
    layer.querySelectorAll(".marker").forEach((marker) => {
      marker.style.left = `${Number(marker.dataset.x) * 100}%`;
      marker.style.top = `${Number(marker.dataset.y) * 100}%`;
      if (marker.classList.contains("box")) {
        marker.style.width = `${Number(marker.dataset.width) * 100}%`;
        marker.style.height = `${Number(marker.dataset.height) * 100}%`;
      }
    });
    const output = layer.dataset.output;
    layer.classList.toggle("show-resolved", state.showResolved.has(output));
  }

  const resized = new ResizeObserver((entries) => {
    entries.forEach((entry) => {
      const wrapper = entry.target.closest("[data-annotations-url]");
      if (wrapper) place(wrapper);
    });
  });
  const restyled = new MutationObserver((records) => {
    records.forEach((record) => {
      const wrapper = record.target.closest("[data-annotations-url]");
      if (wrapper) place(wrapper);
    });
  });

  function scan() {
    document.querySelectorAll("[data-annotations-url]").forEach((wrapper) => {
      const layer = layerOf(wrapper);
      const img = layer && layer.parentElement.querySelector("img");
      const watched = img || (layer && layer.parentElement);
      if (!observed.has(wrapper)) {
        // The viewer zooms the wrapper itself: the markers' size follows its transform.
        observed.add(wrapper);
        restyled.observe(wrapper, { attributes: true, attributeFilter: ["style"] });
      }
      if (watched && !observed.has(watched)) {
        observed.add(watched);
        resized.observe(watched);
        restyled.observe(watched, { attributes: true, attributeFilter: ["style", "src", "class"] });
        if (img) img.addEventListener("load", () => place(wrapper));
      }
      place(wrapper);
    });
    document.querySelectorAll(".annotation-list").forEach((list) => {
      const shown = state.showResolved.has(list.dataset.output);
      list.classList.toggle("show-resolved", shown);
      const toggle = list.querySelector("[data-show-resolved]");
      if (toggle) {
        toggle.setAttribute("aria-pressed", String(shown));
        toggle.textContent = shown ? "Hide resolved" : "Show resolved";
      }
    });
    document.querySelectorAll("[data-note-mode]").forEach((button) => {
      button.setAttribute("aria-pressed", String(state.noteMode));
    });
  }

  function setNoteMode(on) {
    const possible = document.querySelector("[data-annotations-url][data-annotate]");
    state.noteMode = Boolean(on && possible);
    document.body.classList.toggle("note-mode", state.noteMode);
    document.querySelectorAll("[data-note-mode]").forEach((button) => {
      button.setAttribute("aria-pressed", String(state.noteMode));
    });
  }

  // A pointer position as a fraction of the picture, from the layer's box on screen (which
  // includes the zoom transform).
  function toPicture(layer, event) {
    const rect = layer.getBoundingClientRect();
    return {
      x: (event.clientX - rect.left) / rect.width,
      y: (event.clientY - rect.top) / rect.height,
      px: event.clientX,
      py: event.clientY,
    };
  }

  const clamp = (value) => Math.min(1, Math.max(0, value));

  function draftShape(draft) {
    const { start, end } = draft;
    const moved = Math.abs(end.px - start.px) > MIN_BOX_PIXELS
      || Math.abs(end.py - start.py) > MIN_BOX_PIXELS;
    if (!moved) return { shape: "pin", x: start.x, y: start.y, width: 0, height: 0 };
    const x = clamp(Math.min(start.x, end.x));
    const y = clamp(Math.min(start.y, end.y));
    return {
      shape: "box",
      x,
      y,
      width: clamp(Math.max(start.x, end.x)) - x,
      height: clamp(Math.max(start.y, end.y)) - y,
    };
  }

  function drawGhost(draft) {
    const shape = draftShape(draft);
    const ghost = draft.ghost;
    ghost.className = `marker draft ${shape.shape}`;
    ghost.style.left = `${shape.x * 100}%`;
    ghost.style.top = `${shape.y * 100}%`;
    ghost.style.width = shape.shape === "box" ? `${shape.width * 100}%` : "";
    ghost.style.height = shape.shape === "box" ? `${shape.height * 100}%` : "";
  }

  function closePopover() {
    if (state.popover) state.popover.remove();
    if (state.draft) state.draft.ghost.remove();
    state.popover = null;
    state.draft = null;
  }

  function openPopover(draft) {
    const shape = draftShape(draft);
    const form = document.createElement("form");
    form.className = "annotation-popover card";
    form.setAttribute("role", "dialog");
    form.setAttribute("aria-label", `New ${shape.shape === "box" ? "box" : "pin"} note`);
    form.innerHTML = `
      <label for="annotation-comment">${shape.shape === "box" ? "Note on this box" : "Note on this spot"}</label>
      <textarea id="annotation-comment" name="comment" rows="3" maxlength="2000" required></textarea>
      <p class="error" role="alert" hidden></p>
      <div class="buttons">
        <button type="submit" class="primary">Add note</button>
        <button type="button" data-cancel>Cancel</button>
      </div>`;
    document.body.appendChild(form);
    const width = form.offsetWidth;
    const height = form.offsetHeight;
    form.style.left = `${Math.max(8, Math.min(draft.end.px + 12, window.innerWidth - width - 8))}px`;
    form.style.top = `${Math.max(8, Math.min(draft.end.py + 12, window.innerHeight - height - 8))}px`;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      submitNote(draft, shape, form);
    });
    form.querySelector("[data-cancel]").addEventListener("click", closePopover);
    form.addEventListener("keydown", (event) => {
      if (event.key === "Escape") {
        event.preventDefault();
        event.stopPropagation();
        closePopover();
        setNoteMode(false);
      } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    state.popover = form;
    form.querySelector("textarea").focus();
  }

  async function post(url, body, wrapper) {
    const response = await fetch(url, {
      method: "POST",
      body,
      headers: { "X-CSRFToken": csrfToken(wrapper), "HX-Request": "true" },
      credentials: "same-origin",
    });
    return { ok: response.ok, status: response.status, html: await response.text() };
  }

  // Put the output's fresh markers and list (the server's fragment) in place of the old ones.
  function swapIn(html) {
    const template = document.createElement("template");
    template.innerHTML = html;
    const fresh = [...template.content.children].filter((element) => element.id);
    fresh.forEach((element) => {
      const old = document.getElementById(element.id);
      if (old) old.replaceWith(element);
    });
    scan();
    return template.content;
  }

  async function submitNote(draft, shape, form) {
    const body = new FormData();
    Object.entries(shape).forEach(([name, value]) => body.append(name, String(value)));
    body.append("comment", form.querySelector("textarea").value);
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const answer = await post(draft.wrapper.dataset.annotationsUrl, body, draft.wrapper);
      if (answer.ok) {
        closePopover();
        swapIn(answer.html);
        setNoteMode(false);
        return;
      }
      const template = document.createElement("template");
      template.innerHTML = answer.html;
      const error = template.content.querySelector("[role=alert]");
      showPopoverError(form, error ? error.textContent : `The note was not saved (${answer.status}).`);
    } catch (failure) {
      showPopoverError(form, "The note was not saved: the connection failed. Try again.");
    } finally {
      button.disabled = false;
    }
  }

  function showPopoverError(form, text) {
    const error = form.querySelector(".error");
    error.textContent = text;
    error.hidden = false;
  }

  document.addEventListener("pointerdown", (event) => {
    if (!state.noteMode || event.button !== 0 || state.popover) return;
    const wrapper = event.target.closest("[data-annotations-url][data-annotate]");
    const layer = wrapper && layerOf(wrapper);
    if (!layer) return;
    const start = toPicture(layer, event);
    if (start.x < 0 || start.x > 1 || start.y < 0 || start.y > 1) return;
    // Before the page's own pan: in note mode a drag draws.
    event.preventDefault();
    event.stopPropagation();
    const ghost = document.createElement("span");
    layer.appendChild(ghost);
    state.draft = { wrapper, layer, start, end: start, ghost, drawing: true };
    drawGhost(state.draft);
  }, true);

  document.addEventListener("pointermove", (event) => {
    const draft = state.draft;
    if (!draft || !draft.drawing) return;
    event.stopPropagation();
    draft.end = toPicture(draft.layer, event);
    drawGhost(draft);
  }, true);

  document.addEventListener("pointerup", (event) => {
    const draft = state.draft;
    if (!draft || !draft.drawing) return;
    event.stopPropagation();
    draft.end = toPicture(draft.layer, event);
    draft.drawing = false;
    drawGhost(draft);
    openPopover(draft);
  }, true);

  function highlight(noteId, on) {
    document.querySelectorAll(`.marker[data-note="${noteId}"], .note-item[data-note="${noteId}"]`)
      .forEach((element) => element.classList.toggle("highlighted", on));
  }

  ["mouseover", "focusin"].forEach((type) => document.addEventListener(type, (event) => {
    const item = event.target.closest && event.target.closest(".marker[data-note], .note-item");
    if (item) highlight(item.dataset.note, true);
  }));
  ["mouseout", "focusout"].forEach((type) => document.addEventListener(type, (event) => {
    const item = event.target.closest && event.target.closest(".marker[data-note], .note-item");
    if (item) highlight(item.dataset.note, false);
  }));

  function fillFromNotes(button) {
    const panel = button.closest(".notes-fill");
    const form = button.closest("form");
    const prompt = form.querySelector("textarea[name=prompt]");
    const guide = panel.querySelector("input[name=guide_image]");
    prompt.value = guide && guide.checked
      ? panel.dataset.fillPromptWithGuide : panel.dataset.fillPrompt;
    prompt.dispatchEvent(new Event("input", { bubbles: true }));
    form.querySelector("input[name=annotation_ids]").value = panel.dataset.fillIds;
    const edit = form.querySelector("input[name=edit_from_output]");
    if (edit) edit.checked = true;
    prompt.focus();
  }

  document.addEventListener("change", (event) => {
    if (!event.target.matches(".notes-fill input[name=guide_image]")) return;
    const panel = event.target.closest(".notes-fill");
    const prompt = event.target.closest("form").querySelector("textarea[name=prompt]");
    const [from, to] = event.target.checked
      ? [panel.dataset.fillPrompt, panel.dataset.fillPromptWithGuide]
      : [panel.dataset.fillPromptWithGuide, panel.dataset.fillPrompt];
    if (prompt.value === from) {
      prompt.value = to;
      prompt.dispatchEvent(new Event("input", { bubbles: true }));
    }
  });

  document.addEventListener("click", (event) => {
    const modeButton = event.target.closest("[data-note-mode]");
    if (modeButton) {
      setNoteMode(!state.noteMode);
      return;
    }
    const fill = event.target.closest("[data-fill-from-notes]");
    if (fill) {
      fillFromNotes(fill);
      return;
    }
    const toggle = event.target.closest("[data-show-resolved]");
    if (toggle) {
      const output = toggle.closest(".annotation-list").dataset.output;
      if (state.showResolved.has(output)) state.showResolved.delete(output);
      else state.showResolved.add(output);
      scan();
      return;
    }
    const marker = event.target.closest(".marker[data-note]");
    if (marker && !state.noteMode) {
      const item = document.querySelector(`.note-item[data-note="${marker.dataset.note}"]`);
      if (item) {
        item.scrollIntoView({ block: "nearest" });
        item.focus({ preventScroll: true });
      }
    }
  });

  document.addEventListener("submit", async (event) => {
    const form = event.target.closest("form[data-annotation-form]");
    if (!form) return;
    event.preventDefault();
    const answer = await post(form.action, new FormData(form));
    if (answer.ok) swapIn(answer.html);
  });

  // In the capture phase, so that leaving note mode with Esc does not also leave the page
  // (the viewer goes back on Esc).
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || typing(event.target)) return;
    if (event.key === "Escape" && (state.popover || state.noteMode)) {
      event.stopPropagation();
      closePopover();
      setNoteMode(false);
      return;
    }
    const possible = document.querySelector("[data-annotations-url][data-annotate]");
    if (event.key === "m" && possible && !overlayOpen()) {
      event.preventDefault();
      event.stopPropagation();
      setNoteMode(!state.noteMode);
    }
  }, true);

  window.addEventListener("resize", scan);
  document.addEventListener("htmx:load", scan);
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", scan);
  else scan();
  // Exposed for tests and for people poking at the page.
  window.annotationState = state;
})();
