// "Use via API": the request the upload page sends, written out as curl, Python (ai_service.client and requests)
// and JavaScript fetch, ready to paste. Before a run it shows what Run would send with the current choices; after
// one, exactly what the page sent (model, every option, file names) until a choice changes.

/** A request as the snippets need it: the absolute endpoint, the text fields in order, the file names. */
export function requestFrom(url, fields, files) {
  return { url: new URL(url, window.location.href).href, fields: fields.map(([key, value]) => [key, String(value)]), files: [...files] };
}

/** The request a FormData makes (what the page is about to POST). */
export function requestFromForm(url, data) {
  const fields = [];
  const files = [];
  for (const [key, value] of data.entries()) {
    if (typeof value === "string") fields.push([key, value]);
    else files.push(value.name || "image");
  }
  return requestFrom(url, fields, files);
}

const SHELL_SAFE = /^[A-Za-z0-9_@%+=:,./-]+$/;

/** One shell word, quoted only when it must be. */
export function shellQuote(text) {
  return SHELL_SAFE.test(text) ? text : `'${text.replace(/'/g, "'\\''")}'`;
}

/** curl's -F file=@name: a name with ; , " or \ is double-quoted for curl itself (else it reads ;type=…). */
function curlFile(name) {
  return /[;,"\\]/.test(name) ? `file=@"${name.replace(/[\\"]/g, "\\$&")}"` : `file=@${name}`;
}

/** A Python or JavaScript string literal (JSON's escapes are valid in both). */
const literal = (text) => JSON.stringify(text);

/** An identifier-safe Python keyword argument, or null when the name cannot be one. */
const keyword = (name) => (/^[A-Za-z_][A-Za-z0-9_]*$/.test(name) && name !== "return" ? name : null);

export function curlSnippet({ url, fields, files }) {
  // --form-string for a value curl would read as a file (@…) or a file's contents (<…); -F for the rest.
  const parts = fields.map(([key, value]) => (/^[@<]/.test(value) ? `--form-string ${shellQuote(`${key}=${value}`)}`
    : `-F ${shellQuote(`${key}=${value}`)}`));
  parts.push(...files.map((name) => `-F ${shellQuote(curlFile(name))}`));
  return [`curl -s -H 'Accept: application/json'`, ...parts, shellQuote(url)].join(" \\\n  ");
}

export function requestsSnippet({ url, fields, files }) {
  const data = fields.map(([key, value]) => `${literal(key)}: ${literal(value)}`).join(", ");
  return [
    "import requests",
    "",
    `names = [${files.map(literal).join(", ")}]`,
    "response = requests.post(",
    `    ${literal(url)},`,
    `    data={${data}},`,
    '    files=[("file", (name, open(name, "rb"))) for name in names],',
    '    headers={"Accept": "application/json"},',
    "    timeout=120,",
    ")",
    "print(response.text)",
  ].join("\n");
}

export function clientSnippet({ url, fields, files }) {
  const base = url.replace(/\/api\/v1\/predict$/, "");
  const args = [];
  let model = null;
  const extra = [];
  for (const [key, value] of fields) {
    if (key === "model") model = value;
    else if (keyword(key)) args.push(`${key}=${/^\d+$/.test(value) ? value : literal(value)}`);
    else extra.push(`${literal(key)}: ${literal(value)}`);
  }
  const options = [model === null ? null : `model=${literal(model)}`, ...args, extra.length ? `**{${extra.join(", ")}}` : null]
    .filter(Boolean).join(", ");
  const call = files.length === 1
    ? `client.predict(${[literal(files[0]), options].filter(Boolean).join(", ")})`
    : `client.predict_many([${files.map(literal).join(", ")}]${options ? `, ${options}` : ""})`;
  return [
    "from ai_service.client import Client",
    "",
    `client = Client(${literal(base)})`,
    `result = ${call}`,
    "print(result.model_dump_json(indent=2, exclude_none=True))",
  ].join("\n");
}

export function fetchSnippet({ url, fields, files }) {
  const lines = [
    files.length === 1 ? "// `file`: a File or Blob, e.g. document.querySelector(\"input[type=file]\").files[0]"
      : "// `files`: File or Blob objects, e.g. document.querySelector(\"input[type=file]\").files",
    "const form = new FormData();",
    ...fields.map(([key, value]) => `form.append(${literal(key)}, ${literal(value)});`),
    ...files.map((name, index) => `form.append("file", ${files.length === 1 ? "file" : `files[${index}]`}, ${literal(name)});`),
    `const response = await fetch(${literal(url)}, {`,
    '  method: "POST",',
    "  body: form,",
    '  headers: { Accept: "application/json" },',
    "});",
    "console.log(await response.json());",
  ];
  return lines.join("\n");
}

const SNIPPETS = { curl: curlSnippet, client: clientSnippet, requests: requestsSnippet, fetch: fetchSnippet };

/** The panel: fills each <code data-snippet=…> and wires the copy buttons. */
export class ApiPanel {
  /** `current()` returns the request Run would send now ({url, fields, files}; files may be empty). */
  constructor({ panel, current }) {
    Object.assign(this, { panel, current });
    this.note = panel.querySelector(".api-note");
    this.codes = Array.from(panel.querySelectorAll("code[data-snippet]"));
    this.sentRequest = null;  // what the page last sent, shown while the choices are still those of that run
    this.sentState = null;
    panel.querySelectorAll("button[data-copy]").forEach((button) => button.addEventListener("click", () => this.copy(button)));
    this.refresh();
  }

  /** The page has just sent `request` (one per batch: the last one stays shown). */
  sent(request, label = "") {
    this.sentRequest = request;
    this.sentState = JSON.stringify(this.current());
    this.show(request, `The request this page just sent${label ? ` (${label.replace(/:\s*$/, "").toLowerCase()})` : ""}, with your file names: `
      + "run it in the folder that holds the files.");
  }

  /** The choices changed (or may have): show what Run would send, unless they are still those of the last run. */
  refresh() {
    if (this.sentRequest && JSON.stringify(this.current()) === this.sentState) return;
    this.sentRequest = null;
    const request = this.current();
    const placeholder = !request.files.length;
    this.show(placeholder ? { ...request, files: ["image.png"] } : request, placeholder
      ? "What Run would send with these choices; replace image.png with your image (or pick an example first)."
      : "What Run would send with these choices and files; run it in the folder that holds the files.");
  }

  show(request, note) {
    this.request = request;
    this.note.textContent = note;
    this.codes.forEach((code) => { code.textContent = SNIPPETS[code.dataset.snippet](request); });
    this.panel.dataset.state = this.sentRequest ? "sent" : "current";
  }

  async copy(button) {
    const code = this.panel.querySelector(`code[data-snippet="${button.dataset.copy}"]`);
    const status = button.parentElement.querySelector(".copy-status");
    try {
      await navigator.clipboard.writeText(code.textContent);
      status.textContent = "Copied.";
    } catch {
      const range = document.createRange();
      range.selectNodeContents(code);
      window.getSelection().removeAllRanges();
      window.getSelection().addRange(range);
      status.textContent = "Selected: press Ctrl+C to copy.";
    }
    window.setTimeout(() => { status.textContent = ""; }, 4000);
  }
}
