// Magister view: a little JavaScript where it helps. Row clicks open items, draft tables filter in
// place, and the labelling page takes keyboard shortcuts. No framework, no network but this server.
(function () {
  "use strict";

  // Clicking anywhere on an item row opens the item.
  document.querySelectorAll("tr[data-href]").forEach(function (row) {
    row.addEventListener("click", function (event) {
      if (event.target.closest("a, input, button")) return;
      window.location.href = row.dataset.href;
    });
  });

  // Compare: exactly two runs.
  var compare = document.getElementById("compare-form");
  if (compare) {
    compare.addEventListener("submit", function (event) {
      event.preventDefault();
      var picked = Array.from(compare.querySelectorAll("input[name=run]:checked")).map(function (box) { return box.value; });
      if (picked.length !== 2) { alert("Select exactly two runs to compare."); return; }
      window.location.href = "/compare/" + encodeURIComponent(picked[0]) + "/" + encodeURIComponent(picked[1]);
    });
  }

  // Teaching run: filter the examples of a round by strategy, outcome and text.
  document.querySelectorAll(".draft-filters").forEach(function (box) {
    var table = document.getElementById(box.dataset.table);
    function apply() {
      var strategy = box.querySelector("[data-filter=strategy]").value;
      var outcome = box.querySelector("[data-filter=outcome]").value;
      var text = box.querySelector("[data-filter=text]").value.toLowerCase();
      table.querySelectorAll("tbody tr").forEach(function (row) {
        var show = (!strategy || row.dataset.strategy === strategy) && (!outcome || row.dataset.outcome === outcome) &&
          (!text || row.textContent.toLowerCase().indexOf(text) >= 0);
        row.hidden = !show;
      });
    }
    box.addEventListener("input", apply);
    box.addEventListener("change", apply);
  });

  // Labelling: y / n label the current answer, u undoes the last label, j / k move.
  var app = document.getElementById("label-app");
  if (!app) return;
  var cards = Array.from(app.querySelectorAll(".card"));
  var current = Math.max(0, cards.findIndex(function (c) { return c.dataset.label === ""; }));
  var history = [];

  function show(index) {
    if (!cards.length) return;
    current = Math.min(Math.max(index, 0), cards.length - 1);
    cards.forEach(function (c, k) { c.classList.toggle("current", k === current); });
  }

  function refresh() {
    document.getElementById("labelled").textContent = cards.filter(function (c) { return c.dataset.label !== ""; }).length;
    // Re-render the agreement section from the server's page, so the numbers shown are the store's.
    fetch(window.location.pathname + "?who=" + encodeURIComponent(app.dataset.who), { credentials: "same-origin" })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("agreement");
        if (fresh) document.getElementById("agreement").replaceWith(fresh);
      });
  }

  function send(card, value) {
    var body = JSON.stringify({ item_id: card.dataset.item, correct: value === null ? null : value === "1", who: app.dataset.who });
    return fetch("/api/runs/" + encodeURIComponent(app.dataset.run) + "/labels", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: body, credentials: "same-origin"
    }).then(function (r) {
      if (!r.ok) throw new Error("label not saved: HTTP " + r.status);
      card.dataset.label = value === null ? "" : value;
      card.querySelector(".state").textContent = value === null ? "not labelled" : value === "1" ? "labelled right" : "labelled wrong";
      refresh();
    });
  }

  function label(value) {
    var card = cards[current];
    if (!card) return;
    history.push([current, card.dataset.label]);
    send(card, value).then(function () { show(current + 1); });
  }

  function undo() {
    var last = history.pop();
    if (!last) return;
    show(last[0]);
    send(cards[last[0]], last[1] === "" ? null : last[1]);
  }

  app.addEventListener("click", function (event) {
    var button = event.target.closest("button[data-value]");
    if (!button) return;
    show(cards.indexOf(button.closest(".card")));
    label(button.dataset.value);
  });
  document.addEventListener("keydown", function (event) {
    if (event.target.closest("input, textarea, select")) return;
    if (event.key === "y") label("1");
    else if (event.key === "n") label("0");
    else if (event.key === "u") undo();
    else if (event.key === "j") show(current + 1);
    else if (event.key === "k") show(current - 1);
  });
  show(current);
})();
