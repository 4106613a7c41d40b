// Ringfence: the only script. Asks before destructive buttons marked data-confirm.
"use strict";
document.addEventListener("click", function (event) {
  var button = event.target.closest ? event.target.closest("[data-confirm]") : null;
  if (!button) { return; }
  var question = button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) { event.preventDefault(); }
});
