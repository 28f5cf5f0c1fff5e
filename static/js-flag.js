// Runs in <head>, before first paint: mark the page as scripted so CSS can swap the plain file input
// for the drop zone without a flash. Only browsers that run ES modules (our page scripts) get the flag.
"use strict";
if ("noModule" in HTMLScriptElement.prototype) document.documentElement.classList.add("js");
