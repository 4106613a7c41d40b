// Ringfence: the only script (the Content-Security-Policy allows no inline one). Every page
// works without it; it asks before destructive buttons, shows only the chosen rule kind's
// fields, and brings new calls into the dashboard and the call log without a reload.
"use strict";
document.documentElement.classList.add("js");

document.addEventListener("click", function (event) {
  var button = event.target.closest ? event.target.closest("[data-confirm]") : null;
  if (!button) { return; }
  var question = button.getAttribute("data-confirm");
  if (question && !window.confirm(question)) { event.preventDefault(); }
});

// The add-rule form: the parameters of the chosen kind only.
document.querySelectorAll("select[data-shows-kind]").forEach(function (select) {
  var form = select.form;
  function show() {
    form.querySelectorAll("[data-kind]").forEach(function (box) {
      box.hidden = box.getAttribute("data-kind") !== select.value;
    });
  }
  select.addEventListener("change", show);
  show();
});

// Live: a [data-live] element polls its URL every few seconds while the page is visible.
// The server answers 304 when nothing changed (If-None-Match), else JSON with rendered rows:
// its HTML is escaped by the server's templates, so strangers' names stay text.
function startLive(box) {
  var url = box.getAttribute("data-live");
  var after = box.getAttribute("data-after") || "0";
  var token = null;
  var delay = 5000;
  var timer = null;
  var freshTotal = 0;
  var title = document.title;
  var status = document.getElementById("live-status");

  function openIds() {
    var ids = [];
    box.querySelectorAll("[data-open]").forEach(function (row) {
      ids.push(row.getAttribute("data-call"));
    });
    return ids.join(",");
  }

  function replaceRow(id, html) {
    var old = document.getElementById("call-" + id);
    if (!old) { return; }
    var pick = old.querySelector("input.pick");
    var ticked = pick && pick.checked;
    var wasFresh = old.classList.contains("fresh");
    old.insertAdjacentHTML("afterend", html);
    var row = old.nextElementSibling;
    old.remove();
    if (ticked && row.querySelector("input.pick")) { row.querySelector("input.pick").checked = true; }
    if (wasFresh) { row.classList.add("fresh"); }
  }

  function apply(data) {
    token = data.token;
    after = String(data.after);
    if (data.rows && data.rows.length) {
      var empty = box.querySelector(".empty");
      if (empty) { empty.remove(); }
      for (var i = data.rows.length - 1; i >= 0; i--) {
        box.insertAdjacentHTML("afterbegin", data.rows[i]);
      }
    }
    Object.keys(data.updated || {}).forEach(function (id) { replaceRow(id, data.updated[id]); });
    Object.keys(data.parts || {}).forEach(function (name) {
      var part = box.querySelector("[data-part='" + name + "']");
      if (part) { part.innerHTML = data.parts[name]; }
    });
    var count = document.getElementById("call-count");
    if (count && data.count) { count.textContent = data.count; }
    if (data.fresh) {
      freshTotal += data.fresh;
      document.title = "(" + freshTotal + ") " + title;
      if (status) { status.textContent = data.announce; }
    }
  }

  function schedule() {
    if (timer === null && !document.hidden) { timer = window.setTimeout(poll, delay); }
  }

  function poll() {
    timer = null;
    if (document.hidden) { return; }
    var full = url + (url.indexOf("?") < 0 ? "?" : "&") + "after=" + encodeURIComponent(after) +
      "&open=" + encodeURIComponent(openIds());
    var headers = token ? {"If-None-Match": "\"" + token + "\""} : {};
    fetch(full, {headers: headers, credentials: "same-origin", cache: "no-store",
                 redirect: "manual"})
      .then(function (response) {
        if (response.status === 304) { return null; }
        if (!response.ok) { throw new Error("live update: " + response.status); }
        return response.json();
      })
      .then(function (data) {
        if (data) { apply(data); }
        delay = 5000;
        schedule();
      })
      .catch(function () {
        // Logged out, or the server restarts: try again, less and less often.
        delay = Math.min(delay * 2, 60000);
        schedule();
      });
  }

  document.addEventListener("visibilitychange", function () {
    if (!document.hidden && timer === null) { poll(); }
  });
  window.addEventListener("focus", function () { document.title = title; freshTotal = 0; });
  schedule();
}

document.querySelectorAll("[data-live]").forEach(startLive);
