// This browser session's results, newest first. With the server's history off, small summaries and thumbnails
// live in sessionStorage (History); with it on, the tab keeps only the ids of the rows it made and shows the
// server's entries (ServerHistory), each linking to its page under /history.
import { el, percent } from "./dom.js";

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
  constructor({ panel, list, clearButton, onShow, key = KEY }) {
    Object.assign(this, { panel, list, onShow, key });
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
      const entries = JSON.parse(sessionStorage.getItem(this.key) || "[]");
      return Array.isArray(entries) ? entries.filter((entry) => entry && typeof entry === "object") : [];
    } catch {
      return [];
    }
  }

  save() {
    try {
      sessionStorage.setItem(this.key, JSON.stringify(this.entries));
    } catch {
      this.entries = this.entries.slice(0, Math.ceil(this.entries.length / 2));  // over quota: keep the newest half
      try { sessionStorage.setItem(this.key, JSON.stringify(this.entries)); } catch { /* storage unavailable */ }
    }
  }

  /** Record one image's outcome; `run` is kept in memory so "Show" can redraw the full result. */
  add(entry, run) {
    this.runs.set(entry.runId, run);
    this.entries.unshift(entry);
    this.entries = this.entries.slice(0, LIMIT);
    this.save();
    this.forget();
    this.render();
  }

  /** Let go of runs no entry points at any more (their previews' object URLs with them). */
  forget() {
    const kept = new Set(this.entries.map((entry) => entry.runId));
    for (const [id, run] of this.runs) {
      if (kept.has(id)) continue;
      this.runs.delete(id);
      if (run && typeof run.release === "function") run.release();
    }
  }

  render() {
    this.panel.hidden = this.entries.length === 0;
    this.list.replaceChildren(...this.entries.map((entry) => this.renderEntry(entry)));
  }

  renderEntry(entry) {
    const time = new Date(entry.time);
    return el("li", { class: "history-entry" }, this.picture(entry),
      el("div", { class: "summary" }, el("strong", { title: entry.filename }, entry.filename),
        el("span", {}, `${entry.model}: ${entry.summary}`), " ",
        el("time", { datetime: time.toISOString() }, time.toLocaleTimeString())),
      this.showButton(entry) || el("span", {}));
  }

  picture(entry) {
    // The checkerboard covers the thumbnail's own pixels only (an opaque image gets no checkered border).
    return el("span", { class: "history-thumb" }, entry.thumb ? el("img", { src: entry.thumb, alt: "", class: "checker" })
      : el("span", { class: "thumb-placeholder checker", "aria-hidden": "true" }));
  }

  /** "Show" redraws a result of this page view (null for entries from before a reload). */
  showButton(entry) {
    const run = this.runs.get(entry.runId);
    if (!run) return null;
    const show = el("button", { type: "button", class: "link-button", "aria-label": `Show the result for ${entry.filename} again` }, "Show");
    show.addEventListener("click", () => this.onShow(run));
    return show;
  }
}

/** Stored times (<time datetime data-local>) in the visitor's zone; the UTC text the server wrote moves to the title. */
export function localizeTimes(root) {
  root.querySelectorAll("time[data-local]").forEach((node) => {
    const moment = new Date(node.getAttribute("datetime"));
    if (Number.isNaN(moment.getTime())) return;
    if (!node.title) node.title = node.textContent;
    node.textContent = moment.toLocaleString();
  });
}

const SERVER_KEY = "ai_service.history.server.v1";
const RETRY_MS = [250, 500, 1000, 2000, 4000, 8000];  // rows reach the database a moment after the answer

/** One line for a server row, like the local history's summaries. */
export function describeRow(row) {
  if (row.status === "error") return `error: ${row.error_code || "failed"}`;
  if (row.top1_label !== null && row.top1_label !== undefined) {
    return row.top1_score === null || row.top1_score === undefined ? row.top1_label : `${row.top1_label} (${percent(row.top1_score)})`;
  }
  const result = row.result || {};
  if (result.image) return "image output";
  if (Array.isArray(result.detections)) return `${result.detections.length} object(s)`;
  if (result.mask) return "segmentation mask";
  return "done";
}

/** The tab's entries in the server history: ids in sessionStorage, rows fetched from GET /api/v1/history/<id>. */
export class ServerHistory extends History {
  constructor({ panel, list, clearButton, onShow, apiUrl, pageUrl }) {
    super({ panel, list, clearButton, onShow, key: SERVER_KEY });
    Object.assign(this, { apiUrl: apiUrl.replace(/\/$/, ""), pageUrl: pageUrl.replace(/\/$/, "") });
    this.rows = new Map();  // id → server row, or null once it is known to be missing
    this.pending = new Set();
    this.entries.forEach((entry) => this.fetchRow(entry.id));
  }

  /** Record one image's outcome: `entry.id` is its history_id (null when the server could not record it). */
  add(entry, run) {
    super.add(entry, run);
    this.fetchRow(entry.id);
  }

  /** Fetch a row, retrying while the background writer has not stored it yet; re-render when it is known. */
  async fetchRow(id) {
    if (!id || this.rows.has(id) || this.pending.has(id)) return;
    this.pending.add(id);
    try {
      for (const delay of [0, ...RETRY_MS]) {
        if (delay) await new Promise((resolve) => { setTimeout(resolve, delay); });
        if (!this.entries.some((entry) => entry.id === id)) return;  // cleared meanwhile
        let response;
        try {
          response = await fetch(`${this.apiUrl}/${encodeURIComponent(id)}`, { headers: { Accept: "application/json" } });
        } catch {
          continue;  // the server is unreachable for a moment
        }
        if (response.ok) {
          const body = await response.json();
          this.rows.set(id, body && body.data && typeof body.data === "object" ? body.data : body);
          return;
        }
        if (response.status !== 404 && response.status < 500) break;
      }
      this.rows.set(id, null);
    } finally {
      this.pending.delete(id);
      this.render();
    }
  }

  renderEntry(entry) {
    const row = entry.id ? this.rows?.get(entry.id) : null;  // undefined: not fetched yet
    const time = new Date(row ? row.created_at : entry.time);
    const name = row ? row.filename || entry.filename : entry.filename;
    const model = row ? `${row.model}@${row.version}` : entry.model;
    let note = null;
    if (!entry.id) note = el("span", { class: "muted" }, " · not recorded");
    else if (row === null) note = el("span", { class: "muted" }, " · not in the server history");
    else if (row === undefined) note = el("span", { class: "muted" }, " · saving…");
    const link = entry.id && row ? el("a", { href: `${this.pageUrl}/${encodeURIComponent(entry.id)}`, class: "history-link",
      "aria-label": `History entry for ${name}` }, "Details") : null;
    return el("li", { class: "history-entry", "data-history-id": entry.id || false }, this.picture(entry),
      el("div", { class: "summary" }, el("strong", { title: name }, name),
        el("span", {}, `${model}: ${row ? describeRow(row) : entry.summary}`), " ",
        el("time", { datetime: Number.isNaN(time.getTime()) ? false : time.toISOString() },
          Number.isNaN(time.getTime()) ? "" : time.toLocaleTimeString()), note),
      el("span", { class: "history-actions" }, this.showButton(entry), link));
  }
}
