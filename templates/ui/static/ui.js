// provisioner console: live updates over Server-Sent Events, confirmations, copy buttons.
// Plain JavaScript, no inline script (the Content-Security-Policy forbids it). Text from
// the server is only ever set with textContent, never parsed as HTML.
"use strict";

(function () {
  function human(seconds) {
    if (seconds < 60) return seconds.toFixed(1) + "s";
    var s = Math.floor(seconds);
    function two(n) { return (n < 10 ? "0" : "") + n; }
    if (s < 3600) return Math.floor(s / 60) + "m" + two(s % 60) + "s";
    if (s < 86400) return Math.floor(s / 3600) + "h" + two(Math.floor((s % 3600) / 60)) + "m";
    return Math.floor(s / 86400) + "d" + two(Math.floor((s % 86400) / 3600)) + "h";
  }

  function tickAges() {
    var now = Date.now();
    document.querySelectorAll("[data-since]").forEach(function (cell) {
      var since = Date.parse(cell.getAttribute("data-since"));
      if (!isNaN(since)) cell.textContent = human(Math.max(0, (now - since) / 1000));
    });
  }

  function setStateBadge(el, state) {
    el.textContent = state;
    el.className = "state s-" + state.toLowerCase();
  }

  function updateRow(tr, row) {
    var old = tr.getAttribute("data-state");
    if (old !== row.state) {
      var before = document.querySelector('[data-count="' + CSS.escape(old) + '"]');
      var after = document.querySelector('[data-count="' + CSS.escape(row.state) + '"]');
      if (before) before.textContent = String(Math.max(0, Number(before.textContent) - 1));
      if (after) after.textContent = String(Number(after.textContent) + 1);
      tr.setAttribute("data-state", row.state);
    }
    tr.querySelectorAll("[data-f]").forEach(function (cell) {
      var f = cell.getAttribute("data-f");
      if (f === "state") setStateBadge(cell, row.state);
      else if (f === "age") cell.setAttribute("data-since", row.since);
      else if (f === "mac") (cell.firstElementChild || cell).textContent = row.mac;
      else if (Object.prototype.hasOwnProperty.call(row, f)) cell.textContent = String(row[f]);
    });
    tr.classList.add("changed");
    setTimeout(function () { tr.classList.remove("changed"); }, 1500);
  }

  function addEvent(body, e) {
    var tr = document.createElement("tr");
    tr.className = "sev-" + e.severity;
    [e.at.replace("T", " ").replace(/\.\d+/, "").replace(/(\+00:00|Z)$/, " UTC"), e.kind, e.severity, e.actor, e.message].forEach(function (text) {
      var td = document.createElement("td");
      td.textContent = text;
      tr.appendChild(td);
    });
    body.insertBefore(tr, body.firstChild);
    while (body.children.length > 500) body.removeChild(body.lastChild);
  }

  function connect(url, handlers) {
    var live = document.getElementById("live");
    var source = new EventSource(url);
    source.onopen = function () { if (live) { live.textContent = "live"; live.className = "live on"; } };
    source.onerror = function () { if (live) { live.textContent = "reconnecting…"; live.className = "live off"; } };
    Object.keys(handlers).forEach(function (kind) {
      source.addEventListener(kind, function (msg) { handlers[kind](JSON.parse(msg.data)); });
    });
    source.addEventListener("resync", function () { window.location.reload(); });
  }

  function rackPage() {
    var rows = new Map();
    document.querySelectorAll("#rack tbody tr").forEach(function (tr) {
      rows.set(tr.getAttribute("data-name"), tr);
    });
    connect("/ui/stream", {
      machine: function (row) {
        var tr = rows.get(row.name);
        if (tr) updateRow(tr, row);
      }
    });
  }

  function machinePage() {
    var box = document.getElementById("machine");
    var name = box.getAttribute("data-name");
    var body = document.getElementById("events");
    connect("/ui/stream?machine=" + encodeURIComponent(name), {
      machine: function (row) {
        if (row.name !== name) return;
        box.querySelectorAll("[data-f]").forEach(function (cell) {
          var f = cell.getAttribute("data-f");
          if (f === "state") setStateBadge(cell, row.state);
          else if (f === "age") cell.setAttribute("data-since", row.since);
          else if (Object.prototype.hasOwnProperty.call(row, f)) cell.textContent = String(row[f]);
        });
      },
      event: function (e) { addEvent(body, e); }
    });
  }

  document.addEventListener("submit", function (ev) {
    var form = ev.target;
    var question = form.getAttribute && form.getAttribute("data-confirm");
    if (question && !window.confirm(question)) ev.preventDefault();
  });

  document.addEventListener("click", function (ev) {
    var id = ev.target.getAttribute && ev.target.getAttribute("data-copy");
    if (!id) return;
    var text = document.getElementById(id).textContent;
    navigator.clipboard.writeText(text).then(function () { ev.target.textContent = "Copied"; });
  });

  document.addEventListener("DOMContentLoaded", function () {
    var page = document.body.getAttribute("data-page");
    if (page === "rack") rackPage();
    else if (page === "machine") machinePage();
    if (page === "rack" || page === "machine") { tickAges(); setInterval(tickAges, 1000); }
  });
})();
