// The images the user has chosen: sniffed, measured and previewed in the browser before anything is sent.
import { el, formatBytes } from "./dom.js";

const FORMAT_NAMES = "PNG, JPEG, WebP, GIF, BMP, TIFF, ICO, PSD or SVG";
/** Formats every current browser can draw in an <img>, so they get a preview and a comparison slider. */
const PREVIEWABLE = new Set(["png", "jpeg", "gif", "webp", "bmp", "ico", "svg"]);

const startsWith = (bytes, ...values) => values.every((v, i) => bytes[i] === v);
const ascii = (bytes, start, end) => String.fromCharCode(...bytes.slice(start, end));

/** Name the format from magic numbers, the same rules the server applies (never trust the file name). */
export function sniffFormat(bytes) {
  if (startsWith(bytes, 0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a)) return "png";
  if (startsWith(bytes, 0xff, 0xd8, 0xff)) return "jpeg";
  if (["GIF87a", "GIF89a"].includes(ascii(bytes, 0, 6))) return "gif";
  if (ascii(bytes, 0, 4) === "RIFF" && ascii(bytes, 8, 12) === "WEBP") return "webp";
  if (ascii(bytes, 0, 2) === "BM" && bytes.length >= 26) return "bmp";
  if (["II*\0", "MM\0*", "II+\0", "MM\0+"].includes(ascii(bytes, 0, 4))) return "tiff";
  if (startsWith(bytes, 0, 0, 1, 0) && bytes.length >= 6 && (bytes[4] | (bytes[5] << 8)) > 0) return "ico";
  if (ascii(bytes, 0, 4) === "8BPS") return "psd";
  const text = new TextDecoder("utf-8", { fatal: false }).decode(bytes).toLowerCase();
  if (/<svg[\s>]/.test(text)) return "svg";
  return null;
}

/** Width and height from the header for formats the browser cannot draw (PSD); null when unknown. */
function headerSize(bytes, format) {
  if (format === "psd" && bytes.length >= 22) {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return { width: view.getUint32(18), height: view.getUint32(14) };
  }
  return null;
}

async function measure(url) {
  const image = new Image();
  image.src = url;
  await image.decode();
  return { width: image.naturalWidth, height: image.naturalHeight };
}

let nextId = 1;

/** One chosen file and what we learned about it; `error` set means it will not be sent. */
export async function inspect(file, limits) {
  const item = { id: nextId++, file, name: file.name || "image", format: null, width: 0, height: 0, url: null, error: null };
  if (file.size === 0) {
    item.error = `${item.name} is empty.`;
    return item;
  }
  if (file.size > limits.maxFileBytes) {
    item.error = `${item.name} is ${formatBytes(file.size)}; the limit is ${formatBytes(limits.maxBytes)} per upload.`;
    return item;
  }
  const head = new Uint8Array(await file.slice(0, 4096).arrayBuffer());
  item.format = sniffFormat(head);
  if (!item.format) {
    // The browser's type comes from the file name, not the content: say so rather than "(it is image/png)".
    item.error = file.type.startsWith("image/")
      ? `${item.name} is not an image: its name says ${file.type.slice(6).toUpperCase()}, but its content is not a ${FORMAT_NAMES} image.`
      : `${item.name} is not an image${file.type ? ` (its type is ${file.type})` : ""}. Choose a ${FORMAT_NAMES} file.`;
    return item;
  }
  if (PREVIEWABLE.has(item.format)) {
    item.url = URL.createObjectURL(file);
    try {
      Object.assign(item, await measure(item.url));
    } catch {
      URL.revokeObjectURL(item.url);  // nothing to preview: the card says "No preview" instead of a broken image
      item.url = null;
      item.damaged = true;
      item.error = `${item.name} looks like ${item.format.toUpperCase()} but could not be decoded; it may be damaged.`;
      return item;
    }
  } else {
    Object.assign(item, headerSize(head, item.format) || {});
  }
  return item;  // the pixel limit depends on the chosen model: Selection.problem() checks it
}

const megapixels = (n) => `${(n / 1e6).toFixed(1)} megapixels`;

/** Why an image over the pixel limit is not sent, with its size, the limit and the model it was meant for. */
export function pixelLimitMessage(item, maxPixels, model) {
  return `${item.name} is ${item.width}×${item.height} (${megapixels(item.width * item.height)}); `
    + `${model ? `${model} takes` : "the server takes"} at most ${megapixels(maxPixels)} per image. Shrink it before sending.`;
}

/** The list of chosen images: previews, metadata, client-side errors, and the input kept in sync. */
export class Selection {
  constructor({ input, list, messages, limits, onChange, cardActions = () => null }) {
    Object.assign(this, { input, list, messages, limits, onChange, cardActions });
    this.items = [];
    this.pasted = 0;
    this.model = "";
    this.maxPixels = limits.maxPixels;
  }

  /** The model the images are meant for and its own pixel limit (an upscaler's is lower than the server's). */
  setModel(name, modelMaxPixels = null) {
    const maxPixels = Math.min(this.limits.maxPixels, modelMaxPixels > 0 ? modelMaxPixels : Infinity);
    if (name === this.model && maxPixels === this.maxPixels) return;
    Object.assign(this, { model: name, maxPixels });
    if (this.items.length) this.render();
  }

  /** Why an item will not be sent (null when it will): checked before anything is uploaded. */
  problem(item) {
    if (item.error) return item.error;
    return item.width * item.height > this.maxPixels ? pixelLimitMessage(item, this.maxPixels, this.model) : null;
  }

  /** Inspect and append files; announce the ones we refuse. */
  async add(files, source = "picker") {
    const incoming = Array.from(files).map((file) => this.rename(file, source));
    if (!incoming.length) return;
    const inspected = await Promise.all(incoming.map((file) => inspect(file, this.limits)));
    this.items.push(...inspected);
    // Each refusal is written once, on its file's card; the live region only announces it to screen readers.
    this.announce(inspected.map((item) => this.problem(item)).filter(Boolean));
    this.render();
  }

  /** Clipboard images arrive as "image.png"; give each a distinct, readable name. */
  rename(file, source) {
    if (source !== "paste") return file;
    this.pasted += 1;
    const extension = (file.type.split("/")[1] || "png").replace("jpeg", "jpg").replace("svg+xml", "svg");
    return new File([file], `pasted-${this.pasted}.${extension}`, { type: file.type, lastModified: Date.now() });
  }

  remove(id) {
    const index = this.items.findIndex((item) => item.id === id);
    if (index < 0) return;
    const [item] = this.items.splice(index, 1);
    if (item.url) URL.revokeObjectURL(item.url);
    this.render();
    const buttons = this.list.querySelectorAll(".remove-file");
    (buttons[Math.min(index, buttons.length - 1)] || this.input).focus();
  }

  clear() {
    this.items.forEach((item) => item.url && URL.revokeObjectURL(item.url));
    this.items = [];
    this.showMessages([]);
    this.render();
  }

  /** Put an edited file where an item was (same place in the list), inspected like any other; returns the new item. */
  async replace(id, file) {
    const fresh = await inspect(file, this.limits);
    const index = this.items.findIndex((item) => item.id === id);
    if (index < 0) {
      if (fresh.url) URL.revokeObjectURL(fresh.url);
      return null;
    }
    const [old] = this.items.splice(index, 1, fresh);
    if (old.url) URL.revokeObjectURL(old.url);
    const problem = this.problem(fresh);
    this.announce(problem ? [problem] : []);
    this.render();
    return fresh;
  }

  valid() {
    return this.items.filter((item) => !this.problem(item));
  }

  /** Mark an item as refused by the server (its message replaces the metadata line). */
  reject(id, message) {
    const item = this.items.find((candidate) => candidate.id === id);
    if (item) item.serverError = message;
    this.render();
  }

  /** Forget the server's verdicts before files are sent again. */
  clearServerErrors() {
    if (!this.items.some((item) => item.serverError)) return;
    this.items.forEach((item) => { delete item.serverError; });
    this.render();
  }

  showMessages(errors) {
    this.messages.replaceChildren(...errors.map((text) => el("div", { class: "alert", role: "alert" }, text)));
  }

  /** Messages already shown on the file cards: read out, not drawn a second time. */
  announce(errors) {
    this.messages.replaceChildren(...errors.map((text) => el("div", { class: "alert visually-hidden", role: "alert" }, text)));
  }

  /** Keep the real <input type=file> holding the valid files, so the form stays truthful. */
  syncInput() {
    try {
      const transfer = new DataTransfer();
      this.valid().forEach((item) => transfer.items.add(item.file));
      this.input.files = transfer.files;
    } catch {
      /* Older browsers cannot assign FileLists; the page sends files from this list anyway. */
    }
  }

  render() {
    this.list.replaceChildren(...this.items.map((item) => this.card(item)));
    this.syncInput();
    this.onChange(this);
  }

  card(item) {
    const placeholder = () => el("span", { class: "thumb-placeholder" },
      item.format && !item.damaged ? `${item.format.toUpperCase()}: no preview in this browser` : "No preview");
    // The checkerboard sits behind the image's own box only: an opaque image gets no transparent-looking border.
    const thumb = item.url ? el("img", { src: item.url, alt: `Preview of ${item.name}`, class: "checker" }) : placeholder();
    if (item.url) {
      if (item.width && item.height) thumb.style.setProperty("--aspect", String(item.width / item.height));
      thumb.addEventListener("error", () => {
        item.damaged = true;
        thumb.replaceWith(placeholder());
      }, { once: true });
    }
    const facts = [formatBytes(item.file.size)];
    if (item.width) facts.push(`${item.width}×${item.height}`);
    if (item.format) facts.push(item.format.toUpperCase());
    const problem = this.problem(item) || item.serverError;
    const remove = el("button", { type: "button", class: "remove-file", "aria-label": `Remove ${item.name}` }, "×");
    remove.addEventListener("click", () => this.remove(item.id));
    return el("li", { class: `file-card${problem ? " invalid" : ""}`, "data-id": item.id },
      el("div", { class: "thumb" }, thumb),
      el("div", { class: "file-info" },
        el("div", { class: "file-name", title: item.name }, item.name),
        el("div", { class: "file-meta" }, facts.join(" · ")),
        problem ? el("div", { class: "file-error" }, problem) : null,
        this.cardActions(item)),
      remove);
  }
}
