/* The template editor's live preview: renders the fields as you type (through the admin's
   preview endpoint), lists errors and unknown variables with their lines, inserts variables,
   switches the email preview between desktop and mobile widths, and sends a test.
   Vanilla JS, no build step. */
(function () {
  "use strict";

  function ready(fn) {
    if (document.readyState !== "loading") fn(); else document.addEventListener("DOMContentLoaded", fn);
  }

  ready(function () {
    var panel = document.getElementById("clarion-preview");
    if (!panel) return;
    var form = panel.closest("form");
    var fields = Array.prototype.slice.call(form.querySelectorAll("textarea.clarion-liquid"));
    var problems = document.getElementById("clarion-problems");
    var tenant = document.getElementById("clarion-preview-tenant");
    var lastFocused = fields[0] || null;
    var timer = null;
    var sequence = 0;

    // A text of the page's language (the panel's data-t-* attributes, translated by the
    // server), with {name} placeholders filled from `values`.
    function t(name, fallback, values) {
      var text = panel.dataset[name] || fallback;
      return text.replace(/\{(\w+)\}/g, function (all, key) {
        return values && key in values ? String(values[key]) : all;
      });
    }

    function csrf() {
      var input = form.querySelector("input[name=csrfmiddlewaretoken]");
      return input ? input.value : "";
    }

    function locale() {
      var input = form.querySelector("[name=locale]");
      return (input && input.value) || panel.dataset.locale || "";
    }

    function payload() {
      var data = new FormData();
      data.append("csrfmiddlewaretoken", csrf());
      data.append("step", panel.dataset.step);
      data.append("channel", panel.dataset.channel || "");
      data.append("locale", locale());
      data.append("preview_tenant", tenant ? tenant.value : "");
      fields.forEach(function (field) { data.append(field.dataset.field, field.value); });
      return data;
    }

    function setText(name, value) {
      panel.querySelectorAll('[data-out="' + name + '"]').forEach(function (el) {
        el.textContent = value || "";
      });
    }

    function showProblems(result) {
      problems.textContent = "";
      fields.forEach(function (field) { field.classList.remove("clarion-has-error"); });
      var list = (result.errors || []).map(function (p) { return [p, "error"]; })
        .concat((result.warnings || []).map(function (p) { return [p, "warning"]; }));
      list.forEach(function (pair) {
        var problem = pair[0], kind = pair[1];
        var item = document.createElement("li");
        item.className = "clarion-problem clarion-" + kind;
        item.dataset.field = problem.field || "";
        if (problem.line) item.dataset.line = problem.line;
        var fieldName = problem.field || t("tTemplate", "template");
        var where = problem.line ? t("tLine", "{field}, line {line}", {field: fieldName, line: problem.line}) : fieldName;
        item.textContent = kind === "error"
          ? t("tError", "Error in {where}: {message}", {where: where, message: problem.message})
          : t("tWarning", "Warning in {where}: {message}", {where: where, message: problem.message});
        item.addEventListener("click", function () { goTo(problem.field, problem.line); });
        problems.appendChild(item);
        if (kind === "error") {
          var field = fieldNamed(problem.field);
          if (field) field.classList.add("clarion-has-error");
        }
      });
      panel.classList.toggle("clarion-invalid", (result.errors || []).length > 0);
    }

    function fieldNamed(name) {
      for (var i = 0; i < fields.length; i++) if (fields[i].dataset.field === name) return fields[i];
      return null;
    }

    function goTo(name, line) {
      var field = fieldNamed(name);
      if (!field) return;
      var start = 0;
      if (line) {
        var lines = field.value.split("\n");
        for (var i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
      }
      field.focus();
      field.setSelectionRange(start, start);
    }

    function showRendered(result) {
      var rendered = result.rendered || {};
      var channel = panel.dataset.channel;
      if (channel === "email") {
        setText("subject", rendered.subject);
        setText("text", rendered.text);
        var frame = document.getElementById("clarion-email-frame");
        if (frame && !(result.errors || []).length) frame.srcdoc = rendered.html || "<p style='font-family:sans-serif;color:#666'>(no HTML part)</p>";
      } else if (channel === "in_app") {
        var inapp = document.getElementById("clarion-inapp-frame");
        if (inapp && !(result.errors || []).length) {
          inapp.srcdoc = "<body style='margin:0;font:14px/1.4 sans-serif;color:#18181b'>" + (rendered.body || "") + "</body>";
        }
        setText("action_url", rendered.action_url);
        var avatar = panel.querySelector("[data-out-src=avatar]");
        if (avatar) {
          avatar.hidden = !rendered.avatar;
          if (rendered.avatar) avatar.src = rendered.avatar;
        }
      } else {
        if (channel === "chat" && result.chat) {
          var chat = document.getElementById("clarion-chat-frame");
          if (chat) chat.srcdoc = result.chat.html;
          var kind = document.getElementById("clarion-chat-kind");
          if (kind) kind.textContent = {slack: t("tSlack", "As a Slack message (Block Kit)"),
            teams: t("tTeams", "As a Microsoft Teams card (Adaptive Card)")}[result.chat.kind] ||
            t("tChat", "As a chat message (text)");
        }
        Object.keys(rendered).forEach(function (name) { setText(name, rendered[name]); });
        var raw = panel.querySelector("[data-out-all]");
        if (raw) raw.textContent = JSON.stringify(rendered, null, 2);
      }
      var count = document.getElementById("clarion-sms-count");
      if (count && result.sms) {
        count.textContent = result.sms.segments === 1
          ? t("tSmsOne", "{characters} characters · 1 segment ({encoding})", result.sms)
          : t("tSms", "{characters} characters · {segments} segments ({encoding})", result.sms);
      }
    }

    function refresh() {
      var mine = ++sequence;
      panel.classList.add("clarion-loading");
      panel.setAttribute("aria-busy", "true");
      fetch(panel.dataset.previewUrl, { method: "POST", body: payload(), credentials: "same-origin" })
        .then(function (response) {
          return response.json().then(function (body) { return [response.ok, body]; });
        })
        .then(function (pair) {
          if (mine !== sequence) return;  // a newer preview is on its way
          var body = pair[1];
          if (!pair[0]) body = { errors: [{ field: "", message: body.detail || t("tPreviewFailed", "Preview failed.") }] };
          showProblems(body);
          showRendered(body);
        })
        .catch(function (err) {
          if (mine === sequence) showProblems({ errors: [{ field: "", message: t("tPreviewUnavailable", "Preview unavailable: {error}", {error: err}) }] });
        })
        .finally(function () {
          if (mine !== sequence) return;
          panel.classList.remove("clarion-loading");
          panel.removeAttribute("aria-busy");
        });
    }

    function schedule() {
      clearTimeout(timer);
      timer = setTimeout(refresh, 250);
    }

    fields.forEach(function (field) {
      field.addEventListener("input", schedule);
      field.addEventListener("focus", function () { lastFocused = field; });
    });
    if (tenant) tenant.addEventListener("change", refresh);
    var localeInput = form.querySelector("input[name=locale]");
    if (localeInput) localeInput.addEventListener("input", schedule);

    panel.querySelectorAll(".clarion-width").forEach(function (button) {
      button.addEventListener("click", function () {
        panel.querySelectorAll(".clarion-width").forEach(function (b) { b.classList.remove("is-active"); });
        button.classList.add("is-active");
        document.getElementById("clarion-email-frame").style.width = button.dataset.width + "px";
      });
    });

    panel.querySelectorAll(".clarion-insert").forEach(function (button) {
      button.addEventListener("click", function () {
        var field = lastFocused;
        if (!field) return;
        var text = "{{ " + button.dataset.insert + " }}";
        var start = field.selectionStart, end = field.selectionEnd;
        field.value = field.value.slice(0, start) + text + field.value.slice(end);
        field.focus();
        field.setSelectionRange(start + text.length, start + text.length);
        schedule();
      });
    });

    var send = document.getElementById("clarion-send-test");
    if (send) {
      send.addEventListener("click", function () {
        var out = document.getElementById("clarion-send-test-result");
        send.disabled = true;
        out.textContent = t("tSending", "Sending…");
        fetch(panel.dataset.sendTestUrl, { method: "POST", body: payload(), credentials: "same-origin" })
          .then(function (response) { return response.json(); })
          .then(function (body) { out.textContent = body.detail || body.error || t("tDone", "Done."); })
          .catch(function (err) { out.textContent = t("tSendFailed", "Test send failed: {error}", {error: err}); })
          .finally(function () { send.disabled = false; });
      });
    }

    refresh();
  });
})();
