// While a run is in flight: the elapsed time next to the progress text, and a Cancel button (or Escape) that
// aborts the upload or the wait for the answer. Created by script, so the page without JavaScript never shows them.
import { el } from "./dom.js";

const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

export class RunControl {
  constructor({ runButton, progress }) {
    this.runButton = runButton;
    this.cancelButton = el("button", { type: "button", class: "secondary", id: "cancel-run", hidden: true,
      "aria-keyshortcuts": "Escape" }, "Cancel");
    // A clock that ticks ten times a second would flood the progress live region: it is hidden from screen
    // readers, which hear the final "Done in … s" / "Cancelled after … s" instead.
    this.clock = el("span", { class: "elapsed", id: "run-elapsed", "aria-hidden": "true" });
    runButton.after(this.cancelButton);
    progress.append(this.clock);
    this.controller = null;
    this.cancelButton.addEventListener("click", () => this.cancel());
    document.addEventListener("keydown", (event) => {
      // Escape inside a dialog (the crop editor) closes that dialog only.
      const inDialog = event.target instanceof Element && event.target.closest("dialog");
      if (event.key === "Escape" && this.controller && !event.defaultPrevented && !inDialog) this.cancel();
    });
  }

  /** Start the clock, show Cancel (focused when Run was, since Run is disabled meanwhile); returns the signal. */
  begin() {
    const focusWasOnRun = document.activeElement === this.runButton;
    this.controller = new AbortController();
    this.started = performance.now();
    this.cancelButton.hidden = false;
    this.tick();
    this.timer = window.setInterval(() => this.tick(), 100);
    if (focusWasOnRun) this.cancelButton.focus();
    return this.controller.signal;
  }

  tick() {
    this.clock.textContent = seconds(performance.now() - this.started);
  }

  get elapsed() {
    return seconds(performance.now() - this.started);
  }

  get cancelled() {
    return Boolean(this.controller && this.controller.signal.aborted);
  }

  cancel() {
    if (this.controller) this.controller.abort();  // a second press does nothing: the signal fires once
  }

  /** Stop the clock and hide Cancel; focus returns to Run (enabled again by now) if it was on Cancel. */
  end() {
    window.clearInterval(this.timer);
    const focusWasOnCancel = document.activeElement === this.cancelButton;
    this.cancelButton.hidden = true;
    this.clock.textContent = "";
    this.controller = null;
    if (focusWasOnCancel) this.runButton.focus();
  }
}
