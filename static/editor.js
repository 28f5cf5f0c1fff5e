// Crop and rotate a chosen image before running: a modal dialog (focus kept inside, Escape cancels) with the
// image turned in quarter turns, a crop box drawn with the pointer or typed in pixels, and Apply, which puts the
// edited image in the selection in place of the original: what is sent is the edited file.
import { el, stem } from "./dom.js";

const PREVIEW_MAX = 720;  // longest side of the preview canvas, in canvas pixels (CSS shrinks it to fit the screen)
const ENLARGE_MAX = 16;  // a small image (a sprite, a digit) is enlarged this much at most, with crisp pixels
const MIN_DRAG = 4;  // a pointer drag shorter than this (preview pixels) is a click, not a crop
const TYPES = { jpeg: ["image/jpeg", "jpg"], webp: ["image/webp", "webp"] };  // other formats become PNG (keeps alpha)

function loadImage(url) {
  const image = new Image();
  image.src = url;
  return image.decode().then(() => image);
}

/** Draw `image` turned by `turns` quarter turns clockwise into `context`, whose origin is the turned image's corner. */
function drawTurned(context, image, turns) {
  const width = image.naturalWidth;
  const height = image.naturalHeight;
  const offsets = [[0, 0], [height, 0], [width, height], [0, width]];
  context.translate(...offsets[turns]);
  context.rotate((turns * Math.PI) / 2);
  context.drawImage(image, 0, 0);
}

/** A File of the crop of the turned image, in the original's format where a canvas can write it, else PNG. */
export function renderEdit(image, { turns, crop }, item) {
  const canvas = el("canvas", { width: crop.width, height: crop.height });
  const context = canvas.getContext("2d");
  context.translate(-crop.x, -crop.y);
  drawTurned(context, image, turns);
  const [type, extension] = TYPES[item.format] || ["image/png", "png"];
  const base = stem(item.name).replace(/-edited$/, "");
  return new Promise((resolve, reject) => canvas.toBlob((blob) => {
    if (blob) resolve(new File([blob], `${base}-edited.${extension}`, { type, lastModified: Date.now() }));
    else reject(new Error("The edited image could not be encoded."));
  }, type, 0.95));
}

export class Editor {
  /** onApply(item, file) replaces the item with the edited file and returns a promise. */
  constructor({ onApply }) {
    this.onApply = onApply;
    const field = (name, label) => {
      const input = el("input", { type: "number", id: `crop-${name}`, min: "0", step: "1", inputmode: "numeric", required: true });
      return [input, el("div", { class: "crop-field" }, el("label", { for: input.id }, label), input)];
    };
    [this.left, this.leftField] = field("left", "Left");
    [this.top, this.topField] = field("top", "Top");
    [this.width, this.widthField] = field("width", "Width");
    [this.height, this.heightField] = field("height", "Height");
    this.canvas = el("canvas", { class: "edit-canvas checker", id: "edit-canvas", width: "1", height: "1", role: "img",
      "aria-describedby": "edit-hint" });
    this.summary = el("p", { class: "edit-summary", id: "edit-summary", role: "status" });
    this.title = el("h2", { id: "edit-title" }, "Crop and rotate");
    this.rotateLeft = el("button", { type: "button", class: "secondary", id: "rotate-left" }, "↺ Rotate left");
    this.rotateRight = el("button", { type: "button", class: "secondary", id: "rotate-right" }, "↻ Rotate right");
    this.reset = el("button", { type: "button", class: "secondary", id: "edit-reset" }, "Reset");
    this.apply = el("button", { type: "submit", class: "primary", id: "edit-apply" }, "Apply");
    this.cancel = el("button", { type: "button", class: "secondary", id: "edit-cancel" }, "Cancel");
    this.error = el("p", { class: "file-error edit-error", id: "edit-error", role: "alert" });
    this.form = el("form", { method: "dialog", class: "edit-form", novalidate: true },
      this.title,
      el("p", { class: "hint", id: "edit-hint" }, "Drag on the image to choose the part to keep, or type it in pixels below. "
        + "Apply replaces the image in your selection; Cancel or Escape leaves it as it was."),
      el("div", { class: "edit-stage" }, this.canvas),
      el("div", { class: "edit-tools", role: "group", "aria-label": "Rotate" }, this.rotateLeft, this.rotateRight, this.reset),
      el("fieldset", { class: "crop-fields" }, el("legend", {}, "Crop (pixels)"),
        this.leftField, this.topField, this.widthField, this.heightField),
      this.summary, this.error,
      el("div", { class: "edit-actions" }, this.apply, this.cancel));
    this.dialog = el("dialog", { class: "editor", id: "editor", "aria-labelledby": "edit-title" }, this.form);
    document.body.append(this.dialog);

    this.rotateLeft.addEventListener("click", () => this.turn(3));
    this.rotateRight.addEventListener("click", () => this.turn(1));
    this.reset.addEventListener("click", () => this.setState({ turns: 0, crop: null }));
    this.cancel.addEventListener("click", () => this.dialog.close());
    [this.left, this.top, this.width, this.height].forEach((input) => input.addEventListener("input", () => this.fromFields()));
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    this.dialog.addEventListener("close", () => {
      if (this.returnFocus && this.returnFocus.isConnected) this.returnFocus.focus();
      this.image = null;
    });
    this.canvas.addEventListener("pointerdown", (event) => this.dragStart(event));
    this.canvas.addEventListener("pointermove", (event) => this.dragMove(event));
    this.canvas.addEventListener("pointerup", (event) => this.dragEnd(event));
    this.canvas.addEventListener("pointercancel", () => { this.drag = null; });
  }

  /** An "Crop / rotate" button for a file card; null for files the browser cannot draw. */
  buttonFor(item) {
    if (!item.url || item.damaged || item.error) return null;
    const button = el("button", { type: "button", class: "link-button edit-file", "aria-label": `Crop or rotate ${item.name}`,
      "aria-haspopup": "dialog" }, "Crop / rotate");
    button.addEventListener("click", () => this.open(item, button));
    return button;
  }

  async open(item, opener) {
    this.item = item;
    this.returnFocus = opener;
    this.error.textContent = "";
    try {
      this.image = await loadImage(item.url);
    } catch {
      return;  // the card's preview failed too: it says "No preview" and offers no editing
    }
    this.title.textContent = `Crop and rotate ${item.name}`;
    this.canvas.setAttribute("aria-label", `Preview of ${item.name} as it will be sent`);
    this.setState({ turns: 0, crop: null });
    this.dialog.showModal();
    this.rotateRight.focus();
  }

  /** The turned image's size. */
  get size() {
    const { naturalWidth: width, naturalHeight: height } = this.image;
    return this.state.turns % 2 ? { width: height, height: width } : { width, height };
  }

  setState({ turns, crop }) {
    this.state = { turns, crop: null };
    const { width, height } = this.size;
    this.state.crop = crop || { x: 0, y: 0, width, height };
    [this.left, this.width].forEach((input) => { input.max = String(width); });
    [this.top, this.height].forEach((input) => { input.max = String(height); });
    this.width.min = "1";
    this.height.min = "1";
    this.toFields();
    this.draw();
  }

  /** A quarter turn keeps the same part of the picture selected. */
  turn(quarters) {
    const { width, height } = this.size;
    const { x, y, width: w, height: h } = this.state.crop;
    const crop = quarters === 1 ? { x: height - y - h, y: x, width: h, height: w } : { x: y, y: width - x - w, width: h, height: w };
    this.setState({ turns: (this.state.turns + quarters) % 4, crop });
  }

  toFields() {
    const { x, y, width, height } = this.state.crop;
    this.left.value = String(x);
    this.top.value = String(y);
    this.width.value = String(width);
    this.height.value = String(height);
  }

  /** Typed numbers, kept inside the image (a value being typed may be out of range: it is clamped, not refused). */
  fromFields() {
    const { width: maxWidth, height: maxHeight } = this.size;
    const number = (input, fallback) => (Number.isFinite(input.valueAsNumber) ? Math.round(input.valueAsNumber) : fallback);
    const x = Math.min(Math.max(number(this.left, 0), 0), maxWidth - 1);
    const y = Math.min(Math.max(number(this.top, 0), 0), maxHeight - 1);
    const width = Math.min(Math.max(number(this.width, maxWidth), 1), maxWidth - x);
    const height = Math.min(Math.max(number(this.height, maxHeight), 1), maxHeight - y);
    this.state.crop = { x, y, width, height };
    this.draw();
  }

  draw() {
    const { width, height } = this.size;
    const scale = Math.min(ENLARGE_MAX, PREVIEW_MAX / Math.max(width, height));
    this.scale = scale;
    this.canvas.width = Math.max(1, Math.round(width * scale));
    this.canvas.height = Math.max(1, Math.round(height * scale));
    const context = this.canvas.getContext("2d");
    context.save();
    context.imageSmoothingEnabled = scale < 1;
    context.scale(scale, scale);
    drawTurned(context, this.image, this.state.turns);
    context.restore();
    const { x, y, width: w, height: h } = this.state.crop;
    const box = [x * scale, y * scale, w * scale, h * scale];
    context.save();
    context.fillStyle = "rgba(0, 0, 0, .55)";
    context.beginPath();
    context.rect(0, 0, this.canvas.width, this.canvas.height);
    context.rect(...box);
    context.fill("evenodd");
    context.lineWidth = 2;
    context.strokeStyle = "#fff";
    context.strokeRect(...box);
    context.setLineDash([6, 6]);
    context.strokeStyle = "#000";
    context.strokeRect(...box);
    context.restore();
    const turned = ["", ", turned 90° clockwise", ", turned 180°", ", turned 90° counter-clockwise"][this.state.turns];
    this.summary.textContent = `Sends ${w}×${h} pixels${turned} (the original is ${this.image.naturalWidth}×${this.image.naturalHeight}).`;
  }

  /** Pointer position in turned-image pixels. */
  point(event) {
    const rect = this.canvas.getBoundingClientRect();
    const { width, height } = this.size;
    return {
      x: Math.min(Math.max(((event.clientX - rect.left) / rect.width) * width, 0), width),
      y: Math.min(Math.max(((event.clientY - rect.top) / rect.height) * height, 0), height),
      screen: [event.clientX, event.clientY],
    };
  }

  dragStart(event) {
    if (event.button !== 0) return;
    event.preventDefault();
    this.canvas.setPointerCapture(event.pointerId);
    this.drag = { start: this.point(event), before: this.state.crop };
  }

  dragMove(event) {
    if (!this.drag) return;
    const end = this.point(event);
    const { start } = this.drag;
    if (Math.hypot(end.screen[0] - start.screen[0], end.screen[1] - start.screen[1]) < MIN_DRAG) return;
    const x = Math.floor(Math.min(start.x, end.x));
    const y = Math.floor(Math.min(start.y, end.y));
    this.state.crop = { x, y, width: Math.max(1, Math.ceil(Math.max(start.x, end.x)) - x),
      height: Math.max(1, Math.ceil(Math.max(start.y, end.y)) - y) };
    this.toFields();
    this.draw();
  }

  dragEnd(event) {
    if (this.drag) this.dragMove(event);
    this.drag = null;
  }

  get unchanged() {
    const { width, height } = this.size;
    const { x, y, width: w, height: h } = this.state.crop;
    return this.state.turns === 0 && x === 0 && y === 0 && w === width && h === height;
  }

  async save() {
    if (this.unchanged) {
      this.dialog.close();
      return;
    }
    this.apply.disabled = true;
    try {
      const file = await renderEdit(this.image, this.state, this.item);
      this.returnFocus = null;  // the card is drawn again: onApply puts focus on the new one
      this.dialog.close();
      await this.onApply(this.item, file);
    } catch (error) {
      this.error.textContent = error.message;
    } finally {
      this.apply.disabled = false;
    }
  }
}
