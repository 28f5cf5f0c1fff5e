// Talking to the JSON API: predict with upload progress, the model list, and one reading of every response shape.

/** Human message from an error body ({"error": {"message"}}), whatever else the server sent. */
export function errorMessage(body, status) {
  if (body && typeof body === "object") {
    const error = body.error;
    if (error && typeof error === "object" && error.message) return error.message;
    if (typeof error === "string") return error;
    if (body.message) return body.message;
  }
  if (status === 413) return "The upload is larger than the server accepts.";
  return `The server answered with HTTP ${status}.`;
}

/** One shape for every predict response: single-image bodies are flat, batches carry `results`. */
export function normalize(body) {
  const data = body && typeof body === "object" && body.data && typeof body.data === "object" ? body.data : body || {};
  const results = Array.isArray(data.results) ? data.results : [data];
  return {
    model: data.model || body.model,
    version: data.version || body.version,
    task: data.task || body.task,
    timing: data.timing_ms || body.timing_ms || data.timings || {},
    results,
  };
}

/** POST a FormData with XMLHttpRequest (fetch has no upload progress); resolves for every HTTP status.
 * An AbortSignal stops the upload or the wait for the answer; the promise then rejects with an AbortError. */
export function postForm(url, form, onProgress = () => {}, signal = null) {
  return new Promise((resolve, reject) => {
    const request = new XMLHttpRequest();
    const aborted = () => new DOMException("The request was cancelled.", "AbortError");
    if (signal && signal.aborted) {
      reject(aborted());
      return;
    }
    if (signal) signal.addEventListener("abort", () => request.abort(), { once: true });
    request.addEventListener("abort", () => reject(aborted()));
    const started = performance.now();
    request.open("POST", url);
    request.responseType = "json";
    request.setRequestHeader("Accept", "application/json");
    request.upload.addEventListener("progress", (event) => {
      if (event.lengthComputable) onProgress({ phase: "upload", fraction: event.loaded / event.total });
    });
    request.upload.addEventListener("load", () => onProgress({ phase: "running" }));
    request.addEventListener("load", () => resolve({
      status: request.status,
      ok: request.status >= 200 && request.status < 300,
      body: request.response,
      requestId: request.getResponseHeader("X-Request-ID"),
      retryAfter: Number(request.getResponseHeader("Retry-After")) || null,
      roundTripMs: performance.now() - started,
    }));
    request.addEventListener("error", () => reject(new Error("Could not reach the server. Is it running?")));
    request.addEventListener("timeout", () => reject(new Error("The server took too long to answer.")));
    request.send(form);
  });
}

/** The served models as the API lists them (name, task, description, input_size, state, …). */
export async function fetchModels(url) {
  const response = await fetch(url, { headers: { Accept: "application/json" } });
  if (!response.ok) throw new Error(`GET ${url}: HTTP ${response.status}`);
  const body = await response.json();
  return Array.isArray(body) ? body : body.models || (body.data && body.data.models) || [];
}
