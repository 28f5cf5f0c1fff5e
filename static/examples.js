// Example inputs of the chosen model: thumbnails that put the example file into the selection like a picked
// file (then Run works as usual). The server renders them as plain links for pages without JavaScript.
import { el } from "./dom.js";

/** "handwritten-7.png" → "handwritten 7": the file name read as words, for the button's label. */
const spoken = (name) => name.replace(/\.[^.]+$/, "").replace(/[-_]+/g, " ");

export class Examples {
  /** `container` is #examples; `onPick(file)` receives the example as a File named after it. */
  constructor({ container, onPick }) {
    Object.assign(this, { container, onPick });
    this.list = container.querySelector(".example-list");
    this.model = null;
    // Until the model list arrives from the API, the server-rendered links are the examples of the chosen model.
    this.initial = Array.from(this.list.querySelectorAll("a.example"), (link) => ({ name: link.dataset.name, url: link.dataset.url }));
    this.render(this.initial);
  }

  /** Follow the model picker: `model.examples` is [{name, url}] as GET /api/v1/models lists it. */
  show(model) {
    const examples = model && Array.isArray(model.examples) ? model.examples : null;
    if (examples === null) return;  // the picker's placeholder entry before the API answered: keep what is shown
    this.render(examples);
  }

  render(examples) {
    this.container.hidden = !examples.length;
    this.list.replaceChildren(...examples.map((example) => el("li", {},
      this.button(example))));
  }

  button(example) {
    const button = el("button", { type: "button", class: "example", "data-name": example.name, "data-url": example.url,
      "aria-label": `Use the example ${spoken(example.name)} (${example.name})`, title: `Use ${example.name}` },
    el("img", { src: example.url, alt: "", loading: "lazy" }),
    el("span", { class: "example-name", "aria-hidden": "true" }, example.name));
    button.addEventListener("click", () => this.pick(example, button));
    return button;
  }

  /** Fetch the example and hand it on as a File; its type comes from the server (which reads the bytes). */
  async pick(example, button) {
    button.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(example.url);
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const blob = await response.blob();
      await this.onPick(new File([blob], example.name, { type: blob.type, lastModified: Date.now() }));
    } catch (error) {
      this.onPick(null, `Could not load the example ${example.name} (${error.message}).`);
    } finally {
      button.removeAttribute("aria-busy");
    }
  }
}
