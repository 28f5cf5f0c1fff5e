// Drawing results by what they contain: score bars, an output image with a before/after slider, boxes, masks.
import { el, formatBytes, ms, percent, stem } from "./dom.js";

const EXTENSIONS = { "image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif", "image/bmp": "bmp", "image/tiff": "tif" };

/** A labelled bar per prediction, best first; the same markup the server renders without JavaScript. */
export function renderBars(predictions, label = "Top predictions") {
  return el("ol", { class: "bars", "aria-label": label },
    predictions.map((p, index) => el("li", { class: index === 0 ? "top" : false },
      el("span", { class: "label" }, p.label),
      el("meter", { class: "bar", min: "0", max: "1", value: String(p.score) }, percent(p.score)),
      el("span", { class: "score" }, percent(p.score)))));
}

/** The best prediction in large type, read before the bars (issue 17: a demo's answer at a glance). */
export function renderTopLabel(predictions) {
  if (!predictions.length) return null;
  const best = predictions[0];
  return el("p", { class: "top-label" },
    el("span", { class: "top-label-name" }, best.label), " ",
    el("span", { class: "top-label-score" }, percent(best.score)));
}

/** The URL inside an image field, whether the API sends a data URL string or an object describing it. */
export function imageUrl(value) {
  if (!value) return null;
  if (typeof value === "string") return value;
  return value.url || value.data_url || value.href || null;
}

/** A data: URL as a Blob (for downloads), decoded here so no fetch of data: URLs is needed. */
export function dataUrlToBlob(url) {
  const match = /^data:([^;,]+)(;base64)?,(.*)$/s.exec(url || "");
  if (!match) return null;
  const text = match[2] ? atob(match[3]) : decodeURIComponent(match[3]);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i += 1) bytes[i] = text.charCodeAt(i);
  return new Blob([bytes], { type: match[1] });
}

/** A download link; data URLs become object URLs so big outputs download without a giant href. */
function downloadLink(url, filename, text, blob = url.startsWith("data:") ? dataUrlToBlob(url) : null) {
  const href = blob ? URL.createObjectURL(blob) : url;
  return el("a", { class: "button primary", href, download: filename }, text);
}

/** An output as a PNG Blob: the one image type every browser's clipboard takes (WebP/JPEG outputs are redrawn). */
async function pngBlob(url) {
  const blob = url.startsWith("data:") ? dataUrlToBlob(url) : await (await fetch(url)).blob();
  if (blob.type === "image/png") return blob;
  const bitmap = await createImageBitmap(blob);
  const canvas = el("canvas", { width: bitmap.width, height: bitmap.height });
  canvas.getContext("2d").drawImage(bitmap, 0, 0);
  bitmap.close();
  return new Promise((resolve, reject) => canvas.toBlob(
    (png) => (png ? resolve(png) : reject(new Error("the image could not be converted to PNG"))), "image/png"));
}

/** "Copy image" beside Download, with a status line; nothing where the browser has no image clipboard. */
function copyControls(url, name) {
  if (!(window.isSecureContext && navigator.clipboard && navigator.clipboard.write && window.ClipboardItem)) return [];
  const button = el("button", { type: "button", class: "secondary copy-image", "aria-label": `Copy the output for ${name} to the clipboard` },
    "Copy image");
  const status = el("span", { class: "copy-status muted", role: "status" });
  button.addEventListener("click", async () => {
    status.textContent = "Copying…";
    try {
      // A promise inside the item keeps the click's user activation while the PNG is prepared (Safari needs that).
      await navigator.clipboard.write([new ClipboardItem({ "image/png": pngBlob(url) })]);
      status.textContent = "Copied to the clipboard.";
    } catch (error) {
      status.textContent = `Could not copy the image: ${error.message || error.name}`;
    }
  });
  return [button, status];
}

/** Let CSS size a frame to the image's shape (custom property set from script: allowed by a strict CSP). */
function setAspect(node, width, height) {
  if (width > 0 && height > 0) node.style.setProperty("--aspect", String(width / height));
}

/** Output over input, split by a draggable (and keyboard-operable) divider. */
export function compareSlider(beforeUrl, afterUrl, name, size = {}) {
  const range = el("input", { type: "range", min: "0", max: "100", value: "50", step: "1",
    "aria-label": `Comparison divider for ${name}: left of it is the input, right of it the output` });
  const frame = el("div", { class: "compare checker" },
    el("img", { class: "after", src: afterUrl, alt: `Output for ${name}` }),
    el("img", { class: "before", src: beforeUrl, alt: `Input ${name}` }),
    el("span", { class: "divider", "aria-hidden": "true" }),
    el("span", { class: "tag tag-before", "aria-hidden": "true" }, "Before"),
    el("span", { class: "tag tag-after", "aria-hidden": "true" }, "After"),
    range);
  setAspect(frame, size.width, size.height);
  const update = () => frame.style.setProperty("--split", `${range.value}%`);
  range.addEventListener("input", update);
  update();
  const after = frame.querySelector(".after");
  after.addEventListener("load", () => setAspect(frame, after.naturalWidth, after.naturalHeight), { once: true });
  return frame;
}

function imageOutput(result, input, context) {
  const url = imageUrl(result.image || result.output_image || result.image_url);
  const blob = url.startsWith("data:") ? dataUrlToBlob(url) : null;
  const mime = (blob && blob.type) || result.media_type || "image/png";
  const filename = `${stem(input.name)}-${context.model}.${EXTENSIONS[mime] || "png"}`;
  const visual = input.url ? compareSlider(input.url, url, input.name, input)
    : el("img", { class: "result-image checker", src: url, alt: `Output for ${input.name}` });
  const size = el("span", { class: "muted" }, [mime.split("/")[1].toUpperCase(), blob ? formatBytes(blob.size) : null].filter(Boolean).join(" · "));
  const output = visual.querySelector("img.after") || visual;
  output.addEventListener("load", () => {
    size.textContent = `${output.naturalWidth}×${output.naturalHeight} · ${size.textContent}`;
  }, { once: true });
  const link = downloadLink(url, filename, "Download", blob);
  link.setAttribute("aria-label", `Download the output for ${input.name} as ${filename}`);
  return el("div", { class: "result-body wide" }, ...zoomable(visual, output, link.href, input.name),
    el("div", { class: "output-actions" }, link, copyControls(url, input.name), size));
}

/** An output larger than its frame: "Actual size" shows it pixel for pixel in a scrollable box (the slider keeps
 * working), "Open full size" opens it alone in a new tab. Both appear only once the image is known to be shrunk. */
function zoomable(visual, output, href, name) {
  const view = el("div", { class: "zoom-box" }, visual);
  const toggle = el("button", { type: "button", class: "secondary zoom-toggle", "aria-pressed": "false",
    "aria-label": `Show the output for ${name} at actual size` }, "Actual size");
  const open = el("a", { class: "button secondary open-full", href, target: "_blank", rel: "noopener",
    "aria-label": `Open the output for ${name} at full size in a new tab` }, "Open full size");
  const actions = el("div", { class: "zoom-actions", hidden: true }, toggle, open);
  toggle.addEventListener("click", () => {
    const zoomed = toggle.getAttribute("aria-pressed") !== "true";
    view.style.setProperty("--natural-width", `${output.naturalWidth}px`);
    view.classList.toggle("zoom-view", zoomed);
    toggle.setAttribute("aria-pressed", String(zoomed));
  });
  const check = () => { actions.hidden = !(output.naturalWidth > Math.ceil(visual.getBoundingClientRect().width)); };
  if (output.complete && output.naturalWidth) requestAnimationFrame(check);
  else output.addEventListener("load", () => requestAnimationFrame(check), { once: true });
  return [view, actions];
}

function boxesOverlay(result, input) {
  const width = result.width || input.width;
  const height = result.height || input.height;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "boxes");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("aria-hidden", "true");
  const labels = el("div", { class: "box-labels", "aria-hidden": "true" });
  result.detections.forEach((d, index) => {
    const [x0, y0, x1, y1] = d.box;
    const rect = document.createElementNS(svg.namespaceURI, "rect");
    Object.entries({ x: x0, y: y0, width: x1 - x0, height: y1 - y0, class: `box-${index % 6}`, "vector-effect": "non-scaling-stroke" })
      .forEach(([key, value]) => rect.setAttribute(key, value));
    svg.append(rect);
    const tag = el("span", { class: `box-label box-${index % 6}` }, `${d.label} ${percent(d.score)}`);
    tag.style.setProperty("--x", `${(100 * x0) / width}%`);
    tag.style.setProperty("--y", `${(100 * y0) / height}%`);
    labels.append(tag);
  });
  return [svg, labels];
}

function overlayFrame(input, layers) {
  const base = input.url ? el("img", { class: "result-image checker", src: input.url, alt: `Input ${input.name}` })
    : el("span", { class: "thumb-placeholder" }, "No preview of the input in this browser.");
  const frame = el("div", { class: "overlay-frame" }, base, layers);
  setAspect(frame, input.width, input.height);
  return frame;
}

function detectionOutput(result, input) {
  const list = el("ol", { class: "detections", "aria-label": "Detected objects" },
    result.detections.length ? result.detections.map((d, index) => el("li", {},
      el("span", { class: `swatch box-${index % 6}`, "aria-hidden": "true" }), " ", el("strong", {}, d.label), ` ${percent(d.score)} `,
      el("span", { class: "muted" }, `at ${d.box.map((v) => Math.round(v)).join(", ")}`)))
      : el("li", { class: "muted" }, "Nothing detected."));
  return el("div", { class: "result-body wide" }, overlayFrame(input, input.url ? boxesOverlay(result, input) : []), list);
}

/** The mask's legend: per class present, its mask color (an SVG fill, which the CSP allows), label and share of
 * the picture; a clear swatch for the class the mask leaves transparent (background). */
function maskLegend(result) {
  if (!Array.isArray(result.classes)) {
    return Array.isArray(result.labels) ? el("p", { class: "muted" }, `Classes: ${result.labels.join(", ")}`) : null;
  }
  return el("ul", { class: "mask-legend", "aria-label": "Mask legend" }, result.classes.map((c) => {
    const painted = Boolean(c.color) && !(c.index === 0 && /^_*(background|bg)_*$/i.test(String(c.label)));
    const swatch = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    swatch.setAttribute("class", painted ? "swatch" : "swatch clear");
    swatch.setAttribute("viewBox", "0 0 1 1");
    swatch.setAttribute("aria-hidden", "true");
    if (painted) {
      const fill = document.createElementNS(swatch.namespaceURI, "rect");
      Object.entries({ width: 1, height: 1, fill: c.color }).forEach(([key, value]) => fill.setAttribute(key, value));
      swatch.append(fill);
    }
    return el("li", {}, swatch, " ", el("strong", {}, c.label), Number.isFinite(c.fraction) ? ` ${percent(c.fraction)}` : null);
  }));
}

function maskOutput(result, input, context) {
  const url = imageUrl(result.mask);
  const mask = el("img", { class: "mask-overlay", src: url, alt: `Segmentation mask for ${input.name}` });
  const frame = overlayFrame(input, input.url ? [mask] : []);
  if (!input.url) frame.replaceChildren(el("img", { class: "result-image checker", src: url, alt: `Segmentation mask for ${input.name}` }));
  const opacity = el("input", { type: "range", min: "0", max: "100", value: "55", id: `mask-${context.key}` });
  opacity.addEventListener("input", () => frame.style.setProperty("--mask-opacity", String(opacity.value / 100)));
  const link = downloadLink(url, `${stem(input.name)}-${context.model}-mask.png`, "Download mask");
  const legend = maskLegend(result);
  return el("div", { class: "result-body wide" }, frame, el("div", { class: "mask-controls" },
    input.url ? el("label", { for: opacity.id }, "Mask opacity ") : null, input.url ? opacity : null, legend,
    el("div", { class: "output-actions" }, link, copyControls(url, `${input.name} (mask)`))));
}

/** The caveats of a successful result (e.g. `unfamiliar_input`: a classifier unsure of an unusual input). */
function renderWarnings(warnings) {
  if (!Array.isArray(warnings)) return [];
  return warnings.map((warning) => el("p", { class: "result-warning", role: "note" }, el("strong", {}, "Warning:"), " ",
    warning.message, " ", el("span", { class: "muted" }, `(${warning.code})`)));
}

/** One image's result, chosen by the fields it carries rather than by the task name alone. */
export function renderResult(result, input, context) {
  const meta = result.width ? `${result.width}×${result.height} ${result.mode || ""}`.trim() : "";
  const head = el("header", { class: "result-head" },
    el("h3", { class: "result-name" }, input.name),
    el("p", { class: "muted result-meta" }, [meta, context.version ? `${context.model} v${context.version}` : context.model].filter(Boolean).join(" · ")));
  if (result.error) {
    const message = typeof result.error === "string" ? result.error : result.error.message;
    return el("article", { class: "result-item failed" }, head, el("div", { class: "alert", role: "alert" }, message));
  }
  let body;
  if (Array.isArray(result.predictions)) {
    const preview = input.url ? el("img", { class: "result-image checker", src: input.url, alt: `Input ${input.name}` }) : null;
    body = el("div", { class: "result-body" }, preview,
      el("div", { class: "prediction" }, renderTopLabel(result.predictions), renderBars(result.predictions)));
  } else if (imageUrl(result.image || result.output_image || result.image_url)) body = imageOutput(result, input, context);
  else if (Array.isArray(result.detections)) body = detectionOutput(result, input);
  else if (imageUrl(result.mask)) body = maskOutput(result, input, context);
  else body = el("pre", { class: "raw" }, JSON.stringify(result, null, 2));
  return el("article", { class: "result-item", "aria-label": `Result for ${input.name}` }, head, ...renderWarnings(result.warnings), body);
}

/** Request id, HTTP status and per-stage timings of one request. */
export function renderDetails(batch, title = "Details") {
  const rows = [["Request id", el("code", {}, batch.requestId || "–")], ["HTTP status", String(batch.status)],
    ...Object.entries(batch.timing || {}).map(([stage, value]) => [`Server ${stage}`, ms(value)]),
    ["Round trip", ms(batch.roundTripMs)]];
  return el("details", { class: "details" }, el("summary", {}, batch.count > 1 ? `${title} (${batch.count} images)` : title),
    el("dl", { class: "detail-list" }, rows.flatMap(([term, value]) => [el("dt", {}, term), el("dd", {}, value)])));
}

/** A whole run (one or more requests) as result cards followed by each request's details. */
export function renderRun(run) {
  const fragment = document.createDocumentFragment();
  run.batches.forEach((batch, index) => {
    const context = { model: batch.model || run.model, version: batch.version, key: `${run.id}-${index}` };
    batch.items.forEach(({ input, result }, position) => {
      fragment.append(renderResult(result, input, { ...context, key: `${context.key}-${position}` }));
    });
    const title = run.batches.length > 1 ? `Request ${index + 1} of ${run.batches.length}: details` : "Details";
    if (batch.status) fragment.append(renderDetails(batch, title));
  });
  return fragment;
}
