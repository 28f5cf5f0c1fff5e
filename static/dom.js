// Small DOM helpers shared by the page modules: build elements without innerHTML, format numbers for people.

/** Create an element with attributes (class, aria-*, data-*, …) and children (nodes or text). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (key === "text") node.textContent = value;
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** 1536 → "1.5 KB": sizes the way people read them. */
export function formatBytes(bytes) {
  if (!Number.isFinite(bytes)) return "?";
  if (bytes < 1024) return `${bytes} B`;
  const units = ["KB", "MB", "GB"];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit += 1; }
  return `${value < 10 ? value.toFixed(1) : Math.round(value)} ${units[unit]}`;
}

/** 0.98123 → "98.1%". */
export function percent(score) {
  return `${(Number(score) * 100).toFixed(1)}%`;
}

/** Milliseconds with one decimal, "12.3 ms". */
export function ms(value) {
  return `${Number(value).toFixed(1)} ms`;
}

/** "photo.final.png" → "photo.final". */
export function stem(filename) {
  const base = (filename || "image").split(/[\\/]/).pop();
  const dot = base.lastIndexOf(".");
  return dot > 0 ? base.slice(0, dot) : base || "image";
}
