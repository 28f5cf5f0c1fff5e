// The 3D model panel of the upload page: one model sent to /api/v1/meshes/render, its turntable shown with a slider
// and thumbnails, its facts listed, downloads converted by /api/v1/meshes/convert, and the page's chosen model run
// on its views through /api/v1/predict (which renders them on the server).
import { errorMessage, postForm } from "./api.js";
import { el, formatBytes, percent } from "./dom.js";

const number = (value, digits = 4) => Number(value).toLocaleString(undefined, { maximumFractionDigits: digits });
const triple = (values) => values.map((value) => number(value)).join(" × ");

/** The facts a designer checks first, as [term, description] pairs. */
export function factRows(mesh) {
  const units = mesh.units ? ` ${mesh.units}` : "";
  const rows = [
    ["File", `${mesh.name} (${mesh.format.toUpperCase()}${mesh.zipped ? ", zipped" : ""})`],
    ["Vertices", number(mesh.vertices, 0)],
    ["Triangles", number(mesh.faces, 0)],
    ["Size", `${triple(mesh.extents)}${units}`],
    ["Surface area", `${number(mesh.surface_area)}${units ? `${units}²` : ""}`],
    ["Volume", mesh.watertight ? `${number(mesh.volume)}${units ? `${units}³` : ""}` : "— (not watertight)"],
    ["Watertight", mesh.watertight ? "yes" : "no"],
  ];
  if (mesh.materials.length) rows.push(["Materials", mesh.materials.map((m) => m.name).join(", ")]);
  if (mesh.textures.length) {
    rows.push(["Textures", mesh.textures.map((t) => `${t.file || t.material} (${t.width}×${t.height})`).join(", ")]);
  }
  if (mesh.ignored_references.length) {
    rows.push(["Not read", mesh.ignored_references.map((ref) => ref.name).join(", ")]);
  }
  return rows;
}

class MeshPanel {
  constructor(panel) {
    this.panel = panel;
    this.urls = panel.dataset;
    this.maxBytes = Number(panel.dataset.maxBytes) || Infinity;
    const find = (id) => panel.querySelector(`#${id}`);
    Object.assign(this, {
      input: find("mesh-file"), views: find("mesh-views"), up: find("mesh-up"), status: find("mesh-status"),
      result: find("mesh-result"), image: find("mesh-view"), angle: find("mesh-angle"), angleName: find("mesh-angle-name"),
      strip: find("mesh-strip"), facts: find("mesh-facts"), downloads: find("mesh-downloads"),
      predictButton: find("mesh-predict"), predictions: find("mesh-predictions"),
    });
    this.file = null;
    this.rendered = [];
    this.input.addEventListener("change", () => this.choose(this.input.files[0]));
    this.views.addEventListener("change", () => this.file && this.render());
    this.up.addEventListener("change", () => this.file && this.render());
    this.angle.addEventListener("input", () => this.show(Number(this.angle.value)));
    this.downloads.addEventListener("click", (event) => {
      const format = event.target.closest("button[data-format]")?.dataset.format;
      if (format) this.download(format, event.target);
    });
    this.predictButton.addEventListener("click", () => this.predict());
  }

  say(text, error = false) {
    this.status.textContent = text;
    this.status.classList.toggle("error", error);
  }

  form(fields = {}) {
    const form = new FormData();
    for (const [key, value] of Object.entries(fields)) form.append(key, value);
    form.append("file", this.file, this.file.name);
    return form;
  }

  choose(file) {
    if (!file) return;
    if (file.size > this.maxBytes) {
      this.say(`${file.name} is ${formatBytes(file.size)}; the limit is ${formatBytes(this.maxBytes)}.`, true);
      return;
    }
    this.file = file;
    this.render();
  }

  async render() {
    this.say(`Rendering ${this.file.name}…`);
    this.predictions.replaceChildren();
    const fields = { views: this.views.value, size: 320, up: this.up.value };
    let answer;
    try {
      answer = await postForm(this.urls.render, this.form(fields));
    } catch (error) {
      this.say(error.message, true);
      return;
    }
    if (!answer.ok) {
      this.result.hidden = true;
      this.say(errorMessage(answer.body, answer.status), true);
      return;
    }
    const { views, mesh, timing_ms: timing } = answer.body;
    this.rendered = views;
    this.say(`${views.length} views in ${Math.round(timing.render)} ms.`);
    this.strip.replaceChildren(...views.map((view, index) => el("li", {},
      el("button", { type: "button", "aria-label": `Show ${view.name}`, "aria-pressed": "false", "data-index": index },
        el("img", { src: view.image, alt: "", width: 56, height: 56, class: "checker" })))));
    this.strip.querySelectorAll("button").forEach((button) => {
      button.addEventListener("click", () => this.show(Number(button.dataset.index)));
    });
    this.angle.max = String(views.length - 1);
    this.facts.replaceChildren(...factRows(mesh).flatMap(([term, value]) => [el("dt", { text: term }), el("dd", { text: value })]));
    this.result.hidden = false;
    this.show(0);
  }

  show(index) {
    const view = this.rendered[index];
    if (!view) return;
    this.image.src = view.image;
    this.image.alt = `${this.file.name}, ${view.name} (azimuth ${view.azimuth}°, elevation ${view.elevation}°)`;
    this.angle.value = String(index);
    this.angleName.textContent = view.name;
    this.strip.querySelectorAll("button").forEach((button) => {
      button.setAttribute("aria-pressed", String(Number(button.dataset.index) === index));
    });
  }

  async download(format, button) {
    button.disabled = true;
    try {
      const response = await fetch(`${this.urls.convert}?format=${format}`, { method: "POST", body: this.form() });
      if (!response.ok) {
        this.say(errorMessage(await response.json().catch(() => null), response.status), true);
        return;
      }
      const name = /filename="([^"]+)"/.exec(response.headers.get("Content-Disposition") || "")?.[1] || `model.${format}`;
      const link = el("a", { href: URL.createObjectURL(await response.blob()), download: name, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 60_000);
      this.say(`Saved ${name}.`);
    } finally {
      button.disabled = false;
    }
  }

  async predict() {
    const model = document.getElementById("model")?.value || "";
    this.predictions.replaceChildren(el("p", { class: "muted", text: "Running…" }));
    const fields = { views: this.views.value, size: 256, ...(model ? { model } : {}) };
    let answer;
    try {
      answer = await postForm(this.urls.predict, this.form(fields));
    } catch (error) {
      this.predictions.replaceChildren(el("p", { class: "mesh-status error", text: error.message }));
      return;
    }
    if (!answer.ok) {
      this.predictions.replaceChildren(el("p", { class: "mesh-status error", text: errorMessage(answer.body, answer.status) }));
      return;
    }
    const result = answer.body.results[0];
    const parts = [el("h3", { text: `${answer.body.model} on ${result.views.length} views` })];
    if (result.predictions) {
      parts.push(el("p", { class: "muted", text: "Mean score over the views:" }),
        el("ol", {}, result.predictions.map((p) => el("li", {}, el("strong", { text: p.label }), ` ${percent(p.score)}`))));
    }
    parts.push(el("ul", { class: "mesh-per-view" }, result.views.map((view) => el("li", {},
      `${view.view}: `, view.error ? view.error.message
        : view.predictions ? `${view.predictions[0].label} (${percent(view.predictions[0].score)})` : "done"))));
    this.predictions.replaceChildren(...parts);
  }
}

const panel = document.getElementById("mesh-panel");
if (panel) new MeshPanel(panel);
