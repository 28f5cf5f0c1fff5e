// The PSD layer picker of the upload page: when a Photoshop file is chosen, its layers are read by
// POST /api/v1/psd/layers and offered in a list; the choice travels with each predict request as `layer` (one layer,
// by its index path) or `layers=visible` (the visible layers, composited now), see layerChoice().
import { errorMessage, postForm } from "./api.js";

const PSD_NAME = /\.ps[db]$/i;
const panel = document.getElementById("psd-layers");
const select = document.getElementById("psd-layer");
const hint = document.getElementById("psd-layer-hint");
let reading = 0;  // only the newest file's answer fills the list

/** The fields a predict request adds for the picked layer: {}, {layer: "2/0"} or {layers: "visible"}. */
export function layerChoice() {
  if (!panel || panel.hidden || !select.value) return {};
  return select.value === "visible" ? { layers: "visible" } : { layer: select.value };
}

/** True for a Photoshop document, by its first bytes (8BPS) or, failing that, its name. */
async function isPsd(file) {
  const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
  return String.fromCharCode(...head) === "8BPS" || PSD_NAME.test(file.name);
}

function reset() {
  select.replaceChildren(new Option("Flattened image (as saved)", ""), new Option("Visible layers", "visible"));
}

/** One option per layer: indented by its groups, hidden ones marked, its index path as the value. */
function fill(layers) {
  reset();
  for (const layer of layers) {
    const indent = "\u2003".repeat(layer.group.length);
    const kind = layer.kind === "group" ? " (group)" : "";
    const hidden = layer.shown ? "" : " — hidden";
    select.add(new Option(`${indent}${layer.name}${kind}${hidden}`, layer.index));
  }
}

async function choose(files) {
  const file = await firstPsd(files);
  if (!file) return;  // images added beside a PSD keep its picker
  const ticket = ++reading;
  panel.hidden = false;
  hint.textContent = `Reading the layers of ${file.name}…`;
  const data = new FormData();
  data.append("file", file, file.name);
  const response = await postForm(panel.dataset.url, data);
  if (ticket !== reading) return;
  if (!response.ok) {
    reset();
    hint.textContent = `The layers could not be read: ${errorMessage(response.body, response.status)}`;
    return;
  }
  fill(response.body.layers);
  const count = response.body.layers.length;
  hint.textContent = `${file.name}: ${count} layer${count === 1 ? "" : "s"}, ${response.body.width}×${response.body.height}. `
    + "The choice applies to every PSD you send.";
}

async function firstPsd(files) {
  for (const file of files || []) if (await isPsd(file)) return file;
  return null;
}

if (panel && select) {
  reset();
  const input = document.getElementById("file");
  input?.addEventListener("change", () => choose(Array.from(input.files)));
  document.getElementById("dropzone")?.addEventListener("drop", (event) => {
    const files = Array.from(event.dataTransfer?.files || []);
    if (files.length) choose(files);
  });
}
