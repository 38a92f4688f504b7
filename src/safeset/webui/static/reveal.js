// Press-and-hold reveal of the clear image, for the review page.
//
// The clear rendition is fetched (POST, with the session's CSRF token, never
// cached) only while the button is held, by pointer or by holding Space or
// Enter; it is dropped from the page the moment the button is released, loses
// focus, or the window is left. The blurred rendition is shown otherwise.
(function () {
  "use strict";
  var button = document.getElementById("reveal-button");
  if (!button) { return; }
  var blurredImage = document.getElementById("blurred-image");
  var clearImage = document.getElementById("clear-image");
  var status = document.getElementById("reveal-status");
  var holding = false;
  var attempt = 0;
  var objectUrl = null;

  function say(text) { status.textContent = text; }

  function dropClearImage() {
    clearImage.hidden = true;
    clearImage.removeAttribute("src");
    blurredImage.hidden = false;
    if (objectUrl) { URL.revokeObjectURL(objectUrl); objectUrl = null; }
  }

  function reveal() {
    if (holding) { return; }
    holding = true;
    var mine = ++attempt;
    button.setAttribute("aria-pressed", "true");
    say("Loading the clear image…");
    var body = new URLSearchParams();
    body.set("csrf_token", button.getAttribute("data-csrf-token"));
    fetch(button.getAttribute("data-reveal-url"), {
      method: "POST", body: body, credentials: "same-origin", cache: "no-store", redirect: "error"
    }).then(function (response) {
      if (!response.ok) { throw new Error("status " + response.status); }
      return response.blob();
    }).then(function (blob) {
      if (!holding || mine !== attempt) { return; }  // released before it arrived
      objectUrl = URL.createObjectURL(blob);
      clearImage.src = objectUrl;
      clearImage.hidden = false;
      blurredImage.hidden = true;
      say("Showing the clear image while you hold the button.");
    }).catch(function () {
      if (mine === attempt) { say("The clear image could not be loaded. Decide from the evidence, or reload the page."); }
    });
  }

  function conceal() {
    if (!holding) { return; }
    holding = false;
    attempt++;
    button.setAttribute("aria-pressed", "false");
    dropClearImage();
    say("The image is blurred again.");
  }

  function isHoldKey(event) { return event.key === " " || event.key === "Enter" || event.key === "Spacebar"; }

  button.addEventListener("pointerdown", function (event) {
    if (event.button !== 0) { return; }
    event.preventDefault();
    if (button.setPointerCapture) { button.setPointerCapture(event.pointerId); }
    button.focus();
    reveal();
  });
  ["pointerup", "pointercancel", "lostpointercapture"].forEach(function (type) {
    button.addEventListener(type, conceal);
  });
  button.addEventListener("keydown", function (event) {
    if (!isHoldKey(event)) { return; }
    event.preventDefault();
    if (!event.repeat) { reveal(); }
  });
  button.addEventListener("keyup", function (event) {
    if (!isHoldKey(event)) { return; }
    event.preventDefault();
    conceal();
  });
  button.addEventListener("click", function (event) { event.preventDefault(); });
  button.addEventListener("contextmenu", function (event) { event.preventDefault(); });
  button.addEventListener("blur", conceal);
  window.addEventListener("blur", conceal);
  window.addEventListener("pagehide", conceal);
  document.addEventListener("visibilitychange", function () { if (document.hidden) { conceal(); } });
})();
