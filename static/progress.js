// Live progress of a caption run: polls /caption_generation/status while the run is queued or
// running, updates the progress bar and counts, and tells screen-reader users what changed through
// a polite live region (state changes, and drafts made, at most every few seconds). Without
// JavaScript the page is right on every reload.
(function () {
  "use strict";
  var section = document.getElementById("run");
  if (!section) { return; }
  var ANNOUNCE = {
    queued: "The run is waiting to start.", running: "The run is going.",
    completed: "The run has finished.", failed: "The run stopped with an error.",
    cancelled: "The run was cancelled."
  };
  function drafts(n) { return n === 1 ? "1 draft" : n + " drafts"; }
  var STATE_TEXT = {
    none: "No run yet", queued: "Waiting to start", running: "Running",
    completed: "Finished", failed: "Stopped with an error", cancelled: "Cancelled"
  };
  var COUNTS = ["posts_scanned", "images_found", "drafts_made", "media_skipped", "images_failed"];
  var state = section.getAttribute("data-state");
  var lastAnnounced = { state: state, drafts: null, at: 0 };
  function active(s) { return s === "queued" || s === "running"; }
  function byId(id) { return document.getElementById(id); }
  function setText(id, text) { var el = byId(id); if (el && el.textContent !== String(text)) { el.textContent = text; } }
  function announce(text) { var live = byId("run-live"); if (live) { live.textContent = text; } }

  function render(s) {
    byId("run-empty").hidden = s.state !== "none";
    byId("run-progress").hidden = s.state === "none";
    setText("run-state", STATE_TEXT[s.state] || s.state);
    setText("run-step", s.step || "");
    byId("run-step-sep").hidden = !s.step;
    var bar = byId("run-bar");
    if (s.posts_limit > 0) { bar.max = s.posts_limit; setText("run-posts_limit", s.posts_limit); }
    bar.value = s.posts_scanned;
    bar.textContent = s.posts_scanned + " of " + bar.max;
    COUNTS.forEach(function (name) { setText("run-" + name, s[name]); });
    var error = byId("run-error");
    error.hidden = !s.error;
    setText("run-error", s.error || "");
    var finished = !active(s.state) && s.state !== "none";
    byId("run-drafts").hidden = !finished;
    if (s.run_id) { byId("run-drafts-link").href = "/runs/" + s.run_id; }
    var cancel = byId("run-cancel"), start = byId("run-start");
    var hadFocus = cancel.contains(document.activeElement) || start.contains(document.activeElement);
    cancel.hidden = !active(s.state);
    start.hidden = active(s.state);
    if (hadFocus) {
      // The button that had focus may be hidden now: keep focus on the one shown.
      var shown = active(s.state) ? cancel : start;
      var button = shown.querySelector("button");
      if (button && !shown.contains(document.activeElement)) { button.focus(); }
    }

    var now = Date.now();
    if (s.state !== lastAnnounced.state) {
      var text = ANNOUNCE[s.state] || "";
      if (finished) {
        text += " " + drafts(s.drafts_made) + " made";
        if (s.images_failed > 0) { text += ", " + s.images_failed + " could not be described"; }
        text += ".";
        if (s.error) { text += " " + s.error; }
      }
      announce(text);
      lastAnnounced = { state: s.state, drafts: s.drafts_made, at: now };
    } else if (active(s.state) && s.drafts_made !== lastAnnounced.drafts && now - lastAnnounced.at > 10000) {
      announce(drafts(s.drafts_made) + " made so far.");
      lastAnnounced.drafts = s.drafts_made;
      lastAnnounced.at = now;
    }
  }

  function poll() {
    fetch("/caption_generation/status", { credentials: "same-origin", headers: { "Accept": "application/json" } })
      .then(function (r) { if (!r.ok) { throw new Error("status " + r.status); } return r.json(); })
      .then(function (s) {
        render(s);
        state = s.state;
        setTimeout(poll, active(s.state) ? 1500 : 5000);
      })
      .catch(function () { setTimeout(poll, 5000); });
  }
  // Poll while a run is going; when none is, still look now and then, so a run started in another
  // tab or finished meanwhile shows up.
  setTimeout(poll, active(state) ? 1000 : 5000);
}());
