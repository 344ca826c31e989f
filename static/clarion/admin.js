/* Accessible names the stock admin's widgets leave out (Django 5.2), set once the page has
   built its widgets (loaded on every admin page by templates/admin/base_site.html):
   - the filter boxes of filter_horizontal / filter_vertical (SelectFilter2.js) put an
     aria-label on a bare <span>, which ARIA ignores: it becomes an image with that name;
   - a date-and-time field (AdminSplitDateTime) shows "Date: [ ] Time: [ ]" with no <label>
     for either box: each is named after its field and its part ("Last login: Date");
   - an autocomplete field (select2) names its box by the chosen value only, empty when none
     is chosen: the field's label comes first;
   - a tabular inline's cells (the Delete? box…) and a changelist's editable cells
     (list_editable) have no <label>: each is named after its column's heading. */
(function () {
  "use strict";

  function nameTooltips() {
    document.querySelectorAll(".help-tooltip[aria-label]:not([role])").forEach(function (span) {
      span.setAttribute("role", "img");
    });
  }

  function nameSplitDateTimes() {
    document.querySelectorAll("p.datetime").forEach(function (box) {
      var row = box.closest(".form-row, .fieldBox, td");
      var fieldLabel = row && row.querySelector("label");
      var field = fieldLabel ? fieldLabel.textContent.trim().replace(/:$/, "") : "";
      box.querySelectorAll("input").forEach(function (input) {
        if (input.labels && input.labels.length) return;
        if (input.hasAttribute("aria-label") || input.type === "hidden") return;
        var part = "";
        for (var node = input.previousSibling; node; node = node.previousSibling) {
          if (node.nodeType === Node.TEXT_NODE && node.textContent.trim()) {
            part = node.textContent.trim().replace(/:$/, "");
            break;
          }
          if (node.nodeName === "BR") break;
        }
        input.setAttribute("aria-label", [field, part].filter(Boolean).join(": "));
      });
    });
  }

  function nameAutocompletes() {
    document.querySelectorAll("select.admin-autocomplete[id]").forEach(function (select) {
      var label = document.querySelector('label[for="' + select.id + '"]');
      var container = document.getElementById("select2-" + select.id + "-container");
      if (!label || !container) return;
      label.id = label.id || select.id + "_label";
      container.setAttribute("aria-labelledby", label.id);
      var box = container.closest("[role=combobox]");
      if (box) box.setAttribute("aria-labelledby", label.id + " " + container.id);
    });
  }

  function nameTabularCells() {
    document.querySelectorAll(".tabular table, table#result_list").forEach(function (table) {
      var headings = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
        return th.textContent.trim();
      });
      table.querySelectorAll("tbody tr").forEach(function (row) {
        Array.prototype.forEach.call(row.children, function (cell, index) {
          cell.querySelectorAll("input:not([type=hidden]), select, textarea").forEach(function (control) {
            if ((control.labels && control.labels.length) || control.hasAttribute("aria-label")) return;
            var heading = (headings[index] || "").replace(/\?$/, "");
            if (heading) control.setAttribute("aria-label", heading);
          });
        });
      });
    });
  }

  window.addEventListener("load", function () {
    // After the admin's own load handlers (SelectFilter2 builds its boxes on load).
    setTimeout(function () {
      nameTooltips(); nameSplitDateTimes(); nameAutocompletes(); nameTabularCells();
    }, 0);
  });
})();
