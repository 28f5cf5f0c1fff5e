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
    const kind = file.type ? ` (it is ${file.type})` : "";
    item.error = `${item.name} is not an image${kind}. Choose a ${FORMAT_NAMES} file.`;
    return item;
  }
  if (PREVIEWABLE.has(item.format)) {
    item.url = URL.createObjectURL(file);
    try {
      Object.assign(item, await measure(item.url));
    } catch {
      item.error = `${item.name} looks like ${item.format.toUpperCase()} but could not be decoded; it may be damaged.`;
      return item;
    }
  } else {
    Object.assign(item, headerSize(head, item.format) || {});
  }
  if (item.width * item.height > limits.maxPixels) {
    const mp = (n) => `${(n / 1e6).toFixed(1)} MP`;
    item.error = `${item.name} is ${item.width}×${item.height} (${mp(item.width * item.height)}); the limit is ${mp(limits.maxPixels)}.`;
  }
  return item;
}

/** The list of chosen images: previews, metadata, client-side errors, and the input kept in sync. */
export class Selection {
  constructor({ input, list, messages, limits, onChange }) {
    Object.assign(this, { input, list, messages, limits, onChange });
    this.items = [];
    this.pasted = 0;
  }

  /** Inspect and append files; announce the ones we refuse. */
  async add(files, source = "picker") {
    const incoming = Array.from(files).map((file) => this.rename(file, source));
    if (!incoming.length) return;
    const inspected = await Promise.all(incoming.map((file) => inspect(file, this.limits)));
    this.items.push(...inspected);
    this.showMessages(inspected.filter((item) => item.error).map((item) => item.error));
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

  valid() {
    return this.items.filter((item) => !item.error);
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
    const thumb = item.url
      ? el("img", { src: item.url, alt: `Preview of ${item.name}` })
      : el("span", { class: "thumb-placeholder" }, item.format ? `${item.format.toUpperCase()}: no preview in this browser` : "No preview");
    const facts = [formatBytes(item.file.size)];
    if (item.width) facts.push(`${item.width}×${item.height}`);
    if (item.format) facts.push(item.format.toUpperCase());
    const problem = item.error || item.serverError;
    const remove = el("button", { type: "button", class: "remove-file", "aria-label": `Remove ${item.name}` }, "×");
    remove.addEventListener("click", () => this.remove(item.id));
    return el("li", { class: `file-card${problem ? " invalid" : ""}`, "data-id": item.id },
      el("div", { class: "thumb checker" }, thumb),
      el("div", { class: "file-info" },
        el("div", { class: "file-name", title: item.name }, item.name),
        el("div", { class: "file-meta" }, facts.join(" · ")),
        problem ? el("div", { class: "file-error" }, problem) : null),
      remove);
  }
}
