// The review queue without full reloads: each draft's buttons and the bulk buttons send their
// form with fetch (Accept: application/json) and put the drafts' new HTML in place; the count of
// characters under each description follows the typing (Unicode scalar values, as Mastodon
// counts); drafts that are going out are polled until they are published or failed. Each answer's
// message is shown at the top of the list (a polite live region) and in the draft it is about.
// Without JavaScript, or when the request itself fails, every form works as a plain POST.
(function () {
  "use strict";
  var live = document.getElementById("review-live");
  var meta = document.querySelector('meta[name="csrf-token"]');
  var csrf = meta ? meta.getAttribute("content") : "";
  var params = new URLSearchParams(window.location.search);
  var STATE_WORDS = {
    pending: "waits for review", approved: "is approved", publishing: "is being published",
    published: "is published", rejected: "is rejected", generation_failed: "could not be described",
    publish_failed: "failed to publish", already_described: "was described on the instance meanwhile"
  };
  var lastClicked = null;

  function announce(text) { if (live) { live.textContent = ""; live.textContent = text || ""; } }
  function chars(text) { return Array.from(text).length; }

  function count(area) {
    var limit = parseInt(area.getAttribute("data-limit"), 10);
    var out = document.getElementById("count-" + area.id.replace("alt-", ""));
    if (!out) { return; }
    var n = chars(area.value);
    out.textContent = n + " of " + limit + " characters" + (n > limit ? ": " + (n - limit) + " too many" : "");
    out.classList.toggle("over", n > limit);
  }

  function bind(root) {
    root.querySelectorAll("textarea[data-limit]").forEach(function (area) {
      area.addEventListener("input", function () { count(area); });
      count(area);
    });
  }

  // A message inside one draft, above its text.
  function note(article, text, kind) {
    if (!article || !text) { return; }
    var old = article.querySelector("[data-note]");
    if (old) { old.remove(); }
    var p = document.createElement("p");
    p.setAttribute("data-note", "");
    p.className = "flash flash-" + kind;
    p.textContent = text;
    var heading = article.querySelector("h2");
    if (heading) { heading.insertAdjacentElement("afterend", p); }
  }

  // Puts the drafts' new HTML in place; keeps focus on the draft that was acted on.
  function place(drafts, focusId, message, kind, typed) {
    (drafts || []).forEach(function (d) {
      var old = document.getElementById("draft-" + d.id);
      if (!old) { return; }
      var holder = document.createElement("div");
      holder.innerHTML = d.html;
      var fresh = holder.firstElementChild;
      if (!fresh) { return; }
      old.replaceWith(fresh);
      if (String(d.id) === String(focusId)) {
        var area = fresh.querySelector("textarea");
        if (typed !== null && typed !== undefined && area) { area.value = typed; }
        note(fresh, message, kind);
        fresh.focus();
      }
      bind(fresh);
    });
    poll();
  }

  function send(form, submitter) {
    var action = (submitter && submitter.getAttribute("formaction")) || form.getAttribute("action");
    var data = new URLSearchParams(new FormData(form));
    if (submitter && submitter.name) { data.append(submitter.name, submitter.value); }
    var typedById = {};
    if (form.id === "bulk") {
      // The text typed in each selected draft's box and not saved goes with it.
      data.getAll("draft_ids").forEach(function (id) {
        var area = document.getElementById("alt-" + id);
        if (area && area.value !== area.defaultValue) {
          data.append("alt_text_" + id, area.value);
          typedById[id] = area.value;
        }
      });
    }
    var article = form.closest("article");
    var area = form.querySelector("textarea");
    var typed = area ? area.value : null;
    var buttons = form.querySelectorAll("button");
    buttons.forEach(function (b) { b.disabled = true; });
    if (/regenerate$/.test(action)) { announce("Drafting a new description; this can take a while."); }
    fetch(action, {
      method: "POST", body: data, credentials: "same-origin",
      headers: { "Accept": "application/json", "X-CSRF-Token": csrf }
    }).then(function (response) {
      var type = response.headers.get("content-type") || "";
      if (response.redirected || type.indexOf("application/json") === -1) { throw new Error("not json"); }
      return response.json().then(function (body) { return { status: response.status, body: body }; });
    }).then(function (answer) {
      buttons.forEach(function (b) { b.disabled = false; });
      try { show(answer, article, typed, typedById); } catch (e) { announce("The page could not be updated; reload it to see the drafts as they are."); }
    }, function () {
      // The request itself failed (signed out, offline, an error page): the plain form does it.
      buttons.forEach(function (b) { b.disabled = false; });
      if (submitter && submitter.name) {
        var chosen = document.createElement("input");
        chosen.type = "hidden"; chosen.name = submitter.name; chosen.value = submitter.value;
        form.appendChild(chosen);
      }
      form.setAttribute("action", action);
      HTMLFormElement.prototype.submit.call(form);
    });
  }

  function show(answer, article, typed, typedById) {
    var body = answer.body;
    var id = article ? article.getAttribute("data-id") : null;
    if (answer.status === 422 && article) {
      var problem = article.querySelector(".field-error") || document.createElement("p");
      problem.className = "field-error";
      problem.id = "problem-" + id;
      problem.textContent = body.message;
      var area = article.querySelector("textarea");
      if (area) {
        area.setAttribute("aria-invalid", "true");
        area.setAttribute("aria-describedby", "count-" + id + " " + problem.id);
        if (!problem.parentNode) { area.insertAdjacentElement("afterend", problem); }
        area.focus();
      }
      announce(body.message);
      return;
    }
    var kind = answer.status === 200 ? "success" : "error";
    // A refused action keeps what was typed in the box (when the draft still has one).
    place(body.drafts, id, body.message, kind, answer.status === 200 ? null : typed);
    // Bulk: each refused draft keeps its typed text and says why.
    (body.drafts || []).forEach(function (d) {
      if (!d.refused) { return; }
      var fresh = document.getElementById("draft-" + d.id);
      var box = fresh ? fresh.querySelector("textarea") : null;
      if (box && typedById && typedById[d.id] !== undefined) { box.value = typedById[d.id]; count(box); }
      note(fresh, d.refused, "error");
    });
    announce(body.message || "Done.");
  }

  function onSubmit(event) {
    var form = event.target;
    if (!(form instanceof HTMLFormElement)) { return; }
    if (!form.classList.contains("draft-form") && form.id !== "bulk") { return; }
    event.preventDefault();
    // Older browsers have no event.submitter: the button last clicked in this form.
    var submitter = event.submitter || (lastClicked && lastClicked.form === form ? lastClicked : null);
    send(form, submitter);
  }

  var timer = null;
  function poll() {
    if (timer) { return; }
    var busy = Array.from(document.querySelectorAll("article[data-busy]")).map(function (a) { return a.getAttribute("data-id"); });
    if (!busy.length) { return; }
    timer = window.setTimeout(function () {
      timer = null;
      var query = "ids=" + busy.join(",") + "&state=" + encodeURIComponent(params.get("state") || "pending") + "&page=" + encodeURIComponent(params.get("page") || "1");
      fetch("/review/status?" + query, { credentials: "same-origin", headers: { "Accept": "application/json" } })
        .then(function (r) { return r.ok ? r.json() : { drafts: [] }; })
        .then(function (body) {
          var changed = (body.drafts || []).filter(function (d) {
            var el = document.getElementById("draft-" + d.id);
            return el && el.getAttribute("data-state") !== d.state;
          });
          changed.forEach(function (d) { announce("Draft " + d.id + " " + (STATE_WORDS[d.state] || d.state) + "."); });
          if (changed.length) { place(changed, null); } else { poll(); }
        })
        .catch(function () { window.setTimeout(poll, 5000); });
    }, 2000);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest ? event.target.closest("button") : null;
    if (button) { lastClicked = button; }
  });
  document.addEventListener("submit", onSubmit);
  bind(document);
  poll();
})();
