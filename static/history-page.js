// The History pages: stored times shown in the visitor's zone (UTC stays in the tooltip), and the filter form
// tells the server that zone so its datetime-local fields mean local time. Without this script both are UTC.
import { localizeTimes } from "./history.js";

localizeTimes(document);
const tz = document.getElementById("tz");
if (tz) tz.value = String(-new Date().getTimezoneOffset());
document.documentElement.dataset.ready = "true";
