// Lookout console: keyboard shortcuts for review, drawing a search box, and the fleet page's refresh.
// Loaded as a file (no inline script: the CSP forbids it). Nothing here talks to anything but this console.
"use strict";

function typing(event) {
  const t = event.target;
  return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
}

function reviewShortcuts() {
  const confirmForm = document.getElementById("confirm-form");
  const reason = document.getElementById("reason");
  document.addEventListener("keydown", (event) => {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (typing(event)) {
      if (event.key === "Escape") event.target.blur();
      return;
    }
    const link = (id) => document.getElementById(id);
    if (event.key === "c" && confirmForm) { event.preventDefault(); confirmForm.requestSubmit(); }
    else if (event.key === "r" && reason) { event.preventDefault(); reason.focus(); }
    else if (event.key === "j" && link("next")) { link("next").click(); }
    else if (event.key === "k" && link("previous")) { link("previous").click(); }
  });
}

function boxDrawing() {
  const canvas = document.getElementById("canvas");
  const svg = document.getElementById("overlay");
  const drawn = document.getElementById("drawn");
  if (!canvas || !svg || !drawn) return;
  const scale = parseFloat(canvas.dataset.scale || "1");
  const view = svg.viewBox.baseVal;
  const button = document.getElementById("search-box");
  const text = document.getElementById("box-text");
  let start = null;

  function point(event) {
    const r = svg.getBoundingClientRect();
    const x = Math.min(Math.max(event.clientX - r.left, 0), r.width) * view.width / r.width;
    const y = Math.min(Math.max(event.clientY - r.top, 0), r.height) * view.height / r.height;
    return { x, y };
  }
  function show(a, b) {
    const x = Math.min(a.x, b.x), y = Math.min(a.y, b.y);
    drawn.setAttribute("x", x); drawn.setAttribute("y", y);
    drawn.setAttribute("width", Math.abs(a.x - b.x)); drawn.setAttribute("height", Math.abs(a.y - b.y));
  }
  function finish(a, b) {
    const box = [Math.min(a.x, b.x), Math.min(a.y, b.y), Math.max(a.x, b.x), Math.max(a.y, b.y)].map((v) => v / scale);
    ["x1", "y1", "x2", "y2"].forEach((k, i) => { document.getElementById(k).value = box[i].toFixed(1); });
    const ok = box[2] - box[0] >= 8 && box[3] - box[1] >= 8;
    button.disabled = !ok;
    text.textContent = ok ? "box " + box.map((v) => Math.round(v)).join(", ") + " (photo pixels)" : "box too small";
  }
  svg.addEventListener("pointerdown", (e) => { start = point(e); svg.setPointerCapture(e.pointerId); e.preventDefault(); });
  svg.addEventListener("pointermove", (e) => { if (start) show(start, point(e)); });
  svg.addEventListener("pointerup", (e) => { if (!start) return; const end = point(e); show(start, end); finish(start, end); start = null; });
}

function fleetRefresh() {
  if (document.getElementById("devices")) setTimeout(() => window.location.reload(), 5000);
}

document.addEventListener("DOMContentLoaded", () => { reviewShortcuts(); boxDrawing(); fleetRefresh(); });
