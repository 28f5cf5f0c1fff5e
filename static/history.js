// This browser session's results: kept in sessionStorage (small summaries and thumbnails), newest first.
import { el } from "./dom.js";

const KEY = "ai_service.history.v1";
const LIMIT = 30;
const THUMB_SIDE = 96;

/** A small JPEG/PNG data URL of an image URL, for the history list (null when it cannot be drawn). */
export async function thumbnail(url) {
  if (!url) return null;
  try {
    const image = new Image();
    image.src = url;
    await image.decode();
    const scale = Math.min(1, THUMB_SIDE / Math.max(image.naturalWidth, image.naturalHeight));
    const canvas = el("canvas", { width: Math.max(1, Math.round(image.naturalWidth * scale)), height: Math.max(1, Math.round(image.naturalHeight * scale)) });
    canvas.getContext("2d").drawImage(image, 0, 0, canvas.width, canvas.height);
    return canvas.toDataURL("image/png");
  } catch {
    return null;
  }
}

/** The session history list; entries from this page view can be shown again in full. */
export class History {
  constructor({ panel, list, clearButton, onShow }) {
    Object.assign(this, { panel, list, onShow });
    this.runs = new Map();
    this.entries = this.load();
    clearButton.addEventListener("click", () => {
      this.entries = [];
      this.runs.clear();
      this.save();
      this.render();
    });
    this.render();
  }

  load() {
    try {
      const entries = JSON.parse(sessionStorage.getItem(KEY) || "[]");
      return Array.isArray(entries) ? entries : [];
    } catch {
      return [];
    }
  }

  save() {
    try {
      sessionStorage.setItem(KEY, JSON.stringify(this.entries));
    } catch {
      this.entries = this.entries.slice(0, Math.ceil(this.entries.length / 2));  // over quota: keep the newest half
      try { sessionStorage.setItem(KEY, JSON.stringify(this.entries)); } catch { /* storage unavailable */ }
    }
  }

  /** Record one image's outcome; `run` is kept in memory so "Show" can redraw the full result. */
  add(entry, run) {
    this.runs.set(entry.runId, run);
    this.entries.unshift(entry);
    this.entries = this.entries.slice(0, LIMIT);
    this.save();
    this.render();
  }

  render() {
    this.panel.hidden = this.entries.length === 0;
    this.list.replaceChildren(...this.entries.map((entry) => {
      const time = new Date(entry.time);
      const picture = entry.thumb ? el("img", { src: entry.thumb, alt: "", class: "checker" }) : el("span", { class: "thumb-placeholder checker", "aria-hidden": "true" });
      const run = this.runs.get(entry.runId);
      const show = run ? el("button", { type: "button", class: "link-button", "aria-label": `Show the result for ${entry.filename} again` }, "Show") : null;
      if (show) show.addEventListener("click", () => this.onShow(run));
      return el("li", { class: "history-entry" }, picture,
        el("div", { class: "summary" }, el("strong", { title: entry.filename }, entry.filename),
          el("span", {}, `${entry.model}: ${entry.summary}`), " ",
          el("time", { datetime: time.toISOString() }, time.toLocaleTimeString())),
        show || el("span", {}));
    }));
  }
}
