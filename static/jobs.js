// The Jobs page: choose a folder (picker or drag and drop, relative paths kept), an archive or images; submit them
// to POST /api/v1/jobs; follow the job by polling GET /api/v1/jobs/<id> (bar, counts, rate, ETA); cancel; download.
// Without this script the page lists recent jobs with their download links and says how to submit with curl.
import { errorMessage, postForm } from "./api.js";
import { el, formatBytes } from "./dom.js";
import { localizeTimes } from "./history.js";

const byId = (id) => document.getElementById(id);
const ARCHIVE = /\.(zip|tar|tgz|tar\.gz|tar\.bz2|tbz2|tar\.xz|txz)$/i;
const TERMINAL = new Set(["succeeded", "failed", "cancelled"]);
const POLL_MS = 1000;
const FORMATS = ["jsonl", "csv", "parquet"];

/** Skip what a folder carries besides its images: hidden files (.DS_Store, ._x, .git/...). */
const wanted = (path) => !path.split("/").some((part) => part.startsWith("."));

/** Which option fields a model uses, by its task (the same rule as the upload page). */
function usesOption(task, field) {
  return !field.dataset.tasks || field.dataset.tasks.split(" ").includes(task || "classification");
}

/** Every file under a dropped directory entry, with its path relative to the drop. */
async function walk(entry, found) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    found.push({ file, path: entry.fullPath.replace(/^\/+/, "") });
    return;
  }
  const reader = entry.createReader();
  for (;;) {  // readEntries answers in batches (100 in Chrome) until an empty one
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (!batch.length) break;
    for (const child of batch) await walk(child, found);
  }
}

/** "95 s" → "1 min 35 s": how people read a duration. */
export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "–";
  const s = Math.round(seconds);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  return `${Math.floor(m / 60)} h ${m % 60} min`;
}

function start(form) {
  const api = form.dataset.api;
  const maxBytes = Number(form.dataset.maxBytes);
  const maxItems = Number(form.dataset.maxItems);
  const historyPage = form.dataset.history;
  const filesInput = byId("job-files");
  const folderInput = byId("job-folder");
  const dropzone = byId("job-dropzone");
  const submit = byId("job-submit");
  const clear = byId("job-clear");
  const summary = byId("job-selection");
  const problem = byId("job-error");
  const modelSelect = byId("model");
  const optionFields = Array.from(form.querySelectorAll(".option[data-tasks]"));
  let selection = null;  // {archive: File} or {items: [{file, path}], name}
  let watching = null;

  function showProblem(message) {
    problem.textContent = message || "";
    problem.hidden = !message;
  }

  function choose(next) {
    if (next && next.items) next.items.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));  // results in path order
    selection = next;
    showProblem("");
    if (!next) {
      summary.textContent = "Nothing chosen yet.";
    } else if (next.archive) {
      summary.textContent = `Archive ${next.archive.name}, ${formatBytes(next.archive.size)}: unpacked on the server.`;
    } else {
      const bytes = next.items.reduce((sum, item) => sum + item.file.size, 0);
      const from = next.name ? ` from ${next.name}` : "";
      summary.textContent = `${next.items.length.toLocaleString("en")} file(s)${from}, ${formatBytes(bytes)}.`;
      if (next.items.length > maxItems) showProblem(`At most ${maxItems.toLocaleString("en")} images per job.`);
      else if (bytes > maxBytes) showProblem(`At most ${formatBytes(maxBytes)} per job.`);
    }
    const size = next ? (next.archive ? next.archive.size : next.items.reduce((s, i) => s + i.file.size, 0)) : 0;
    const count = next && next.items ? next.items.length : 1;
    submit.disabled = !next || (next.items && !next.items.length) || size > maxBytes || count > maxItems;
    clear.disabled = !next;
    if (next && !next.archive && next.name && !byId("job-name").value) byId("job-name").placeholder = next.name;
  }

  /** Files from the picker: one archive, or images (a folder picker gives their relative paths). */
  function fromFiles(files) {
    const list = Array.from(files);
    if (list.length === 1 && ARCHIVE.test(list[0].name)) return { archive: list[0] };
    const items = list.map((file) => ({ file, path: file.webkitRelativePath || file.name })).filter((i) => wanted(i.path));
    const top = items.length && items[0].path.includes("/") ? items[0].path.split("/")[0] : "";
    return { items, name: top };
  }

  filesInput.addEventListener("change", () => { if (filesInput.files.length) choose(fromFiles(filesInput.files)); });
  folderInput.addEventListener("change", () => { if (folderInput.files.length) choose(fromFiles(folderInput.files)); });
  byId("job-folder-button").addEventListener("click", () => folderInput.click());
  clear.addEventListener("click", () => { filesInput.value = ""; folderInput.value = ""; choose(null); });

  for (const name of ["dragenter", "dragover"]) {
    dropzone.addEventListener(name, (event) => { event.preventDefault(); dropzone.classList.add("dragging"); });
  }
  dropzone.addEventListener("dragleave", () => dropzone.classList.remove("dragging"));
  dropzone.addEventListener("drop", async (event) => {
    event.preventDefault();
    dropzone.classList.remove("dragging");
    const entries = Array.from(event.dataTransfer.items || [], (item) => item.webkitGetAsEntry && item.webkitGetAsEntry())
      .filter(Boolean);
    if (!entries.length || entries.every((entry) => entry.isFile)) {
      choose(fromFiles(event.dataTransfer.files));
      return;
    }
    summary.textContent = "Reading the folder…";
    const found = [];
    try {
      for (const entry of entries) await walk(entry, found);
    } catch (error) {
      showProblem(`The folder could not be read: ${error.message || error}`);
      return;
    }
    const folders = entries.filter((entry) => entry.isDirectory);
    choose({ items: found.filter((item) => wanted(item.path)), name: folders.length === 1 ? folders[0].name : "" });
  });

  function applyModel() {
    const option = modelSelect.selectedOptions[0];
    const task = option ? option.dataset.task : "classification";
    optionFields.forEach((field) => { field.hidden = !usesOption(task, field); });
  }
  modelSelect.addEventListener("change", applyModel);
  applyModel();

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!selection || submit.disabled) return;
    const body = new FormData();
    body.append("model", modelSelect.value);
    for (const field of optionFields.filter((f) => !f.hidden)) {
      const input = field.querySelector("input, select");
      if (input.value !== "") body.append(input.name, input.value);
    }
    const name = byId("job-name").value.trim() || (selection.archive ? selection.archive.name : selection.name);
    if (name) body.append("name", name.slice(0, 255));
    if (selection.archive) body.append("archive", selection.archive, selection.archive.name);
    else selection.items.forEach((item) => body.append("file", item.file, item.path));
    const progress = byId("upload-progress");
    const bar = byId("upload-bar");
    const text = byId("upload-text");
    progress.hidden = false;
    submit.disabled = true;
    showProblem("");
    try {
      const answer = await postForm(api, body, (step) => {
        if (step.phase === "upload") {
          bar.value = Math.round(step.fraction * 100);
          text.textContent = `Uploading… ${Math.round(step.fraction * 100)}%`;
        } else {
          bar.removeAttribute("value");
          text.textContent = "Storing the inputs…";
        }
      });
      if (answer.status !== 202) throw new Error(errorMessage(answer.body, answer.status));
      watch(answer.body.id, name);
      refreshList();
    } catch (error) {
      showProblem(error.message);
    } finally {
      progress.hidden = true;
      submit.disabled = !selection;
    }
  });

  const panel = byId("job-current");
  const cancel = byId("job-cancel");
  const historyLink = byId("job-history");

  function show(job) {
    const finished = job.done + job.failed;
    byId("job-state").textContent = job.status;
    byId("job-state").className = `badge job-state-${job.status}`;
    if (job.name) byId("job-name-shown").textContent = job.name;
    const bar = byId("job-bar");
    bar.max = Math.max(job.total, 1);
    bar.value = finished;
    byId("job-counts").textContent = `${finished.toLocaleString("en")} of ${job.total.toLocaleString("en")} images`;
    byId("job-done").textContent = job.done.toLocaleString("en");
    byId("job-failed").textContent = job.failed.toLocaleString("en");
    byId("job-rate").textContent = job.throughput_per_s ? `${job.throughput_per_s.toFixed(1)} images/s` : "–";
    byId("job-eta").textContent = TERMINAL.has(job.status) ? "–" : duration(job.eta_s);
    const message = byId("job-message");
    message.hidden = !job.error;
    message.textContent = job.error ? `${job.error.message} (${job.error.code})` : "";
    cancel.hidden = TERMINAL.has(job.status);
    historyLink.hidden = !TERMINAL.has(job.status);
  }

  async function poll(id) {
    if (watching !== id) return;
    let job = null;
    try {
      const response = await fetch(`${api}/${id}`, { headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!response.ok) throw new Error(errorMessage(body, response.status));
      job = body;
    } catch (error) {
      const message = byId("job-message");
      message.hidden = false;
      message.textContent = error.message;
    }
    if (watching !== id) return;
    if (job) show(job);
    if (job && TERMINAL.has(job.status)) {
      refreshList();
      panel.dataset.finished = job.status;
      return;
    }
    window.setTimeout(() => poll(id), POLL_MS);
  }

  function watch(id, name = "") {
    watching = id;
    panel.hidden = false;
    delete panel.dataset.finished;
    byId("job-id").textContent = id;
    byId("job-name-shown").textContent = name;
    panel.querySelectorAll("[data-format]").forEach((link) => { link.href = `${api}/${id}/results?format=${link.dataset.format}`; });
    panel.querySelector("[data-outputs]").href = `${api}/${id}/outputs.zip`;
    historyLink.href = `${historyPage}?job_id=${encodeURIComponent(id)}`;
    const url = new URL(window.location.href);
    url.searchParams.set("job", id);
    window.history.replaceState(null, "", url);
    poll(id);
  }

  cancel.addEventListener("click", async () => {
    if (!watching) return;
    cancel.disabled = true;
    try {
      const response = await fetch(`${api}/${watching}`, { method: "DELETE", headers: { Accept: "application/json" } });
      const body = await response.json();
      if (!response.ok) throw new Error(errorMessage(body, response.status));
      show(body);
    } catch (error) {
      const message = byId("job-message");
      message.hidden = false;
      message.textContent = error.message;
    } finally {
      cancel.disabled = false;
    }
  });

  function row(job) {
    const links = FORMATS.flatMap((fmt) => [el("a", { href: `${api}/${job.id}/results?format=${fmt}`, download: true }, fmt), " "]);
    const created = el("time", { datetime: job.created_at, "data-local": true }, job.created_at);
    const watchLink = el("a", { href: `?job=${job.id}` }, created);
    watchLink.addEventListener("click", (event) => { event.preventDefault(); watch(job.id, job.name); });
    const state = job.status === "succeeded" ? "state-loaded" : ["failed", "cancelled"].includes(job.status) ? "state-failed" : "";
    return el("tr", { "data-job": job.id, class: `job-${job.status}` },
      el("th", { scope: "row" }, watchLink),
      el("td", { class: "file-cell", title: job.name }, job.name || "–"),
      el("td", {}, job.model, job.version ? el("span", { class: "muted" }, `@${job.version}`) : null),
      el("td", {}, el("span", { class: `state ${state}` }, job.status)),
      el("td", { class: "num" }, String(job.done)),
      el("td", { class: "num" }, String(job.failed)),
      el("td", { class: "num" }, String(job.total)),
      el("td", { class: "exports" }, links, el("a", { href: `${api}/${job.id}/outputs.zip`, download: true }, "zip"), " · ",
        el("a", { href: `${historyPage}?job_id=${encodeURIComponent(job.id)}` }, "history")));
  }

  async function refreshList() {
    try {
      const response = await fetch(`${api}?limit=20`, { headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const body = await response.json();
      const table = byId("jobs-table");
      table.tBodies[0].replaceChildren(...body.items.map(row));
      table.closest(".table-scroll").hidden = !body.items.length;
      byId("jobs-empty").hidden = Boolean(body.items.length);
      localizeTimes(table);
    } catch {
      // the server-rendered list stays
    }
  }

  document.querySelectorAll("#jobs-table tbody tr[data-job]").forEach((tr) => {
    const link = tr.querySelector("th a");
    link.addEventListener("click", (event) => { event.preventDefault(); watch(tr.dataset.job, tr.children[1].title); });
  });
  const requested = new URL(window.location.href).searchParams.get("job");
  if (requested && /^[0-9a-f]{32}$/.test(requested)) watch(requested);
}

localizeTimes(document);
const form = byId("job-form");
if (form) start(form);
document.documentElement.dataset.ready = "true";
