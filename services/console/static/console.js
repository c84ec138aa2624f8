// dify-hitl review console: live updates (SSE), countdowns, keyboard shortcuts, decisions.
// No framework, no build step; the pages work without it (forms post, links navigate).
(function () {
  "use strict";
  var $ = function (sel, root) { return (root || document).querySelector(sel); };
  var $$ = function (sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); };
  var serverNow = parseFloat(($('meta[name="server-now"]') || {}).content || "0");
  var skew = serverNow ? serverNow - Date.now() / 1000 : 0;
  var now = function () { return Date.now() / 1000 + skew; };
  var csrf = ($('meta[name="csrf-token"]') || {}).content || "";
  var scope = (document.body.dataset.scope || "").split(":");
  var hooks = { beforeSwap: [], afterSwap: [], rowKey: [], key: [], ready: [] };  // filled by console-*.js

  // ------------------------------------------------------------------ time
  function duration(s) {
    s = Math.max(0, s);
    if (s < 10) return s < 1 ? Math.round(s * 1000) + " ms" : s.toFixed(1) + "s";
    var m = Math.floor(s / 60), h = Math.floor(m / 60), sec = Math.floor(s % 60);
    if (h) return h + "h " + String(m % 60).padStart(2, "0") + "m";
    return m ? m + "m " + String(sec).padStart(2, "0") + "s" : sec + "s";
  }
  function ago(s) {
    if (s < 1) return "just now";
    return (s < 10 ? Math.floor(s) + "s" : duration(s)) + " ago";
  }
  function tick() {
    var t = now();
    $$("[data-deadline]").forEach(function (el) {
      var left = parseFloat(el.dataset.deadline) - t;
      el.textContent = left > 0 ? duration(left) : "due";
      el.classList.toggle("urgent", left < 60);
    });
    $$("[data-since]").forEach(function (el) { el.textContent = ago(t - parseFloat(el.dataset.since)); });
    $$("[data-elapsed-since]").forEach(function (el) { el.textContent = duration(t - parseFloat(el.dataset.elapsedSince)); });
  }
  setInterval(tick, 1000);

  // ------------------------------------------------------------------ live regions
  var refreshTimer = null, refreshing = false, again = false;
  function refreshSoon() { clearTimeout(refreshTimer); refreshTimer = setTimeout(refresh, 120); }
  function refresh() {
    if (refreshing) { again = true; return; }
    refreshing = true;
    fetch(location.href, { credentials: "same-origin", headers: { Accept: "text/html" } }).then(function (r) {
      if (r.redirected && new URL(r.url).pathname === "/login") { location.reload(); return null; }
      return r.ok ? r.text() : null;
    }).then(function (html) {
      if (html) swap(new DOMParser().parseFromString(html, "text/html"));
    }).catch(function () {}).then(function () {
      refreshing = false;
      if (again) { again = false; refreshSoon(); }
    });
  }
  function typed(el) {  // anything the reviewer typed or chose that the page did not come with
    return $$("textarea, input:not([type=hidden]), select", el).some(function (f) {
      if (f.type === "checkbox" || f.type === "radio") return f.checked !== f.defaultChecked;
      if (f.tagName === "SELECT") return $$("option", f).some(function (o) { return o.selected !== o.defaultSelected; });
      return f.value !== f.defaultValue;
    });
  }
  function keepTyped(el, fresh) {
    // Decided elsewhere (another reviewer, the CLI, a bot, another tab) while this reviewer was typing:
    // keep their text where it is, turn sending off, and say who decided what and how.
    // Still open but no longer this reviewer's to decide (reassigned, their vote cast in another tab): the same.
    var still = fresh.dataset.status === "open";
    el.dataset.v = fresh.dataset.v;
    el.dataset.status = fresh.dataset.status;
    el.dataset.gateReason = fresh.dataset.gateReason || "";
    $$("button[type=submit]", el).forEach(function (b) { b.disabled = true; b.title = still ? el.dataset.gateReason : "Already decided"; });
    var who = fresh.dataset.decidedBy || "someone", how = fresh.dataset.channel ? " via " + fresh.dataset.channel : "";
    var box = $(".elsewhere", el) || document.createElement("div");
    box.className = "elsewhere";
    box.setAttribute("role", "alert");
    box.textContent = "";
    var head = document.createElement("strong");
    head.textContent = still ? "Changed while you were typing: " + fresh.dataset.gateReason
      : "Decided elsewhere while you were typing: " + (fresh.dataset.label || fresh.dataset.action || fresh.dataset.status) + " by " + who + how + ".";
    var rest = document.createElement("span");
    rest.className = "small";
    rest.textContent = "Your text is kept below so you can copy it; sending is off. ";
    var show = document.createElement("button");
    show.type = "button";
    show.className = "btn-link";
    show.textContent = still ? "Show the page as it is now" : "Show the decision instead";
    show.addEventListener("click", function () { el.replaceWith(document.importNode(fresh, true)); tick(); });
    rest.appendChild(show);
    box.appendChild(head);
    box.appendChild(rest);
    if (!box.parentNode) el.insertBefore(box, el.firstChild);
  }
  function swap(doc) {
    var before = {}, kept = hooks.beforeSwap.map(function (f) { return f(); });
    $$("[data-checkpoint]").forEach(function (el) { before[el.dataset.checkpoint] = true; });
    $$("[data-live]").forEach(function (el) {
      var fresh = doc.querySelector('[data-live="' + el.dataset.live + '"]');
      if (!fresh) return;
      if (fresh.dataset.v !== undefined && fresh.dataset.v === el.dataset.v) return;  // unchanged: keep what is typed
      if (el.hasAttribute("data-keep-typed") && el.dataset.sentHere !== "1" && typed(el)
          && (fresh.dataset.status !== "open" || fresh.dataset.gateReason)) {
        keepTyped(el, fresh);
        return;
      }
      el.replaceWith(document.importNode(fresh, true));
    });
    if (doc.title) document.title = doc.title;
    hooks.afterSwap.forEach(function (f, i) { f(kept[i]); });
    $$("[data-checkpoint]").forEach(function (el) { if (!before[el.dataset.checkpoint]) el.classList.add("fresh"); });
    tick();
    localTimes();
  }
  function clocks() {  // a time of day in the reviewer's own time zone: "12:03 (your time)"
    $$("[data-clock]").forEach(function (el) {
      if (el.dataset.done) return;
      var d = new Date(parseFloat(el.dataset.clock) * 1000);
      if (isNaN(d)) return;
      el.textContent = d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) + " (your time)";
      el.dataset.done = "1";
    });
  }
  function localTimes() {
    clocks();  // absolute times in the reviewer's own time zone; UTC stays on hover
    $$("[data-local]").forEach(function (el) {
      if (el.dataset.done) return;
      var d = new Date(parseFloat(el.dataset.local) * 1000);
      if (isNaN(d)) return;
      el.textContent = d.toLocaleString([], { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short" });
      el.dataset.done = "1";
    });
  }
  function concerns(ev) {
    var kind = ev.type || "";
    var page = scope[0];
    if (page === "bulk") return false;  // the answer to a POST: nothing to re-read
    if (kind === "resync") return true;
    if (page === "inbox") return kind.indexOf("checkpoint.") === 0;
    if (page === "checkpoint") return ev.checkpoint_id === scope[1] || ev.run_id === scope[2];
    if (page === "runs") return kind.indexOf("run.") === 0 || kind.indexOf("checkpoint.") === 0;
    if (page === "run") return ev.run_id === scope[1];
    return kind.indexOf("checkpoint.") === 0;  // the inbox count in the top bar
  }
  var live = $("#live"), source = null, failed = false;
  function setLive(state, text) { if (live) { live.dataset.state = state; $(".live-text", live).textContent = text; } }
  function connect() {
    if (!window.EventSource || !live) return;
    source = new EventSource("/events");
    window.hitlLive = source;
    source.addEventListener("hello", function () {
      setLive("live", "live");
      if (failed) { failed = false; refreshSoon(); }  // events may have been missed while away
    });
    source.addEventListener("signed_out", function () {  // this session was ended (signed out elsewhere)
      source.close();
      location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
    });
    source.addEventListener("hitl", function (msg) {
      var ev; try { ev = JSON.parse(msg.data); } catch (e) { return; }
      if (concerns(ev)) refreshSoon();
      else if (scope[0] !== "bulk" && (ev.type || "").indexOf("checkpoint.") === 0) refreshSoon();  // the inbox count
    });
    source.onerror = function () {
      failed = true;
      setLive("offline", "reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        fetch("/api/session", { credentials: "same-origin" }).then(function (r) {
          if (r.status === 401) location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
          else setTimeout(connect, 2000);
        }).catch(function () { setTimeout(connect, 2000); });
      }
    };
  }

  // ------------------------------------------------------------------ decisions
  var DONE = { approve: "Approved — the workflow goes on with this output.",
    revise: "Sent back for revision — the next round appears here when the node has run again.",
    edit: "Edited output sent — the workflow goes on with it.",
    abort: "Aborted — the workflow takes its abort branch." };
  var FORM_REFUSED = { missing_inputs: "every input of the form needs a value.",
    unknown_action: "the form has no such action.", unknown_input: "the form has no such input.",
    action_required: "pick one of the form's actions.", no_editable_input: "the form has no input for the edited text.",
    unsupported_input: "this form has an input dify-hitl cannot fill (a type it does not know): decide it in Dify.",
    invalid_input: "a value does not fit its input." };
  function showResult(color, text, detail) {
    var box = $("#result");
    if (!box) return;
    box.hidden = false;
    box.className = "result " + color;
    box.textContent = text;
    if (detail) { var d = document.createElement("span"); d.className = "small"; d.textContent = detail; box.appendChild(d); }
    box.scrollIntoView({ block: "nearest" });
  }
  function fieldError(form, text, field) {
    var p = $("[data-error]", form);
    if (p) { p.textContent = text || ""; p.hidden = !text; }
    $$(".invalid", form).forEach(function (el) { el.classList.remove("invalid"); });
    if (field && text) { field.classList.add("invalid"); field.focus(); }
    return !text;
  }
  function validate(form) {
    var action = form.elements.action.value, f;
    if (action === "revise" && form.hasAttribute("data-change")) {
      f = form.elements.proposed_output;
      var changed = f.value.trim() !== f.defaultValue.trim() || form.elements.feedback.value.trim();
      return fieldError(form, changed ? "" : "Change the output (or say what should change) before you send it.", f);
    }
    if (action === "revise") { f = form.elements.feedback; return fieldError(form, f.value.trim() ? "" : "Write the feedback for the next round.", f); }
    if (action === "abort") { f = form.elements.reason; return fieldError(form, f.value.trim() ? "" : "Say why you abort.", f); }
    if (action === "edit" && form.elements.output.dataset.json === "1") {
      f = form.elements.output;
      try { JSON.parse(f.value); } catch (e) { return fieldError(form, "Not valid JSON: " + e.message, f); }
    }
    return fieldError(form, "");
  }
  function describe(status, body, action) {
    var err = (body && body.error) || {};
    if (status === 200 && body.status === "voted") {
      var p = body.progress || {};
      return ["green", "Your " + (body.action || action) + " vote counted: " + (p.progress || "recorded") + ".",
        "The checkpoint stays open until " + (p.required || "enough") + " approve; the workflow waits until then."];
    }
    if (status === 200) { var r = body.resolution || {}; return ["green", DONE[action] || "Applied.", "Round " + r.round + ", decided by " + r.decided_by + "."]; }
    if (status === 202) return ["yellow", "Queued.", body.message];
    if (status === 409 && err.code === "already_voted") return ["red", "Refused: you have voted on this checkpoint already.", "One vote per reviewer (409 already_voted)."];
    if (status === 422 && err.code === "self_approval") return ["red", "Refused: you started this run, so you may not approve it.", (err.message || "") + " (422 self_approval)"];
    if (status === 422 && err.code === "quorum_edit") return ["red", "Refused: an edit cannot be voted on — revise with the change instead.", (err.message || "") + " (422 quorum_edit)"];
    if (status === 409) {
      var w = err.winning_decision || {};
      return ["red", "Someone else decided first: " + (w.action || "?") + " by " + (w.decided_by || "?") + (w.channel ? " via " + w.channel : "") + ".",
        "Your " + action + " was not applied (409 already_resolved)."];
    }
    if (status === 401) return ["red", "Your session has ended: sign in again.", ""];
    if (status === 422 && err.code === "not_assignee") return ["red", "Refused: you are not an assignee of this checkpoint.", err.message + " (422 not_assignee)"];
    if (status === 422 && FORM_REFUSED[err.code]) return ["red", "Refused: " + FORM_REFUSED[err.code], (err.message || "") + " (422 " + err.code + ")"];
    return ["red", "Refused: " + (err.message || ("HTTP " + status)), err.code ? "(" + status + " " + err.code + ")" : ""];
  }
  document.addEventListener("submit", function (e) {
    var form = e.target;
    if (!form.matches("[data-decision]") || form.dataset.kind === "dify-form") return;  // a form: console-forms.js
    e.preventDefault();
    var button = $("button[type=submit]", form);
    if (button.disabled) { showResult("red", "Not sent: " + (button.title || "you may not decide this checkpoint."), ""); return; }
    if (form.hasAttribute("data-step")) { if (!stepOutput(form)) return; }
    else if (!validate(form)) return;
    var data = { action: form.elements.action.value };
    ["feedback", "output", "reason", "proposed_output"].forEach(function (k) { if (form.elements[k]) data[k] = form.elements[k].value; });
    if (form.hasAttribute("data-step")) data.output = form.dataset.output;
    form.dataset.key = form.dataset.key || ("console-" + (crypto.randomUUID ? crypto.randomUUID() : String(Math.random()).slice(2)));
    data.idempotency_key = form.dataset.key;
    button.disabled = true;
    fetch(form.getAttribute("action"), { method: "POST", credentials: "same-origin", body: JSON.stringify(data),
      headers: { "Content-Type": "application/json", Accept: "application/json", "X-CSRF-Token": csrf } })
      .then(function (r) { delete form.dataset.key; return r.json().catch(function () { return {}; }).then(function (b) { return [r.status, b]; }); })
      .then(function (res) {
        var region = form.closest("[data-keep-typed]");
        if (region && (res[0] === 200 || res[0] === 202)) region.dataset.sentHere = "1";  // our own decision
        var d = describe(res[0], res[1], data.action);
        if (res[0] === 422 && res[1].error && res[1].error.code === "invalid_json") fieldError(form, res[1].error.message, form.elements.output);
        showResult(d[0], d[1], d[2]);
        refreshSoon();
      })
      .catch(function () { showResult("red", "No answer from the console; check the connection and send again.", ""); })
      .then(function () { var r = form.closest("[data-keep-typed]"); if (!r || r.dataset.status === "open") button.disabled = false; });
  });

  function stepOutput(form) {  // the step's variables, edited ones replaced: one JSON object for the edit
    var out = {}, bad = null;
    $$("[data-step-var]", form).forEach(function (f) {
      var node = f.dataset.stepNode, name = f.dataset.stepVar, value = f.value;
      if (f.dataset.json === "1") { try { value = JSON.parse(f.value); } catch (e) { bad = bad || [f, node + "." + name + " is not valid JSON: " + e.message]; } }
      (out[node] = out[node] || {})[name] = value;
    });
    if (bad) return fieldError(form, bad[1], bad[0]);
    form.dataset.output = JSON.stringify(out);
    return fieldError(form, "");
  }

  // ------------------------------------------------------------------ shortcuts and small things
  function openAction(name) {
    var d = $('details[data-action="' + name + '"]');
    if (!d) return;
    $$("details[data-action]").forEach(function (o) { if (o !== d) o.open = false; });
    d.open = true;
    var field = $("textarea, input:not([type=hidden])", d) || $("button[type=submit]", d);
    if (field) field.focus();
    d.scrollIntoView({ block: "nearest" });
  }
  var lastKey = "", lastAt = 0, rowIndex = -1;
  function rows() { return $$("[data-rows] tbody tr[data-href]"); }
  function select(i) {
    var list = rows();
    if (!list.length) return;
    rowIndex = Math.max(0, Math.min(list.length - 1, i));
    list.forEach(function (r, k) { r.classList.toggle("selected", k === rowIndex); });
    list[rowIndex].scrollIntoView({ block: "nearest" });
  }
  document.addEventListener("keydown", function (e) {
    var t = e.target, typing = t.closest && t.closest("input, textarea, select, [contenteditable]");
    var help = $("#help");
    if (e.key === "Escape") {
      if (help && !help.hidden) help.hidden = true;
      else { $$("details[data-action][open]").forEach(function (d) { d.open = false; }); if (typing) t.blur(); }
      return;
    }
    if (typing && e.key === "Enter" && !e.ctrlKey && !e.metaKey && t.matches("input[data-form-input]")) {
      e.preventDefault();  // no implicit submit with the first action: an action is always picked
      return;
    }
    if (typing && e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
      var form = t.closest("form[data-decision]");
      if (form) { e.preventDefault(); form.requestSubmit($("[data-form-action].picked", form) || undefined); }
      return;
    }
    if (typing || e.ctrlKey || e.metaKey || e.altKey) return;
    var key = e.key, prev = Date.now() - lastAt < 1000 ? lastKey : "";
    lastKey = key;
    lastAt = Date.now();
    if (prev === "g" && key === "i") { location.href = "/"; return; }
    if (prev === "g" && key === "r") { location.href = "/runs"; return; }
    if (hooks.key.some(function (f) { return f(key); })) { e.preventDefault(); return; }
    var actions = { a: "approve", r: "revise", e: "edit", x: "abort" };
    if (actions[key] && $("[data-decide]")) { e.preventDefault(); openAction(actions[key]); return; }
    if (key === "?") { if (help) help.hidden = !help.hidden; return; }
    if (key === "/" && $("[data-search]")) { e.preventDefault(); $("[data-search]").focus(); return; }
    if (rowIndex >= 0 && rows()[rowIndex] && hooks.rowKey.some(function (f) { return f(key, rows()[rowIndex]); })) {
      e.preventDefault();
      return;
    }
    if (key === "j") select(rowIndex + 1);
    else if (key === "k") select(rowIndex - 1);
    else if (key === "Enter" && rowIndex >= 0 && rows()[rowIndex]) location.href = rows()[rowIndex].dataset.href;
  });
  document.addEventListener("click", function (e) {
    var t = e.target;
    if (t.closest("[data-close-help]")) { $("#help").hidden = true; return; }
    var tree = t.closest("[data-tree]");
    if (tree) { var open = tree.dataset.tree === "open"; $$(".jt details").forEach(function (d) { d.open = open; }); return; }
    if (t.closest(".ff[data-field]")) return;  // a field of a rendered Dify form: console-forms.js
    var summary = t.closest("details[data-action] > summary");
    if (summary) {  // one decision panel at a time (also where <details name> is not supported)
      var mine = summary.parentElement;
      $$("details[data-action]").forEach(function (o) { if (o !== mine) o.open = false; });
      return;
    }
    var row = t.closest("tr[data-href]");
    if (row && !t.closest("a, button, input, select, label")) location.href = row.dataset.href;
  });
  document.addEventListener("change", function (e) {
    var form = e.target.closest && e.target.closest("form[data-autosubmit]");
    if (form) form.submit();
  });
  document.addEventListener("DOMContentLoaded", function () { tick(); localTimes(); hooks.ready.forEach(function (f) { f(); }); connect(); });
  // What console-forms.js (Dify forms) and console-policies.js (claims, the inbox's selection) build on.
  window.hitlConsole = { $: $, $$: $$, csrf: csrf, showResult: showResult, refreshSoon: refreshSoon, hooks: hooks,
    fieldError: fieldError, describe: describe };
})();
