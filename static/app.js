// Progressive enhancement: submit the upload form with fetch and show the JSON result in place.
"use strict";

(function () {
  const form = document.getElementById("predict-form");
  const output = document.getElementById("js-result");
  if (!form || !output || !window.fetch) return;

  function element(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => node.setAttribute(key, value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function showError(message) {
    output.replaceChildren(element("div", { class: "alert", role: "alert" }, message));
  }

  function showResult(body, file) {
    const figure = element("figure", { class: "result" });
    const img = element("img", { class: "preview checker", alt: "Uploaded image " + file.name });
    img.src = URL.createObjectURL(file);
    const caption = element("figcaption");
    caption.append(element("p", { class: "muted" }, `${file.name} · ${body.width}×${body.height} ${body.mode} · ${body.model} v${body.version}`));
    const list = element("ol", { class: "bars" });
    body.predictions.forEach((p) => {
      const item = element("li");
      item.append(element("span", { class: "label" }, p.label));
      const meter = element("meter", { class: "bar", min: "0", max: "1", value: String(p.score) }, (p.score * 100).toFixed(1) + "%");
      item.append(meter, element("span", { class: "score" }, (p.score * 100).toFixed(1) + "%"));
      list.append(item);
    });
    caption.append(list);
    const timings = Object.entries(body.timing_ms).map(([k, v]) => `${k} ${v.toFixed(1)} ms`).join(" · ");
    caption.append(element("p", { class: "muted" }, timings));
    figure.append(img, caption);
    output.replaceChildren(figure);
  }

  form.addEventListener("submit", async (event) => {
    const file = form.file.files[0];
    if (!file) return;
    event.preventDefault();
    form.classList.add("busy");
    output.replaceChildren(element("p", { class: "muted" }, "Running…"));
    try {
      const response = await fetch("/api/v1/predict", { method: "POST", body: new FormData(form) });
      const body = await response.json();
      if (!response.ok) showError(body.error ? body.error.message : "Request failed (" + response.status + ")");
      else showResult(body, file);
    } catch (err) {
      showError("Could not reach the server: " + err);
    } finally {
      form.classList.remove("busy");
    }
  });
})();
