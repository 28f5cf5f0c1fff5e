// The digit canvas: draw with mouse, finger or pen (pointer events); the model re-predicts while you draw.
import { el, percent } from "./dom.js";
import { renderBars } from "./results.js";

const PREDICT_EVERY_MS = 250;

/** Wire the canvas; `predict(blob)` sends the drawing and resolves to {predictions, timing, requestId} or throws. */
export function setupDrawing({ canvas, clearButton, output, predict }) {
  const context = canvas.getContext("2d");
  let drawing = false;
  let inked = false;
  let last = null;
  let inFlight = false;
  let queued = false;
  let lastSent = 0;
  let timer = null;

  function reset() {
    context.fillStyle = "#fff";
    context.fillRect(0, 0, canvas.width, canvas.height);
    context.strokeStyle = "#000";
    context.fillStyle = "#000";
    context.lineCap = "round";
    context.lineJoin = "round";
    context.lineWidth = canvas.width / 13;
    inked = false;
    output.replaceChildren(el("p", { class: "muted" }, "Your prediction appears here."));
  }

  /** Pointer position in canvas pixels, whatever size CSS gives the canvas. */
  function point(event) {
    const box = canvas.getBoundingClientRect();
    return { x: ((event.clientX - box.left) * canvas.width) / box.width, y: ((event.clientY - box.top) * canvas.height) / box.height };
  }

  function dot(p) {
    context.beginPath();
    context.arc(p.x, p.y, context.lineWidth / 2, 0, Math.PI * 2);
    context.fill();
  }

  function line(from, to) {
    context.beginPath();
    context.moveTo(from.x, from.y);
    context.lineTo(to.x, to.y);
    context.stroke();
  }

  function show(answer) {
    const best = answer.predictions[0];
    output.replaceChildren(
      el("p", { class: "big-digit", "aria-label": `Prediction: ${best.label}` }, best.label),
      el("p", { class: "muted" }, `${percent(best.score)} sure`),
      renderBars(answer.predictions, "Digit scores"),
      el("p", { class: "muted hint" }, [answer.totalMs !== undefined ? `${answer.totalMs.toFixed(1)} ms on the server` : null,
        answer.requestId ? "request " : null].filter(Boolean).join(" · "),
      // The whole id: its first characters are the server process's prefix, the same for every request.
      answer.requestId ? el("code", { class: "request-id", title: "X-Request-ID of this prediction" }, answer.requestId) : null));
  }

  /** Send the drawing; at most one request in flight, the latest drawing always sent last. */
  async function send() {
    if (!inked) return;
    if (inFlight) {
      queued = true;
      return;
    }
    inFlight = true;
    lastSent = performance.now();
    canvas.setAttribute("aria-busy", "true");
    try {
      const blob = await new Promise((resolve) => canvas.toBlob(resolve, "image/png"));
      show(await predict(blob));
    } catch (error) {
      output.replaceChildren(el("div", { class: "alert", role: "alert" }, error.message));
    } finally {
      inFlight = false;
      canvas.removeAttribute("aria-busy");
      if (queued) {
        queued = false;
        send();
      }
    }
  }

  function schedule() {
    clearTimeout(timer);
    const wait = Math.max(0, PREDICT_EVERY_MS - (performance.now() - lastSent));
    timer = setTimeout(send, wait);
  }

  canvas.addEventListener("pointerdown", (event) => {
    if (event.button !== 0) return;
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = true;
    inked = true;
    last = point(event);
    dot(last);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const sample of events.length ? events : [event]) {
      const next = point(sample);
      line(last, next);
      last = next;
    }
    schedule();
  });
  const finish = () => {
    if (!drawing) return;
    drawing = false;
    clearTimeout(timer);
    send();
  };
  canvas.addEventListener("pointerup", finish);
  canvas.addEventListener("pointercancel", finish);
  clearButton.addEventListener("click", reset);
  reset();
  return { reset };
}
