// A form that came back with errors: put focus on its summary, so keyboard and screen-reader
// users start where the problems are listed (each links to its field).
document.addEventListener("DOMContentLoaded", function () {
  var summary = document.querySelector(".error-summary");
  if (summary) {
    summary.focus();
  }
});
