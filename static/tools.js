// Tools page: send the form to POST /api/v1/convert with fetch, show the image and offer it as a download.
// Without JavaScript the same form posts to /tools and the server renders the result.
"use strict";
import { el } from "./dom.js";

const form = document.getElementById("tools-form");
const result = document.getElementById("tools-result");
const errorBox = document.getElementById("tools-error");
const progress = document.getElementById("tools-progress");
const runButton = document.getElementById("tools-run");
let lastUrl = null;

/** The form's controls as the API's operations list, in the same order the server uses. */
export function buildOperations(data) {
  const advanced = (data.get("operations") || "").trim();
  if (advanced) return advanced;
  const ops = [];
  if (data.get("key_enabled")) {
    ops.push({ op: "color_key", color: data.get("key_color"), tolerance: Number(data.get("key_tolerance") || 0),
      softness: Number(data.get("key_softness") || 0) });
  }
  if (data.get("flatten_enabled")) ops.push({ op: "flatten_alpha", background: data.get("flatten_background") });
  const width = data.get("width"), height = data.get("height");
  if (width || height) {
    ops.push({ op: "resize", width: width ? Number(width) : null, height: height ? Number(height) : null,
      fit: data.get("fit"), filter: data.get("filter"),
      pad_color: data.get("pad_transparent") ? null : data.get("pad_color") });
  }
  if (data.get("gray_enabled")) ops.push({ op: "to_gray", weights: data.get("gray_weights") });
  if (data.get("space")) ops.push({ op: "colorspace", space: data.get("space") });
  return JSON.stringify(ops);
}

function showError(message, code) {
  errorBox.replaceChildren(el("strong", { text: message }));
  if (code) errorBox.append(el("span", { class: "code", text: ` (${code})` }));
  errorBox.hidden = false;
  errorBox.focus?.();
}

function downloadName(file, format) {
  const stem = (file && file.name ? file.name.replace(/\.[^.]*$/, "") : "image").replace(/[^A-Za-z0-9._-]+/g, "_") || "image";
  return `${stem}-converted.${format === "jpeg" ? "jpg" : format}`;
}

function showResult(blob, response, name, format) {
  if (lastUrl) URL.revokeObjectURL(lastUrl);
  lastUrl = URL.createObjectURL(blob);
  const width = response.headers.get("X-Image-Width"), height = response.headers.get("X-Image-Height");
  const meta = `${width}×${height} ${response.headers.get("X-Image-Mode") || ""} · ${format.toUpperCase()} · ${blob.size.toLocaleString()} bytes`;
  const figure = el("figure", { class: "result-item" },
    el("img", { class: "result-image checker", id: "tools-output", src: lastUrl, alt: `Converted image, ${width}×${height}` }),
    el("figcaption", { class: "result-meta", id: "tools-meta", text: meta }));
  const actions = el("p", { class: "output-actions" },
    el("a", { class: "button", id: "tools-download", href: lastUrl, download: name, text: `Download ${name}` }));
  result.replaceChildren(figure, actions);
}

async function submit(event) {
  event.preventDefault();
  const data = new FormData(form);
  const file = data.get("file");
  if (!(file instanceof File) || !file.size) {
    showError("Choose an image file first.", "missing_file");
    return;
  }
  const maxBytes = Number(form.dataset.maxBytes || 0);
  if (maxBytes && file.size > maxBytes) {
    showError(`The file is larger than ${(maxBytes / 1048576).toFixed(0)} MB.`, "payload_too_large");
    return;
  }
  const format = data.get("format") || "png";
  const body = new FormData();
  body.append("file", file, file.name);
  body.append("operations", buildOperations(data));
  body.append("format", format);
  body.append("quality", data.get("quality") || "90");
  errorBox.hidden = true;
  progress.hidden = false;
  runButton.disabled = true;
  try {
    const response = await fetch(form.dataset.api, { method: "POST", body, headers: { Accept: "image/*" } });
    if (!response.ok) {
      let message = `The server answered ${response.status}.`, code = "";
      try {
        const payload = await response.json();
        message = payload.error?.message || message;
        code = payload.error?.code || "";
      } catch { /* not JSON */ }
      showError(message, code);
      return;
    }
    showResult(await response.blob(), response, downloadName(file, format), format);
  } catch (error) {
    showError(`Could not reach the server: ${error.message}`, "network_error");
  } finally {
    progress.hidden = true;
    runButton.disabled = false;
  }
}

if (form) form.addEventListener("submit", submit);
document.documentElement.dataset.toolsReady = "1";
