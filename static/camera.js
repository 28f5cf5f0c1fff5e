// Camera capture as an input: getUserMedia shows a live preview, "Take photo" turns the current frame into a PNG
// file added to the selection like a picked one. Built by script (nothing to show without JavaScript), and only
// where the browser offers a camera API (a secure context: https or localhost).
import { el } from "./dom.js";

/** Why the camera did not start, in words (the DOMException names browsers use). */
function cameraProblem(error) {
  switch (error && error.name) {
    case "NotAllowedError":
    case "SecurityError":
      return "The camera is blocked: allow it in the browser's site settings, then press Use camera again.";
    case "NotFoundError":
    case "OverconstrainedError":
      return "No camera was found on this device.";
    case "NotReadableError":
    case "AbortError":
      return "The camera is in use by another application or could not be started.";
    default:
      return `The camera could not be started${error && error.message ? `: ${error.message}` : ""}.`;
  }
}

/** A frame of the video as a PNG File named camera-N.png. */
function grab(video, count) {
  const canvas = el("canvas", { width: video.videoWidth, height: video.videoHeight });
  canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve, reject) => canvas.toBlob((blob) => {
    if (blob) resolve(new File([blob], `camera-${count}.png`, { type: "image/png", lastModified: Date.now() }));
    else reject(new Error("The frame could not be encoded."));
  }, "image/png"));
}

/**
 * Add the camera controls after `anchor`. onCapture(file) receives each photo; onProblem(text) any failure.
 * Returns null where the browser has no camera API.
 */
export function setupCamera({ anchor, onCapture, onProblem }) {
  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) return null;
  const open = el("button", { type: "button", class: "secondary", id: "camera-open", "aria-expanded": "false",
    "aria-controls": "camera-panel" }, "Use camera");
  const video = el("video", { id: "camera-video", class: "camera-video", playsinline: true, muted: true,
    "aria-label": "Camera preview" });
  const capture = el("button", { type: "button", class: "primary", id: "camera-capture", disabled: true }, "Take photo");
  const close = el("button", { type: "button", class: "secondary", id: "camera-close" }, "Close camera");
  const status = el("p", { class: "hint camera-status", id: "camera-status", role: "status" });
  const panel = el("div", { class: "camera-panel", id: "camera-panel", hidden: true },
    video, el("div", { class: "camera-actions" }, capture, close), status);
  const root = el("div", { class: "camera field", id: "camera" }, open, panel);
  anchor.after(root);
  let stream = null;
  let shots = 0;

  function stop() {
    if (stream) stream.getTracks().forEach((track) => track.stop());
    stream = null;
    video.srcObject = null;
    capture.disabled = true;
    panel.hidden = true;
    open.setAttribute("aria-expanded", "false");
  }

  open.addEventListener("click", async () => {
    if (stream) {
      capture.focus();
      return;
    }
    open.disabled = true;
    status.textContent = "Starting the camera…";
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
      video.srcObject = stream;
      panel.hidden = false;
      open.setAttribute("aria-expanded", "true");
      await video.play();
      capture.disabled = false;
      status.textContent = "Camera on. Take photo adds the current frame to your images.";
      capture.focus();
    } catch (error) {
      stop();
      status.textContent = "";
      onProblem(cameraProblem(error));
    } finally {
      open.disabled = false;
    }
  });

  capture.addEventListener("click", async () => {
    if (!stream || !video.videoWidth) return;
    shots += 1;
    try {
      const file = await grab(video, shots);
      await onCapture(file);
      status.textContent = `Added ${file.name} (${video.videoWidth}×${video.videoHeight}).`;
    } catch (error) {
      onProblem(error.message);
    }
  });

  close.addEventListener("click", () => {
    stop();
    status.textContent = "";
    open.focus();
  });
  panel.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();  // not a Cancel of a running request
      close.click();
    }
  });
  window.addEventListener("pagehide", stop);
  return { stop };
}
