// API reference page: copy buttons for the curl lines and an in-page "try it" console (no inline scripts, no CDN).
"use strict";

(function () {
  const LONG_STRING = 160;

  function element(tag, attrs, text) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([key, value]) => node.setAttribute(key, value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  // Copy buttons: the clipboard API where allowed, otherwise select the text so Ctrl+C works.
  document.querySelectorAll("button.copy").forEach((button) => {
    button.addEventListener("click", async () => {
      const code = document.getElementById(button.dataset.copy);
      try {
        await navigator.clipboard.writeText(code.textContent);
        button.textContent = "Copied";
      } catch (err) {
        const range = document.createRange();
        range.selectNodeContents(code);
        window.getSelection().removeAllRanges();
        window.getSelection().addRange(range);
        button.textContent = "Press Ctrl+C";
      }
      setTimeout(() => { button.textContent = "Copy"; }, 1600);
    });
  });

  // Long strings (base64 images) are shortened in the JSON view; the images themselves are shown below it.
  function shorten(value, images) {
    if (typeof value === "string") {
      if (value.startsWith("data:image/")) images.push(value);
      return value.length > LONG_STRING ? `${value.slice(0, 60)}… (${value.length} characters)` : value;
    }
    if (Array.isArray(value)) return value.map((item) => shorten(item, images));
    if (value && typeof value === "object") {
      return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, shorten(item, images)]));
    }
    return value;
  }

  function requestFor(form) {
    let path = form.dataset.path;
    const body = new FormData();
    let hasBody = false;
    Array.from(form.elements).forEach((field) => {
      if (!field.name || field.disabled) return;
      if (field.name.startsWith("path:")) {
        path = path.replace(`{${field.name.slice(5)}}`, encodeURIComponent(field.value.trim()));
      } else if (field.type === "file") {
        Array.from(field.files).forEach((file) => { body.append(field.name, file, file.name); hasBody = true; });
      } else if (field.value !== "") {
        body.append(field.name, field.value);
        hasBody = true;
      }
    });
    const headers = { Accept: "application/json, image/*" };
    const key = document.getElementById("api-key");
    if (key && key.value.trim()) headers.Authorization = `Bearer ${key.value.trim()}`;
    const init = { method: form.dataset.method, headers };
    if (form.dataset.method === "GET") {
      const query = new URLSearchParams(Array.from(body.entries()).filter(([, v]) => typeof v === "string"));
      if (query.toString()) path += `?${query}`;
    } else if (hasBody) {
      init.body = body;
    }
    return { path, init };
  }

  async function show(output, response, started) {
    const elapsed = (performance.now() - started).toFixed(0);
    const id = response.headers.get("X-Request-ID") || "–";
    const type = response.headers.get("Content-Type") || "";
    const status = element("p", { class: response.ok ? "try-status ok" : "try-status failed" },
      `HTTP ${response.status} ${response.statusText} · ${elapsed} ms · X-Request-ID ${id}`);
    const parts = [status];
    if (type.startsWith("image/")) {
      const blob = await response.blob();
      const img = element("img", { class: "try-image", alt: "Image returned by the server" });
      img.src = URL.createObjectURL(blob);
      parts.push(element("p", { class: "muted" }, `${type}, ${blob.size} bytes`), img);
    } else {
      const text = await response.text();
      const images = [];
      let shown = text;
      try {
        shown = JSON.stringify(shorten(JSON.parse(text), images), null, 2);
      } catch (err) {
        // Not JSON: show it as it came.
      }
      parts.push(element("pre", { class: "try-body" }, shown));
      images.slice(0, 8).forEach((url) => {
        const img = element("img", { class: "try-image", alt: "Image inside the JSON response" });
        img.src = url;
        parts.push(img);
      });
    }
    output.replaceChildren(...parts);
  }

  document.querySelectorAll("form.try").forEach((form) => {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const output = form.querySelector(".try-output");
      const { path, init } = requestFor(form);
      output.replaceChildren(element("p", { class: "muted" }, `${init.method} ${path} …`));
      const started = performance.now();
      try {
        await show(output, await fetch(path, init), started);
      } catch (err) {
        output.replaceChildren(element("p", { class: "alert", role: "alert" }, `Could not reach the server: ${err}`));
      }
    });
  });
})();
