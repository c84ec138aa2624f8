// dify-hitl review console, the policies: claim / release / reassign from the checkpoint page, and the
// inbox's selection for "Decide selected…". Built on console.js (window.hitlConsole); the pages work
// without either (the forms post, the server answers with a page).
(function () {
  "use strict";
  var ui = window.hitlConsole;
  if (!ui) return;
  var $ = ui.$, $$ = ui.$$, csrf = ui.csrf, showResult = ui.showResult, refreshSoon = ui.refreshSoon;

  // ------------------------------------------------------------------ claim, release, reassign
  var COMMAND_DONE = { claimed: "Claimed: the others see that you are on it (they may still decide).",
    released: "Claim released.", reassigned: "Reassigned." };
  var COMMAND_REFUSED = { not_claimable: "that does not fit the checkpoint as it is now",
    not_assignee: "you are not among this checkpoint's assignees", already_resolved: "it is already decided" };
  function describeCommand(status, body) {
    var err = (body && body.error) || {};
    if (status === 200) {
      var extra = body.status === "reassigned" && body.assignees ? "Assignees now: " + body.assignees.join(", ") + "." : "";
      return ["green", COMMAND_DONE[body.status] || "Done.", extra];
    }
    if (status === 202) return ["yellow", "Queued.", body.message];
    if (status === 401) return ["red", "Your session has ended: sign in again.", ""];
    return ["red", "Refused: " + (COMMAND_REFUSED[err.code] || err.message || ("HTTP " + status)) + ".",
      (err.message || "") + (err.code ? " (" + status + " " + err.code + ")" : "")];
  }
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.matches("[data-command]")) return;
    e.preventDefault();
    var button = $("button[type=submit]", form);
    if (button && button.disabled) return;
    var data = {};
    $$("input:not([type=hidden]), select, textarea", form).forEach(function (f) { if (f.name) data[f.name] = f.value; });
    if (form.dataset.command === "reassign" && !data.to) { showResult("red", "Choose whom to reassign it to.", ""); return; }
    if (button) button.disabled = true;
    fetch(form.getAttribute("action"), { method: "POST", credentials: "same-origin", body: JSON.stringify(data),
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf } })
      .then(function (r) { return r.json().catch(function () { return {}; }).then(function (b) { return [r.status, b]; }); })
      .then(function (res) { var d = describeCommand(res[0], res[1]); showResult(d[0], d[1], d[2]); refreshSoon(); })
      .catch(function () { showResult("red", "No answer from the console; check the connection and try again.", ""); })
      .then(function () { if (button) button.disabled = false; });
  });

  // ------------------------------------------------------------------ inbox: select several, decide them together
  function selectedIds() { return $$("input[data-select]:checked").map(function (b) { return b.value; }); }
  function restoreSelection(ids) {
    if (!ids || !ids.length) return;
    $$("input[data-select]").forEach(function (b) { if (ids.indexOf(b.value) >= 0) b.checked = true; });
    selectionChanged();
  }
  function selectionChanged() {
    var boxes = $$("input[data-select]"), n = boxes.filter(function (b) { return b.checked; }).length;
    var count = $("[data-bulk-count]"), all = $("[data-select-all]");
    if (count) count.textContent = n ? n + " selected" : "tick the open checkpoints below, then preview";
    if (all) { all.hidden = !boxes.length; all.checked = boxes.length > 0 && n === boxes.length; all.indeterminate = n > 0 && n < boxes.length; }
    $$("tr[data-checkpoint]").forEach(function (tr) { var b = $("input[data-select]", tr); tr.classList.toggle("picked", !!(b && b.checked)); });
  }
  document.addEventListener("change", function (e) {
    var t = e.target;
    if (t.matches && t.matches("[data-select-all]")) $$("input[data-select]").forEach(function (b) { b.checked = t.checked; });
    if (t.matches && t.matches("[data-select], [data-select-all]")) selectionChanged();
  });
  document.addEventListener("submit", function (e) {
    if (!e.target.matches("[data-bulk]") || selectedIds().length) return;
    e.preventDefault();
    var count = $("[data-bulk-count]");
    if (count) { count.textContent = "Select at least one checkpoint first (tick its box, or press x on a row)."; count.classList.add("err"); }
  });

  ui.hooks.beforeSwap.push(selectedIds);  // a live refresh of the inbox keeps what is ticked
  ui.hooks.afterSwap.push(restoreSelection);
  ui.hooks.ready.push(selectionChanged);
  ui.hooks.rowKey.push(function (key, row) {  // x ticks the inbox row picked with j / k
    var box = key === "x" && $("input[data-select]", row);
    if (!box) return false;
    box.checked = !box.checked;
    selectionChanged();
    return true;
  });
})();
