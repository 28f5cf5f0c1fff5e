// Progressive enhancement of the upload page: the plain form keeps working without this script; with it the
// page gains drop/paste/multi-file previews, a model picker from the API, in-place results, drawing and history.
import { errorMessage, fetchModels, normalize, postForm } from "./api.js";
import { el, formatBytes, percent } from "./dom.js";
import { setupDrawing } from "./draw.js";
import { Selection } from "./files.js";
import { History, ServerHistory, thumbnail } from "./history.js";
import { imageUrl, renderRun } from "./results.js";
import { ApiPanel, requestFrom, requestFromForm } from "./api-snippets.js";
import { Examples } from "./examples.js";
import { RunControl } from "./run-control.js";
import { setupCamera } from "./camera.js";
import { Editor } from "./editor.js";
import { layerChoice } from "./psd.js";

const MULTIPART_ALLOWANCE = 64 * 1024;  // headers and boundaries around the files in one request
const byId = (id) => document.getElementById(id);
const reducedMotion = window.matchMedia("(prefers-reduced-motion: reduce)");

/** Models can be drawn on when the API says so, or for the built-in handwritten digits model. */
const drawable = (model) => Boolean(model && (model.drawable || model.name === "digits"));

/** The value the API takes for a model: its bare name for the default version, else name@version. */
const refOf = (model) => (model.default === false && model.key ? model.key : model.name);

/** Which option fields a model uses: its own list when the API gives one, else the defaults for its task. */
function usesOption(model, field) {
  const name = field.dataset.option;
  if (model && Array.isArray(model.options)) return model.options.includes(name);
  return (field.dataset.tasks || "").split(" ").includes(model ? model.task : "classification");
}

function modelFacts(model) {
  const size = Array.isArray(model.input_size) ? `input ${model.input_size.join("×")} ${model.input_mode || ""}`.trim() : null;
  return [
    el("p", { class: "model-description" }, model.description || "No description."),
    el("p", { class: "model-facts" }, el("span", { class: `badge task-${model.task}` }, model.task),
      size ? el("span", {}, size) : null, model.version ? el("span", {}, `v${model.version}`) : null,
      model.state ? el("span", { class: `state state-${model.state}` }, model.state) : null),
  ];
}

/** Split the chosen files into requests the server accepts: at most max_files and max bytes each. */
function batches(items, limits) {
  const groups = [];
  let current = [];
  let bytes = 0;
  for (const item of items) {
    if (current.length && (current.length >= limits.maxFiles || bytes + item.file.size > limits.maxFileBytes)) {
      groups.push(current);
      current = [];
      bytes = 0;
    }
    current.push(item);
    bytes += item.file.size;
  }
  if (current.length) groups.push(current);
  return groups;
}

/** Text as a sentence: a full stop added only when it does not end with one already ("equal to 1.." never). */
const sentence = (text) => (/[.!?…]$/.test(text) ? text : `${text}.`);

/** An input whose preview belongs to the run: "Clear images" revokes the selection's URLs, not this one. */
const keepable = (item) => ({ ...item, url: item.url ? URL.createObjectURL(item.file) : null });

/** One line for the history list. */
function summarise(result) {
  if (result.error) return `error: ${typeof result.error === "string" ? result.error : result.error.message}`;
  if (Array.isArray(result.predictions) && result.predictions.length) {
    const best = result.predictions[0];
    return `${best.label} (${percent(best.score)})`;
  }
  if (imageUrl(result.image || result.output_image || result.image_url)) return "image output";
  if (Array.isArray(result.detections)) return `${result.detections.length} object(s)`;
  if (result.mask) return "segmentation mask";
  return "done";
}

function start(form) {
  const maxBytes = Number(form.dataset.maxBytes);
  const limits = { maxBytes, maxFileBytes: maxBytes - MULTIPART_ALLOWANCE, maxFiles: Number(form.dataset.maxFiles),
    maxPixels: Number(form.dataset.maxPixels) };
  const apiUrl = form.dataset.api;
  const input = byId("file");
  const dropzone = byId("dropzone");
  const modelSelect = byId("model");
  const results = byId("results");
  const runButton = byId("run");
  const progress = byId("progress");
  const progressBar = byId("progress-bar");
  const progressText = byId("progress-text");
  const optionFields = Array.from(form.querySelectorAll(".option"));
  const backgroundMode = byId("background_mode");
  const background = byId("background");
  const models = new Map(Array.from(modelSelect.options, (o) => [o.value, { name: o.value, task: o.dataset.task }]));
  let busy = false;
  let runs = 0;
  const control = new RunControl({ runButton, progress });

  byId("file-hint").textContent = `Each image up to ${formatBytes(limits.maxBytes)} and ${limits.maxPixels.toLocaleString("en")} pixels; `
    + `any number of images (sent ${limits.maxFiles} per request).`;
  if (/Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent)) {
    const key = dropzone.querySelector("kbd");
    if (key) key.textContent = "⌘";
  }
  form.noValidate = true;  // the script validates with clearer messages and sends files held outside the input
  input.removeAttribute("required");
  // Crop / rotate on each file card: the edited image takes the original's place, so it is what Run sends.
  const editor = new Editor({ onApply: async (item, file) => {
    const fresh = await selection.replace(item.id, file);
    const button = fresh && byId("file-list").querySelector(`.file-card[data-id="${fresh.id}"] .edit-file`);
    (button || input).focus();
  } });
  const selection = new Selection({ input, list: byId("file-list"), messages: byId("file-messages"), limits,
    cardActions: (item) => editor.buttonFor(item),
    onChange: (current) => { runButton.textContent = current.valid().length > 1 ? `Run on ${current.valid().length} images` : "Run";
      form.dispatchEvent(new Event("selection-change")); } });
  const panel = byId("history-panel");
  const serverHistory = panel.dataset.history === "on";  // the server records predictions: show its entries
  const history = new (serverHistory ? ServerHistory : History)({ panel, list: byId("history"), clearButton: byId("clear-history"),
    onShow: (run) => { results.replaceChildren(renderRun(run)); results.focus(); },
    apiUrl: panel.dataset.historyApi, pageUrl: panel.dataset.historyPage });
  results.tabIndex = -1;

  // Model picker and the options that apply to the chosen model.
  const currentModel = () => models.get(modelSelect.value);
  function applyModel() {
    const model = currentModel();
    if (model && model.description !== undefined) byId("model-info").replaceChildren(...modelFacts(model));
    optionFields.forEach((field) => { field.hidden = !usesOption(model, field); });
    selection.setModel(modelSelect.value, model && model.max_input_pixels);
    byId("quality").closest(".option").hidden ||= byId("output_format").value === "png";
    form.querySelector(".options").hidden = optionFields.every((field) => field.hidden);
    byId("draw-panel").hidden = !drawable(model);
    examples.show(model);
    apiPanel.refresh();
    background.disabled = backgroundMode.value !== "color";
    const url = new URL(window.location.href);
    url.searchParams.set("model", modelSelect.value);
    window.history.replaceState(null, "", url);
  }
  // Example inputs to click, and the request Run sends as curl / Python / fetch ("Use via API").
  const examples = new Examples({ container: byId("examples"),
    onPick: async (file, problem) => {
      if (!file) return selection.showMessages([problem]);
      selection.clear();  // an example is a fresh start: it replaces the images chosen before
      return selection.add([file], "example");
    } });
  const apiPanel = new ApiPanel({ panel: byId("api-panel"), current: () => requestFrom(apiUrl,
    [["model", modelSelect.value], ...Object.entries(optionsFor(currentModel()))], selection.valid().map((item) => item.name)) });
  ["input", "change", "selection-change"].forEach((type) => form.addEventListener(type, () => apiPanel.refresh()));
  modelSelect.addEventListener("change", applyModel);
  backgroundMode.addEventListener("change", applyModel);
  byId("output_format").addEventListener("change", applyModel);
  const wanted = new URL(window.location.href).searchParams.get("model");
  if (wanted && models.has(wanted)) modelSelect.value = wanted;
  applyModel();
  fetchModels(form.dataset.models).then((list) => {
    if (!list.length) return;
    const chosen = modelSelect.value;
    models.clear();
    list.forEach((model) => models.set(refOf(model), model));
    modelSelect.replaceChildren(...list.map((model) => el("option", { value: refOf(model), selected: refOf(model) === chosen,
      disabled: model.state === "failed" }, `${refOf(model)}${model.task ? ` — ${model.task}` : ""}${model.state === "failed" ? " (failed to load)" : ""}`)));
    applyModel();
  }).catch(() => { /* the server-rendered list stays usable */ });

  // Files: picker, drag and drop anywhere on the page, paste, the camera.
  setupCamera({ anchor: dropzone, onCapture: (file) => selection.add([file], "camera"),
    onProblem: (text) => selection.showMessages([text]) });
  input.addEventListener("change", () => selection.add(Array.from(input.files), "picker"));
  byId("clear-files").addEventListener("click", () => { selection.clear(); input.focus(); });
  let dragDepth = 0;
  const hasFiles = (event) => Array.from(event.dataTransfer ? event.dataTransfer.types : []).includes("Files");
  window.addEventListener("dragenter", (event) => {
    if (!hasFiles(event)) return;
    dragDepth += 1;
    dropzone.classList.add("dragging");
  });
  window.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (!dragDepth) dropzone.classList.remove("dragging");
  });
  window.addEventListener("dragover", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  window.addEventListener("drop", (event) => {
    if (!hasFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    dropzone.classList.remove("dragging");
    selection.add(Array.from(event.dataTransfer.files), "drop");
  });
  document.addEventListener("paste", (event) => {
    const data = event.clipboardData;
    if (!data) return;
    const files = data.files && data.files.length ? Array.from(data.files)
      : Array.from(data.items || []).filter((item) => item.kind === "file").map((item) => item.getAsFile()).filter(Boolean);
    if (!files.length) return;
    event.preventDefault();
    selection.add(files, "paste");
  });

  /** Draw a finished run and bring it to the visitor: scrolled into view, focus on its first result. */
  function showRun(run) {
    const refused = run.batches.find((batch) => batch.optionError);
    results.replaceChildren(refused ? el("div", { class: "alert", role: "alert" }, `Not run: ${refused.optionError}`) : renderRun(run));
    results.dataset.run = String(run.id);
    const target = results.querySelector(".result-item") || results;
    target.tabIndex = -1;
    target.focus({ preventScroll: true });  // keyboard and screen-reader users land on the result, not on <body>
    const box = target.getBoundingClientRect();
    if (box.top < 0 || box.top > window.innerHeight - 80) {
      target.scrollIntoView({ behavior: reducedMotion.matches ? "auto" : "smooth", block: "start" });
    }
  }

  // Options: checked here, next to each field and by its label, so an invalid value is never sent.
  const labelOf = (control) => {
    const label = control.id && form.querySelector(`label[for="${control.id}"]`);
    return label ? label.textContent.trim() : control.getAttribute("aria-label") || control.name;
  };
  function fieldMessage(control) {
    const { validity } = control;
    const range = control.min !== "" && control.max !== "" ? ` between ${control.min} and ${control.max}` : "";
    if (validity.valueMissing) return `${labelOf(control)} needs a value${range}.`;
    if (validity.badInput || validity.stepMismatch) return `${labelOf(control)} must be a whole number${range}.`;
    if (validity.rangeUnderflow || validity.rangeOverflow) return `${labelOf(control)} must be${range || ` at least ${control.min}`}.`;
    return sentence(`${labelOf(control)}: ${control.validationMessage}`);
  }
  function markField(control, message) {
    const option = control.closest(".option");
    let note = option.querySelector(".field-error");
    if (!message) {
      control.removeAttribute("aria-invalid");
      control.removeAttribute("aria-errormessage");
      if (note) note.remove();
      return;
    }
    if (!note) {
      note = el("p", { class: "field-error", id: `${control.id}-error` });
      option.append(note);
    }
    note.textContent = message;
    control.setAttribute("aria-invalid", "true");
    control.setAttribute("aria-errormessage", note.id);
  }
  const optionControls = () => optionFields.filter((field) => !field.hidden).flatMap((field) => Array.from(field.querySelectorAll("input[name]")));
  optionFields.forEach((field) => field.querySelectorAll("[name]").forEach((control) => {
    control.addEventListener("input", () => { if (control.hasAttribute("aria-invalid") && control.checkValidity()) markField(control, null); });
  }));
  /** True when every visible option is valid; otherwise each bad field says why and the first one gets focus. */
  function checkOptions() {
    const invalid = optionControls().filter((control) => !control.checkValidity());
    optionControls().forEach((control) => markField(control, invalid.includes(control) ? fieldMessage(control) : null));
    if (!invalid.length) return true;
    setProgress(`Not sent: ${fieldMessage(invalid[0])}`, null);
    invalid[0].focus();
    return false;
  }
  /** A 422 about options, worded with the form's labels and shown at the fields; null when it is about something else. */
  function optionError(body) {
    const details = body && body.error && Array.isArray(body.error.details) ? body.error.details : [];
    const named = details.map((detail) => ({ detail, control: form.querySelector(`.option [name="${Array.isArray(detail.loc) ? detail.loc[0] : ""}"]`) }));
    if (!named.length || named.some(({ control }) => !control)) return null;
    const messages = named.map(({ detail, control }) => {
      const message = sentence(`${labelOf(control)} ${String(detail.msg || "is not valid").replace(/^Input /, "")}`);
      markField(control, message);
      return message;
    });
    return messages.join(" ");
  }

  // Progress.
  function setProgress(text, fraction) {
    progress.hidden = false;
    progressBar.hidden = fraction === null;
    if (fraction === undefined) progressBar.removeAttribute("value");
    else if (fraction !== null) progressBar.value = Math.round(fraction * 100);
    progressText.textContent = text;
  }

  function optionsFor(model) {
    const values = {};
    optionFields.filter((field) => !field.hidden).forEach((field) => {
      const name = field.dataset.option;
      if (name === "background") {
        if (backgroundMode.value === "color") values.background = background.value;
      } else if (field.querySelector("[name]").value !== "") {
        values[name] = field.querySelector("[name]").value;
      }
    });
    return values;
  }

  async function sendBatch(items, model, options, label, signal) {
    const data = new FormData();
    data.append("model", modelSelect.value);
    Object.entries({ ...options, ...layerChoice() }).forEach(([key, value]) => data.append(key, value));
    items.forEach((item) => data.append("file", item.file, item.name));
    apiPanel.sent(requestFromForm(apiUrl, data), label);
    const batch = { model: model.name, count: items.length, items: [] };
    setProgress(`${label}Sending ${items.length === 1 ? items[0].name : `${items.length} images`}…`, 0);
    try {
      const response = await postForm(apiUrl, data, (state) => {
        if (state.phase === "upload") setProgress(`${label}Uploading… ${Math.round(state.fraction * 100)}%`, state.fraction);
        else setProgress(`${label}Running ${model.name}…`, undefined);
      }, signal);
      Object.assign(batch, { status: response.status, requestId: response.requestId, roundTripMs: response.roundTripMs });
      if (response.ok) {
        const outcome = normalize(response.body);
        Object.assign(batch, { model: outcome.model || model.name, version: outcome.version, timing: outcome.timing });
        batch.items = items.map((input, index) => ({ input, result: outcome.results[index] || { error: "No result for this image." } }));
      } else if (response.status === 422 && optionError(response.body)) {
        batch.optionError = optionError(response.body);  // the options were refused, not the images
        batch.items = items.map((input) => ({ input, result: { error: batch.optionError } }));
      } else {
        let message = errorMessage(response.body, response.status);
        // 503 (queue full) and 429 carry the server's own estimate of when to try again.
        if (response.retryAfter) message = `${message.replace(/\.+$/, "")}. The server suggests trying again in ${response.retryAfter} s.`;
        batch.items = items.map((input) => ({ input, result: { error: message } }));
      }
    } catch (error) {
      if (error.name === "AbortError") throw error;  // cancelled: the run stops, the files stay as they were
      batch.items = items.map((input) => ({ input, result: { error: error.message } }));
    }
    batch.items.filter(({ result }) => result.error && !batch.optionError)
      .forEach(({ input, result }) => selection.reject(input.id, typeof result.error === "string" ? result.error : result.error.message));
    return batch;
  }

  async function remember(run) {
    for (const batch of run.batches) {
      for (const { input, result } of batch.items) {
        const output = imageUrl(result.image || result.output_image || result.image_url);
        const entry = { runId: run.id, time: Date.now(), model: batch.model, filename: input.name, summary: summarise(result),
          requestId: batch.requestId || null, thumb: await thumbnail(output || input.url) };
        history.add(serverHistory ? { id: result.history_id || null, ...entry } : entry, run);
      }
    }
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (busy) return;
    if (!checkOptions()) return;
    const items = selection.valid().map(keepable);
    if (!items.length) {
      progress.hidden = true;  // a blocked attempt must not leave the last run's "Done in …" standing
      selection.showMessages([selection.items.length ? "None of the chosen files can be sent; each card below says why."
        : "Choose at least one image first: drop it here, paste it, or browse your files."]);
      input.focus();
      return;
    }
    const model = currentModel();
    const options = optionsFor(model);
    const groups = batches(items, limits);
    selection.clearServerErrors();
    busy = true;
    form.classList.add("busy");
    runButton.disabled = true;
    form.setAttribute("aria-busy", "true");
    results.setAttribute("aria-busy", "true");
    runs += 1;
    const run = { id: runs, model: model.name, batches: [],
      release: () => items.forEach((item) => item.url && URL.revokeObjectURL(item.url)) };
    const started = performance.now();
    const signal = control.begin();
    let cancelled = false;
    try {
      try {
        for (const [index, group] of groups.entries()) {
          const label = groups.length > 1 ? `Request ${index + 1} of ${groups.length}: ` : "";
          run.batches.push(await sendBatch(group, model, options, label, signal));
        }
      } catch (error) {
        if (error.name !== "AbortError") throw error;
        cancelled = true;  // Cancel or Escape: the request was aborted; requests already answered keep their results
      }
      if (cancelled) {
        const finished = run.batches.length;
        setProgress(`Cancelled after ${control.elapsed}.${finished ? ` ${finished} of ${groups.length} requests had finished; their results are shown.` : ""}`, null);
        if (finished) showRun(run);
      } else {
        showRun(run);
        const seconds = ((performance.now() - started) / 1000).toFixed(2);
        const outcomes = run.batches.flatMap((b) => b.items);
        const failed = outcomes.filter(({ result }) => result.error).length;
        const single = outcomes.length === 1 ? ` ${sentence(`${outcomes[0].input.name}: ${summarise(outcomes[0].result)}`)}` : "";
        setProgress(failed ? `Finished with ${failed} error(s) in ${seconds} s.${single}` : `Done in ${seconds} s.${single}`, null);
      }
    } finally {
      busy = false;
      form.classList.remove("busy");
      form.removeAttribute("aria-busy");
      results.removeAttribute("aria-busy");
      runButton.disabled = false;
      control.end();
    }
    await remember(run);  // thumbnails for the history panel: the form is usable again meanwhile
    if (!run.batches.length) run.release();  // nothing entered the history (cancelled before any answer): free now
  });

  // Drawing: the selected drawable model predicts from the canvas as the user draws.
  setupDrawing({
    canvas: byId("digit-canvas"),
    clearButton: byId("clear-canvas"),
    output: byId("draw-result"),
    predict: async (blob) => {
      const data = new FormData();
      data.append("model", modelSelect.value);
      data.append("top_k", byId("top_k").value && byId("top_k").checkValidity() ? byId("top_k").value : "3");
      data.append("file", blob, "drawing.png");
      const response = await postForm(apiUrl, data);
      if (!response.ok) throw new Error(errorMessage(response.body, response.status));
      const outcome = normalize(response.body);
      const result = outcome.results[0] || {};
      if (result.error) throw new Error(result.error.message || String(result.error));
      return { predictions: result.predictions || [], totalMs: outcome.timing.total, requestId: response.requestId };
    },
  });
  document.documentElement.dataset.ready = "true";  // lets tests (and curious users) know the page is wired
}

const form = byId("predict-form");
if (form) start(form);
