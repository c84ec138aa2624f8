// dify-hitl review console, Dify forms (Human Input): pick an action (button or number key), fill the
// inputs, send; the rendered form mirrors what is typed. Built on console.js (window.hitlConsole); the
// pages work without either (the form posts, the server answers with a page).
(function () {
  "use strict";
  var ui = window.hitlConsole;
  if (!ui) return;
  var $ = ui.$, $$ = ui.$$, csrf = ui.csrf, showResult = ui.showResult, refreshSoon = ui.refreshSoon;
  var fieldError = ui.fieldError, describe = ui.describe;

  function formButtons() { return $$('form[data-kind="dify-form"] [data-form-action]'); }
  function pickAction(button) {
    formButtons().forEach(function (b) { b.classList.toggle("picked", b === button); });
    if (button) { button.focus(); button.scrollIntoView({ block: "nearest" }); }
  }
  function submitForm(form, submitter) {
    var button = submitter && submitter.dataset.formAction !== undefined ? submitter : $("[data-form-action].picked", form);
    if (!button) { fieldError(form, "Pick one of the form's actions: a button below, or its number key."); return; }
    if (button.disabled) { showResult("red", "Not sent: " + (button.title || "you may not decide this checkpoint."), ""); return; }
    fieldError(form, "");
    var inputs = {};
    $$("[data-form-input]", form).forEach(function (f) { inputs[f.dataset.formInput] = f.value; });
    var data = { form_action: button.value, form_inputs: inputs };
    form.dataset.key = form.dataset.key || ("console-" + (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)));
    data.idempotency_key = form.dataset.key;
    var buttons = $$("button[type=submit]", form);
    buttons.forEach(function (b) { b.disabled = true; });
    var title = button.textContent.replace(/^\s*\d\s*/, "").trim();
    fetch(form.getAttribute("action"), { method: "POST", credentials: "same-origin", body: JSON.stringify(data),
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf } })
      .then(function (r) { delete form.dataset.key; return r.json().catch(function () { return {}; }).then(function (b) { return [r.status, b]; }); })
      .then(function (res) {
        var status = res[0], body = res[1], err = body.error || {};
        var region = form.closest("[data-keep-typed]");
        if (region && (status === 200 || status === 202)) region.dataset.sentHere = "1";
        var d = status === 200 && body.status !== "voted" ? ["green", "Sent “" + title + "” — the form goes to Dify; the delivery state above shows when the run resumes.",
          "Form action " + button.value + " (" + ((body.resolution || {}).action || button.dataset.kind) + "), decided by " + (body.resolution || {}).decided_by + "."]
          : describe(status, body, button.dataset.kind);
        if (status === 422 && err.code === "missing_inputs") {
          var empty = $$("[data-form-input]", form).filter(function (f) { return !f.value.trim(); });
          fieldError(form, "Fill in " + empty.map(function (f) { return f.dataset.formInput; }).join(", ") + ".", empty[0]);
        }
        showResult(d[0], d[1], d[2]);
        refreshSoon();
      })
      .catch(function () { showResult("red", "No answer from the console; check the connection and send again.", ""); })
      .then(function () {
        var r = form.closest("[data-keep-typed]");
        if (!r || r.dataset.status === "open") buttons.forEach(function (b) { b.disabled = false; });
      });
  }
  document.addEventListener("input", function (e) {  // the rendered form mirrors what is typed
    var name = e.target.dataset && e.target.dataset.formInput;
    if (name === undefined) return;
    $$("[data-form-preview]").forEach(function (el) {
      if (el.dataset.formPreview !== name) return;
      el.textContent = e.target.value;
      el.classList.toggle("ff-empty", !e.target.value);
    });
  });
  document.addEventListener("click", function (e) {
    var slot = e.target.closest(".ff[data-field]");
    if (slot) {  // a field in the rendered form: edit it in the decision form
      var input = $('[data-form-input="' + slot.dataset.field + '"]');
      if (input) { input.focus(); input.scrollIntoView({ block: "center" }); }
      return;
    }
    var picked = e.target.closest("[data-form-action]");
    if (picked) pickAction(picked);
  });
  document.addEventListener("submit", function (e) {
    if (!e.target.matches('[data-decision][data-kind="dify-form"]')) return;
    e.preventDefault();
    submitForm(e.target, e.submitter);
  });
  function formKey(key) {  // 1-9 picks an action, a / r / x the first of that kind, e goes to the text
    if (!formButtons().length && !$("[data-form-input]")) return false;
    var buttons = formButtons();
    if (/^[1-9]$/.test(key)) { var b = buttons[parseInt(key, 10) - 1]; if (b) pickAction(b); return !!b; }
    var kinds = { a: "approve", r: "revise", x: "abort" };
    if (kinds[key]) {
      var match = buttons.filter(function (b) { return b.dataset.formAction === kinds[key]; })[0]
        || buttons.filter(function (b) { return b.dataset.kind === kinds[key]; })[0];
      if (match) pickAction(match);
      return !!match;
    }
    if (key === "e") {
      var field = $('form[data-kind="dify-form"] textarea[data-form-input]') || $("[data-form-input]");
      if (field) { field.focus(); field.scrollIntoView({ block: "nearest" }); }
      return !!field;
    }
    return false;
  }
  ui.hooks.key.push(formKey);
})();
