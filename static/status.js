// Status page: re-render the server's status fragment every few seconds while the box is ticked.
"use strict";

const REFRESH_MS = 5000;
const body = document.getElementById("status-body");
const toggle = document.getElementById("auto-refresh");
const stamp = document.getElementById("refreshed");

async function refresh() {
  if (!toggle.checked || document.hidden) return;
  try {
    const response = await fetch(body.dataset.fragment, { headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const fragment = document.createRange().createContextualFragment(await response.text());
    body.replaceChildren(fragment);
    stamp.textContent = `Updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    stamp.textContent = `Could not refresh (${error.message}); retrying.`;
  }
}

if (body && toggle) {
  setInterval(refresh, REFRESH_MS);
  toggle.addEventListener("change", refresh);
  stamp.textContent = `Updated ${new Date().toLocaleTimeString()}`;
}
