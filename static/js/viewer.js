// The full-size viewer: one output from "fit" to 800% of its true pixels, panned by drag or
// keys, compared A/B with another image (slider or toggle) at the same zoom and place.
//
// The image box ([data-viewer-image]) is laid out at the original's size in CSS pixels and
// moved by one transform, translate(x, y) scale(scale) from its top left corner, so anything
// placed inside it in percentages (the #viewer-annotations overlay) stays on its pixels at
// every zoom. The preview is shown until the zoom asks for more pixels than it has; then the
// original is loaded in its place. window.viewerState holds the transform, and the viewer
// element sends "viewer:transform" after each change.
(() => {
  const root = document.getElementById("viewer");
  if (!root) return;
  const stage = document.getElementById("viewer-stage");
  const boxA = root.querySelector(".viewer-a [data-viewer-image]");
  const paneA = root.querySelector(".viewer-a");
  const paneB = root.querySelector(".viewer-b");
  const boxB = paneB.querySelector(".viewer-image");
  const divider = root.querySelector(".viewer-divider");
  const labelA = root.querySelector(".viewer-label-a");
  const labelB = root.querySelector(".viewer-label-b");
  const chooser = document.getElementById("viewer-compare");
  const info = document.getElementById("viewer-info");
  const zoomLevel = root.querySelector(".viewer-zoom");
  const width = Number(boxA.dataset.width);
  const height = Number(boxA.dataset.height);
  const MAX_ZOOM = 8; // 800% of the true pixels
  const state = { scale: 1, x: 0, y: 0, fit: true, mode: "", showB: true, split: 50, dpr: 1 };
  window.viewerState = state;

  const dpr = () => window.devicePixelRatio || 1;
  const fitScale = () => Math.min(stage.clientWidth / width, stage.clientHeight / height);
  const clampScale = (scale) => Math.min(MAX_ZOOM / dpr(), Math.max(Math.min(fitScale(), 1 / dpr()), scale));
  const zoomPercent = () => state.scale * dpr() * 100;

  // Both boxes take the original's size; B's image is contained in it, so a B of another
  // shape or size lies over the same place.
  [boxA, boxB].forEach((box) => {
    box.style.width = `${width}px`;
    box.style.height = `${height}px`;
  });

  function clampPan() {
    // An image narrower (or lower) than the stage is centred; a larger one keeps its edges
    // beyond the stage's, so it never drifts off the screen.
    const w = width * state.scale;
    const h = height * state.scale;
    const sw = stage.clientWidth;
    const sh = stage.clientHeight;
    state.x = w <= sw ? (sw - w) / 2 : Math.min(0, Math.max(sw - w, state.x));
    state.y = h <= sh ? (sh - h) / 2 : Math.min(0, Math.max(sh - h, state.y));
    // Whole device pixels: at 100% and above each image pixel then covers whole pixels.
    state.x = Math.round(state.x * dpr()) / dpr();
    state.y = Math.round(state.y * dpr()) / dpr();
  }

  // Load the original in place of the preview once the zoom shows more device pixels than
  // the preview has. `scale` is CSS pixels per pixel of that image's original.
  function sharpen(box, scale) {
    const own = Number(box.dataset.width);
    const preview = Number(box.dataset.previewWidth || own);
    if (!box.dataset.original || box.dataset.loaded !== "preview" || box.dataset.loading) return;
    if (scale * dpr() <= preview / own) return;
    const url = box.dataset.original;
    const img = box.querySelector("img");
    box.dataset.loading = "original";
    const full = new Image();
    full.onload = () => {
      if (box.dataset.original !== url) return; // B changed meanwhile
      img.src = url;
      img.decode().catch(() => {}).then(() => {
        box.dataset.loaded = "original";
        delete box.dataset.loading;
      });
    };
    full.onerror = () => { delete box.dataset.loading; };
    full.src = url;
  }

  function bScale() {
    const bw = Number(boxB.dataset.width);
    const bh = Number(boxB.dataset.height);
    return bw && bh ? state.scale * Math.min(width / bw, height / bh) : 0;
  }

  function render() {
    clampPan();
    state.dpr = dpr();
    const transform = `translate(${state.x}px, ${state.y}px) scale(${state.scale})`;
    boxA.style.transform = transform;
    boxB.style.transform = transform;
    root.classList.toggle("pixelated", state.scale * dpr() > 1.001);
    const percent = `${Math.round(zoomPercent())}%`;
    zoomLevel.textContent = state.fit ? `Fit · ${percent}` : percent;
    root.dataset.zoom = (zoomPercent() / 100).toFixed(4);
    sharpen(boxA, state.scale);
    if (state.mode) sharpen(boxB, bScale());
    root.dispatchEvent(new CustomEvent("viewer:transform", { detail: { ...state } }));
  }

  function fit() {
    // A small image fits at most at 800%, the ceiling of every zoom.
    state.scale = Math.min(fitScale(), MAX_ZOOM / dpr());
    state.fit = true;
    render();
  }

  // The image point under the stage point (cx, cy) stays there.
  function zoomTo(scale, cx = stage.clientWidth / 2, cy = stage.clientHeight / 2) {
    const next = clampScale(scale);
    const ix = (cx - state.x) / state.scale;
    const iy = (cy - state.y) / state.scale;
    state.scale = next;
    state.fit = false;
    state.x = cx - ix * next;
    state.y = cy - iy * next;
    render();
  }

  function centreOn(ix, iy, scale) {
    state.scale = clampScale(scale);
    state.fit = false;
    state.x = stage.clientWidth / 2 - ix * state.scale;
    state.y = stage.clientHeight / 2 - iy * state.scale;
    render();
  }

  function centre() {
    return {
      x: (stage.clientWidth / 2 - state.x) / state.scale,
      y: (stage.clientHeight / 2 - state.y) / state.scale,
    };
  }

  function pan(dx, dy) {
    state.x += dx;
    state.y += dy;
    render();
  }

  // A/B: the chosen image goes into B; the slider shows B right of the divider, the toggle
  // shows A or B whole.
  function chooseB() {
    const option = chooser && chooser.selectedOptions[0];
    if (!option) return false;
    if (boxB.dataset.choice !== option.value) {
      boxB.dataset.choice = option.value;
      boxB.dataset.width = option.dataset.width;
      boxB.dataset.height = option.dataset.height;
      boxB.dataset.previewWidth = option.dataset.previewWidth;
      boxB.dataset.original = option.dataset.original;
      boxB.dataset.loaded = option.dataset.src === option.dataset.original ? "original" : "preview";
      delete boxB.dataset.loading;
      boxB.querySelector("img").src = option.dataset.src;
      labelB.textContent = `B · ${option.textContent.trim()}`;
    }
    return true;
  }

  function applyMode() {
    const comparing = Boolean(state.mode) && chooseB();
    if (!comparing) state.mode = "";
    paneB.hidden = !comparing || (state.mode === "toggle" && !state.showB);
    paneA.hidden = comparing && state.mode === "toggle" && state.showB;
    divider.hidden = state.mode !== "slider";
    paneB.style.clipPath = state.mode === "slider" ? `inset(0 0 0 ${state.split}%)` : "none";
    divider.style.left = `${state.split}%`;
    labelA.hidden = !comparing || (state.mode === "toggle" && state.showB);
    labelB.hidden = !comparing || (state.mode === "toggle" && !state.showB);
    root.dataset.mode = state.mode;
    root.dataset.showing = comparing && (state.mode === "slider" || state.showB) ? "B" : "A";
    root.querySelectorAll("[data-viewer=slider], [data-viewer=toggle]").forEach((button) => {
      button.setAttribute("aria-pressed", String(button.dataset.viewer === state.mode));
    });
    render();
  }

  function setMode(mode) {
    if (mode === "toggle" && state.mode === "toggle") state.showB = !state.showB;
    else if (mode === state.mode) state.mode = "";
    else {
      state.mode = mode;
      state.showB = true;
    }
    applyMode();
  }

  // The panel takes the stage's right side: the image refits, or keeps its centre.
  function toggleInfo() {
    const { x, y } = centre();
    info.hidden = !info.hidden;
    root.classList.toggle("info-open", !info.hidden);
    root.querySelector("[data-viewer=info]").setAttribute("aria-expanded", String(!info.hidden));
    if (state.fit) fit();
    else centreOn(x, y, state.scale);
  }

  // Stepping keeps the zoom and the place (as fractions of the image) when zoomed in.
  function go(url) {
    if (!url) return;
    const target = new URL(url, window.location.href);
    if (!state.fit) {
      const { x, y } = centre();
      target.searchParams.set("zoom", (zoomPercent() / 100).toFixed(4));
      target.searchParams.set("cx", (x / width).toFixed(5));
      target.searchParams.set("cy", (y / height).toFixed(5));
    }
    window.location.assign(target.href);
  }

  function start() {
    const params = new URLSearchParams(window.location.search);
    const zoom = Number(params.get("zoom"));
    if (!zoom) return fit();
    let x = width / 2;
    let y = height / 2;
    if (params.has("x") && params.has("y")) {
      // The centre of pixel (x, y).
      x = Number(params.get("x")) + 0.5;
      y = Number(params.get("y")) + 0.5;
    } else if (params.has("cx") && params.has("cy")) {
      x = Number(params.get("cx")) * width;
      y = Number(params.get("cy")) * height;
    }
    centreOn(x, y, zoom / dpr());
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.target.closest("select, input, textarea, [contenteditable]")) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const step = Math.round(Math.min(stage.clientWidth, stage.clientHeight) / 8);
    const shifted = event.shiftKey;
    const actions = {
      0: fit,
      1: () => { const { x, y } = centre(); centreOn(x, y, 1 / dpr()); },
      "+": () => zoomTo(state.scale * 1.25),
      "=": () => zoomTo(state.scale * 1.25),
      "-": () => zoomTo(state.scale / 1.25),
      ArrowUp: () => pan(0, step),
      ArrowDown: () => pan(0, -step),
      ArrowLeft: () => (shifted ? pan(step, 0) : go(root.dataset.previousVariant)),
      ArrowRight: () => (shifted ? pan(-step, 0) : go(root.dataset.nextVariant)),
      "[": () => go(root.dataset.previousRevision),
      "]": () => go(root.dataset.nextRevision),
      i: toggleInfo,
      s: () => setMode("slider"),
      t: () => setMode("toggle"),
      " ": () => setMode("toggle"),
      Escape: () => window.location.assign(root.dataset.back),
    };
    const action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  root.addEventListener("click", (event) => {
    const button = event.target.closest("[data-viewer]");
    if (button) {
      const act = button.dataset.viewer;
      if (act === "fit") fit();
      if (act === "actual") { const { x, y } = centre(); centreOn(x, y, 1 / dpr()); }
      if (act === "zoom-in") zoomTo(state.scale * 1.25);
      if (act === "zoom-out") zoomTo(state.scale / 1.25);
      if (act === "slider" || act === "toggle") setMode(act);
      if (act === "info") toggleInfo();
      button.blur(); // Space flips A/B rather than pressing the button again
      return;
    }
    const link = event.target.closest("[data-step]");
    if (link) {
      event.preventDefault();
      go(link.href);
    }
  });

  if (chooser) {
    chooser.addEventListener("change", () => {
      if (!state.mode) state.mode = "slider";
      state.showB = true;
      applyMode();
      chooser.blur();
    });
  }

  stage.addEventListener("wheel", (event) => {
    event.preventDefault();
    const rect = stage.getBoundingClientRect();
    zoomTo(state.scale * Math.exp(-event.deltaY * 0.0015), event.clientX - rect.left, event.clientY - rect.top);
  }, { passive: false });

  let drag = null;
  stage.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    const rect = stage.getBoundingClientRect();
    drag = event.target === divider
      ? { divider: true, left: rect.left, width: rect.width }
      : { x: event.clientX - state.x, y: event.clientY - state.y };
    stage.setPointerCapture(event.pointerId);
    stage.classList.add("dragging");
    event.preventDefault();
  });
  stage.addEventListener("pointermove", (event) => {
    if (!drag) return;
    if (drag.divider) {
      state.split = Math.min(100, Math.max(0, ((event.clientX - drag.left) / drag.width) * 100));
      applyMode();
      return;
    }
    state.x = event.clientX - drag.x;
    state.y = event.clientY - drag.y;
    render();
  });
  const endDrag = () => {
    drag = null;
    stage.classList.remove("dragging");
  };
  stage.addEventListener("pointerup", endDrag);
  stage.addEventListener("pointercancel", endDrag);

  // A double click goes from fit to true size at that spot, and from any zoom back to fit.
  stage.addEventListener("dblclick", (event) => {
    if (!state.fit) return fit();
    const rect = stage.getBoundingClientRect();
    const x = (event.clientX - rect.left - state.x) / state.scale;
    const y = (event.clientY - rect.top - state.y) / state.scale;
    return centreOn(x, y, 1 / dpr());
  });

  window.addEventListener("resize", () => (state.fit ? fit() : render()));
  start();
})();
