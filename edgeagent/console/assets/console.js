// The privacy screen: Escape blanks the page at once, Escape again shows it. Without
// JavaScript the "Privacy screen" link leads to a blank page instead.
"use strict";
(function () {
  function toggle(on) {
    document.body.classList.toggle("screened", on);
    if (on) { document.getElementById("privacy-screen").focus(); }
  }
  document.addEventListener("keydown", function (event) {
    if (event.key === "Escape") {
      event.preventDefault();
      toggle(!document.body.classList.contains("screened"));
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var on = document.getElementById("privacy-on");
    var off = document.getElementById("privacy-off");
    if (on) { on.addEventListener("click", function (e) { e.preventDefault(); toggle(true); }); }
    if (off) { off.addEventListener("click", function (e) { e.preventDefault(); toggle(false); }); }
  });
})();
