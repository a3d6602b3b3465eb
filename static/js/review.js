// The review page: keyboard decisions, compare mode with a before/after slider, and zoom
// with pan kept in step across every image being compared. htmx swaps #review-body after
// each decision; the state below survives the swap.
(() => {
  const view = { scale: 1, x: 0, y: 0, compare: false, split: 50, selected: 0 };
  const body = () => document.getElementById("review-body");
  const outputs = () => [...document.querySelectorAll("#review-body article.output")];
  const selectedOutput = () => outputs()[view.selected];
  const typing = (el) => el.closest(
    "textarea, select, [contenteditable], input:not([type=range]):not([type=checkbox])",
  );
  const openOverlay = () => document.querySelector(".overlay:not([hidden])");
  let focusBeforeDialog = null;

  // The reason picker and the help are modal: focus moves in, Tab stays in, Esc closes, and
  // no shortcut acts on the page behind them.
  function openDialog(id) {
    const overlay = document.getElementById(id);
    focusBeforeDialog = document.activeElement;
    overlay.hidden = false;
    (overlay.querySelector("button") || overlay.querySelector("[role=dialog]")).focus();
  }

  function closeDialog() {
    const overlay = openOverlay();
    if (!overlay) return;
    overlay.hidden = true;
    if (focusBeforeDialog && document.contains(focusBeforeDialog)) focusBeforeDialog.focus();
    focusBeforeDialog = null;
  }

  function keepFocusIn(overlay, event) {
    const buttons = [...overlay.querySelectorAll("button")];
    const first = buttons[0];
    const last = buttons[buttons.length - 1];
    const inside = overlay.contains(document.activeElement);
    if (event.shiftKey && (document.activeElement === first || !inside)) {
      event.preventDefault();
      last.focus();
    } else if (!event.shiftKey && (document.activeElement === last || !inside)) {
      event.preventDefault();
      first.focus();
    }
  }

  function pickReason(reason) {
    closeDialog();
    decide("reject", reason);
  }

  // Images show their preview until the zoom asks for more pixels than it has; then the
  // original takes its place (the preview stays on screen until the original is loaded).
  function sharpen(img) {
    const original = img.dataset.original;
    if (!original || img.dataset.sharpening === original || !img.naturalWidth) return;
    if (img.currentSrc.endsWith(original) || img.getAttribute("src") === original) return;
    const needed = img.getBoundingClientRect().width * (window.devicePixelRatio || 1);
    const shown = Math.min(img.naturalWidth, Number(img.dataset.originalWidth || Infinity));
    if (needed <= shown) return;
    img.dataset.sharpening = original;
    const full = new Image();
    full.onload = () => {
      if (img.dataset.original === original) img.src = original;
    };
    full.src = original;
  }

  function applyZoom() {
    const transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
    document.querySelectorAll("#review-body .zoomable img").forEach((img) => {
      img.style.transform = transform;
      sharpen(img);
    });
    const level = document.querySelector("#review-body .zoom-level");
    if (level) level.textContent = `${Math.round(view.scale * 100)}%`;
  }

  function zoom(factor) {
    view.scale = Math.min(8, Math.max(1, view.scale * factor));
    if (view.scale === 1) view.x = view.y = 0;
    applyZoom();
  }

  function applySplit() {
    // The frame takes the outputs' shape; set here because the policy refuses style attributes.
    const frame = document.querySelector("#review-body .slider-frame[data-aspect-ratio]");
    if (frame) frame.style.aspectRatio = frame.dataset.aspectRatio;
    const after = document.querySelector("#review-body .compare-slider .after");
    if (after) after.style.clipPath = `inset(0 0 0 ${view.split}%)`;
    const input = document.querySelector("#review-body .slider-input");
    if (input) input.value = view.split;
  }

  function select(index) {
    const all = outputs();
    if (!all.length) return;
    view.selected = (index + all.length) % all.length;
    all.forEach((card, i) => card.classList.toggle("selected", i === view.selected));
    const chosen = selectedOutput();
    const after = document.querySelector("#review-body [data-compare-after]");
    if (after && after.dataset.original !== chosen.dataset.file) {
      after.src = chosen.dataset.preview || chosen.dataset.file;
      after.dataset.original = chosen.dataset.file;
      after.dataset.originalWidth = chosen.dataset.originalWidth;
      delete after.dataset.sharpening;
      after.addEventListener("load", () => sharpen(after), { once: true });
    }
    reveal(chosen);
  }

  // Scroll only when the card's head is out of sight, and then to its head (scroll-margin-top
  // keeps it clear of the sticky header): "nearest" on a card taller than the window
  // scrolled the toolbar and the undo bar away on every load.
  function reveal(card) {
    const header = document.querySelector(".topbar");
    const top = header ? header.getBoundingClientRect().bottom : 0;
    const head = card.getBoundingClientRect().top;
    if (head >= top && head <= window.innerHeight - 120) return;
    card.scrollIntoView({ block: "start" });
  }

  function applyCompare() {
    const root = body();
    if (!root) return;
    root.classList.toggle("comparing", view.compare);
    const slider = root.querySelector(".compare-slider");
    if (slider) slider.hidden = !view.compare;
    const button = root.querySelector("[data-action=compare]");
    if (button) button.setAttribute("aria-pressed", String(view.compare));
  }

  function decide(verdict, reason) {
    const card = selectedOutput();
    const form = card && card.querySelector("form.decision");
    if (!form) return;
    if (reason) form.querySelector("select[name=reason]").value = reason;
    const button = form.querySelector(`button[value=${verdict}]`);
    if (button && !button.disabled) button.click();
  }

  function openChanges() {
    const details = selectedOutput() && selectedOutput().querySelector("details.changes");
    if (!details) return;
    details.open = true;
    details.querySelector("textarea[name=prompt]").focus();
  }

  function afterSwap() {
    const root = body();
    if (!root) return;
    // Move on to the next output without a verdict (wrapping round), else stay put.
    const all = outputs();
    const order = all.map((_, i) => (view.selected + i) % all.length);
    const open = order.find((i) => !all[i].dataset.verdict);
    select(open ?? Math.min(view.selected, all.length - 1));
    applyCompare();
    applySplit();
    applyZoom();
  }

  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey || !body()) return;
    const overlay = openOverlay();
    if (event.key === "Escape") {
      if (overlay) closeDialog();
      else if (typing(event.target)) event.target.blur();
      return;
    }
    if (overlay) {
      if (event.key === "Tab") keepFocusIn(overlay, event);
      if (event.key === "?" && overlay.id === "help") closeDialog();
      const choice = overlay.id === "reason-picker"
        && overlay.querySelectorAll("[data-reason]")[Number(event.key) - 1];
      if (choice) pickReason(choice.dataset.reason);
      if (event.key.length === 1 && event.key !== " ") event.preventDefault();
      return;
    }
    if (typing(event.target)) return;
    const actions = {
      "?": () => openDialog("help"),
      j: () => select(view.selected + 1),
      ArrowRight: () => select(view.selected + 1),
      k: () => select(view.selected - 1),
      ArrowLeft: () => select(view.selected - 1),
      a: () => decide("approve"),
      r: () => selectedOutput() && selectedOutput().querySelector("form.decision")
        && openDialog("reason-picker"),
      c: openChanges,
      f: () => selectedOutput() && window.location.assign(selectedOutput().dataset.viewer),
      u: () => document.getElementById("undo")?.click(),
      v: () => { view.compare = !view.compare; applyCompare(); },
      "+": () => zoom(1.25),
      "=": () => zoom(1.25),
      "-": () => zoom(0.8),
      0: () => { view.scale = 1; view.x = view.y = 0; applyZoom(); },
      n: () => window.location.assign(body().dataset.next),
      p: () => body().dataset.previous && window.location.assign(body().dataset.previous),
    };
    const action = actions[event.key];
    if (action) {
      event.preventDefault();
      action();
    }
  });

  document.addEventListener("click", (event) => {
    const overlay = event.target.closest(".overlay");
    if (overlay) {
      const reason = event.target.closest("[data-reason]");
      if (reason) pickReason(reason.dataset.reason);
      else if (event.target === overlay || event.target.closest("[data-close]")) closeDialog();
      return;
    }
    const button = event.target.closest("#review-body [data-action]");
    if (button) {
      const act = button.dataset.action;
      if (act === "compare") { view.compare = !view.compare; applyCompare(); }
      if (act === "zoom-in") zoom(1.25);
      if (act === "zoom-out") zoom(0.8);
      if (act === "zoom-reset") { view.scale = 1; view.x = view.y = 0; applyZoom(); }
      return;
    }
    const card = event.target.closest("#review-body article.output");
    if (card && !event.target.closest("form, a, details")) select(outputs().indexOf(card));
  });

  document.addEventListener("input", (event) => {
    if (!event.target.matches("#review-body .slider-input")) return;
    view.split = Number(event.target.value);
    applySplit();
  });

  // The wheel zooms only an image already zoomed in, or with Ctrl or Cmd held; otherwise the
  // page scrolls as usual.
  document.addEventListener("wheel", (event) => {
    if (!event.target.closest("#review-body .zoomable")) return;
    if (view.scale === 1 && !event.ctrlKey && !event.metaKey) return;
    event.preventDefault();
    zoom(event.deltaY < 0 ? 1.15 : 1 / 1.15);
  }, { passive: false });

  let drag = null;
  document.addEventListener("pointerdown", (event) => {
    if (!event.target.closest("#review-body .zoomable") || view.scale === 1) return;
    drag = { x: event.clientX - view.x, y: event.clientY - view.y };
    event.preventDefault();
  });
  document.addEventListener("pointermove", (event) => {
    if (!drag) return;
    view.x = event.clientX - drag.x;
    view.y = event.clientY - drag.y;
    applyZoom();
  });
  document.addEventListener("pointerup", () => { drag = null; });
  document.addEventListener("dragstart", (event) => {
    if (event.target.closest("#review-body .zoomable")) event.preventDefault();
  });

  // htmx:load fires on the new #review-body once it is in the page (afterSwap fires on the
  // replaced element, which an outerHTML swap has already detached).
  document.addEventListener("htmx:load", (event) => {
    if (event.target.id === "review-body") afterSwap();
  });
  document.addEventListener("DOMContentLoaded", afterSwap);
  // Exposed for tests and for people poking at the page.
  window.reviewView = view;
})();
