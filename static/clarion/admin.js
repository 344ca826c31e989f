/* Accessible names the stock admin's widgets leave out (Django 5.2), set once the page has
   built its widgets (loaded on every admin page by templates/admin/base_site.html):
   - the filter boxes of filter_horizontal / filter_vertical (SelectFilter2.js) put an
     aria-label on a bare <span>, which ARIA ignores: it becomes an image with that name;
   - a date-and-time field (AdminSplitDateTime) shows "Date: [ ] Time: [ ]" with no <label>
     for either box: each is named after its field and its part ("Last login: Date"). */
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

  window.addEventListener("load", function () {
    // After the admin's own load handlers (SelectFilter2 builds its boxes on load).
    setTimeout(function () { nameTooltips(); nameSplitDateTimes(); }, 0);
  });
})();
