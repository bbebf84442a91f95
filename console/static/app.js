// statusbridge console: the little a page does by itself. Served from the
// binary (the Content-Security-Policy allows this file and nothing inline).
"use strict";

// Times are written in UTC; hovering one shows the operator's local time.
function localTimes(root) {
  root.querySelectorAll("time[datetime]").forEach(function (el) {
    var d = new Date(el.getAttribute("datetime"));
    if (!isNaN(d.getTime())) {
      el.title = "Your local time: " + d.toLocaleString();
    }
  });
}

// An element with data-live="URL" is replaced every data-every ms by the
// HTML the server renders at URL (escaped there, like every page), until
// the fragment carries data-final. A lost session reloads the page, which
// then goes to the login form.
function live(el) {
  var url = el.getAttribute("data-live");
  var every = parseInt(el.getAttribute("data-every"), 10) || 5000;
  if (el.querySelector("[data-final]")) {
    return;
  }
  function tick() {
    fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } }).then(function (r) {
      if (r.status === 401) {
        window.location.reload();
        return null;
      }
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html !== null && html !== undefined) {
        el.innerHTML = html;
        localTimes(el);
        el.setAttribute("data-refreshed", String(Date.now()));
        if (el.querySelector("[data-final]")) {
          return;
        }
      }
      window.setTimeout(tick, every);
    }, function () {
      window.setTimeout(tick, every);
    });
  }
  window.setTimeout(tick, every);
}

// A button with data-copy="ID" copies the text of the element with that id.
function copyButtons(root) {
  root.querySelectorAll("button[data-copy]").forEach(function (b) {
    b.addEventListener("click", function () {
      var id = b.getAttribute("data-copy");
      var src = document.getElementById(id);
      if (!src || !navigator.clipboard) {
        return;
      }
      navigator.clipboard.writeText(src.textContent).then(function () {
        var note = document.querySelector('[data-copied="' + id + '"]');
        if (note) {
          note.hidden = false;
        }
      });
    });
  });
}

document.addEventListener("DOMContentLoaded", function () {
  localTimes(document);
  copyButtons(document);
  document.querySelectorAll("[data-live]").forEach(live);
});
