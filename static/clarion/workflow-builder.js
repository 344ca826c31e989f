/* The workflow builder's page (notifications/admin/builder/): add, move, duplicate and remove
 * steps, condition rows and groups, and data fields. The server renders every form; this script
 * only clones its <template>s and renumbers the names ("steps-2-when-items-0-path") from where
 * each control sits: a [data-list] adds its name, a [data-item] its index among its siblings,
 * a [data-part] its name, and the control its own data-name. No dependencies. */
(function () {
  "use strict";

  function itemsOf(list) {
    return Array.prototype.filter.call(list.children, function (el) {
      return el.hasAttribute("data-item");
    });
  }

  function nameOf(control, form) {
    var parts = [control.getAttribute("data-name")];
    for (var el = control.parentElement; el && el !== form; el = el.parentElement) {
      if (el.hasAttribute("data-item")) parts.unshift(String(itemsOf(el.parentElement).indexOf(el)));
      if (el.hasAttribute("data-list")) parts.unshift(el.getAttribute("data-list"));
      if (el.hasAttribute("data-part")) parts.unshift(el.getAttribute("data-part"));
    }
    return parts.join("-");
  }

  function renumber(form) {
    form.querySelectorAll("[data-name]").forEach(function (control) {
      control.name = nameOf(control, form);
    });
    var refs = document.getElementById("wb-channel-refs");
    if (refs) {
      refs.innerHTML = "";
      form.querySelectorAll("li.wb-step.wb-channel").forEach(function (step) {
        var ref = step.querySelector("[data-name=ref]");
        if (ref && ref.value) {
          var option = document.createElement("option");
          option.value = ref.value;
          refs.appendChild(option);
        }
      });
    }
  }

  function clone(selector) {
    var template = document.querySelector(selector);
    return template.content.firstElementChild.cloneNode(true);
  }

  function uniqueRef(form, base) {
    var taken = {};
    form.querySelectorAll("[data-name=ref]").forEach(function (input) { taken[input.value] = true; });
    if (!taken[base]) return base;
    for (var n = 2; ; n++) {
      if (!taken[base + "_" + n]) return base + "_" + n;
    }
  }

  function copyValues(from, to) {
    var a = from.querySelectorAll("input, select, textarea");
    var b = to.querySelectorAll("input, select, textarea");
    for (var i = 0; i < a.length; i++) {
      if (a[i].type === "checkbox" || a[i].type === "radio") b[i].checked = a[i].checked;
      else b[i].value = a[i].value;
    }
  }

  function focusFirst(el) {
    var target = el.querySelector("input:not([type=hidden]), select, textarea");
    if (target) target.focus();
  }

  function act(button, form) {
    var action = button.getAttribute("data-action");
    var item = button.closest("[data-item]");
    var step = button.closest("li.wb-step");
    if (action === "add-step") {
      var block = button.closest(".wb-steps-block");
      var type = block.querySelector(":scope > .wb-add [data-add-type]").value;
      var card = clone('template[data-new-step="' + type + '"]');
      card.querySelector("[data-name=ref]").value = uniqueRef(form, type);
      block.querySelector(":scope > ol[data-list=steps]").appendChild(card);
      renumber(form);
      focusFirst(card);
      return;
    }
    if (action === "add-branch") {
      var branch = clone('template[data-new="branch"]');
      button.closest(".wb-branches-block").querySelector(
        ":scope > .wb-branches > ol[data-list=branches]").appendChild(branch);
      renumber(form);
      focusFirst(branch);
      return;
    }
    if (action === "add-field") {
      var row = clone('template[data-new="field"]');
      button.closest(".wb-list-block").querySelector("ol[data-list=fields]").appendChild(row);
      renumber(form);
      focusFirst(row);
      return;
    }
    if (action === "add-condition" || action === "add-group") {
      var group = button.closest(".wb-cond-group, .wb-cond-root");
      var mode = group.querySelector("[data-name=mode]");
      if (!mode.value) mode.value = "all";
      var node = clone(action === "add-group" ? 'template[data-new="group"]' : 'template[data-new="condition"]');
      group.querySelector(":scope > ol[data-list=items]").appendChild(node);
      var details = button.closest("details");
      if (details) details.open = true;
      renumber(form);
      focusFirst(node);
      return;
    }
    var target = action === "remove" ? item : step;
    if (!target) return;
    if (action === "remove") {
      var next = target.nextElementSibling || target.previousElementSibling;
      target.remove();
      renumber(form);
      if (next) focusFirst(next);
      return;
    }
    if (action === "up" && target.previousElementSibling) {
      target.parentElement.insertBefore(target, target.previousElementSibling);
    } else if (action === "down" && target.nextElementSibling) {
      target.parentElement.insertBefore(target.nextElementSibling, target);
    } else if (action === "duplicate") {
      var copy = target.cloneNode(true);
      copyValues(target, copy);
      var ref = copy.querySelector("[data-name=ref]");
      ref.value = uniqueRef(form, ref.value || target.getAttribute("data-type"));
      copy.querySelectorAll(".wb-templates").forEach(function (el) { el.remove(); });
      target.parentElement.insertBefore(copy, target.nextElementSibling);
      renumber(form);
      focusFirst(copy);
      return;
    }
    renumber(form);
    button.focus();
  }

  var redrawTimer = null;

  /* Ask the server to draw the flow of the form as it stands (the same conversion as a save). */
  function redraw(form) {
    var target = document.getElementById("wb-diagram");
    var url = form.getAttribute("data-diagram-url");
    if (!target || !url) return;
    clearTimeout(redrawTimer);
    redrawTimer = setTimeout(function () {
      renumber(form);
      fetch(url, { method: "POST", body: new FormData(form), credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) { if (html !== null) target.innerHTML = html; })
        .catch(function () {});
    }, 300);
  }

  function start() {
    var form = document.getElementById("wb-form");
    if (!form) return;
    form.addEventListener("input", function () { redraw(form); });
    form.addEventListener("change", function () { redraw(form); });
    form.addEventListener("click", function (event) {
      var button = event.target.closest("button[data-action]");
      if (!button || !form.contains(button)) return;
      event.preventDefault();
      act(button, form);
      redraw(form);
    });
    form.addEventListener("change", function (event) {
      if (event.target.getAttribute("data-name") === "ref") renumber(form);
    });
    form.addEventListener("submit", function () { renumber(form); });
    renumber(form);
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
