(function () {
  "use strict";
  // The gallery, one page of groups at a time (without the script every group shows, and images
  // past the first page load as they are scrolled to).
  function pageGallery() {
    var pager = document.getElementById("gallery-pager");
    if (!pager) { return; }
    var groups = Array.prototype.slice.call(document.querySelectorAll("#gallery .gitem[data-page]"));
    var pages = 0, current = 0;
    groups.forEach(function (g) { pages = Math.max(pages, Number(g.dataset.page) + 1); });
    var label = document.getElementById("gallery-page");
    function show(n) {
      current = Math.max(0, Math.min(pages - 1, n));
      groups.forEach(function (g) { g.hidden = Number(g.dataset.page) !== current; });
      label.textContent = "page " + (current + 1) + " of " + pages;
    }
    pager.hidden = false;
    pager.addEventListener("click", function (e) {
      var step = e.target && e.target.dataset ? Number(e.target.dataset.step) : 0;
      if (step) { show(current + step); }
    });
    window.addEventListener("hashchange", function () {  // "All pairs in the gallery" opens the right page
      var target = document.getElementById(location.hash.slice(1));
      if (target && target.dataset && target.dataset.page !== undefined) {
        show(Number(target.dataset.page)); target.scrollIntoView();
      }
    });
    window.dsauditGalleryPage = show;
    show(0);
  }
  var list = document.getElementById("findings-list");
  var form = document.getElementById("finding-controls");
  window.addEventListener("beforeprint", function () {
    var all = document.querySelectorAll("details");
    for (var i = 0; i < all.length; i++) { all[i].open = true; }
  });
  pageGallery();
  if (!list || !form) { return; }
  var items = Array.prototype.slice.call(list.querySelectorAll("article.finding"));
  var sevBoxes = Array.prototype.slice.call(form.querySelectorAll("input[name=sev]"));
  var check = document.getElementById("f-check");
  var text = document.getElementById("f-text");
  var sort = document.getElementById("f-sort");
  var baselined = document.getElementById("f-baselined");
  var count = document.getElementById("f-count");
  var haystack = items.map(function (el) { return el.textContent.toLowerCase(); });

  function compare(mode) {
    return function (a, b) {
      var ra = Number(a.dataset.rank), rb = Number(b.dataset.rank);
      var ca = a.dataset.check, cb = b.dataset.check;
      var pa = a.dataset.path || "", pb = b.dataset.path || "";
      var oa = Number(a.dataset.order), ob = Number(b.dataset.order);
      var r;
      if (mode === "check") { r = ca < cb ? -1 : ca > cb ? 1 : rb - ra; }
      else if (mode === "path") { r = pa < pb ? -1 : pa > pb ? 1 : rb - ra; }
      else { r = rb - ra || (ca < cb ? -1 : ca > cb ? 1 : 0); }
      return r || oa - ob;
    };
  }

  function apply() {
    var wanted = {};
    sevBoxes.forEach(function (box) { wanted[box.value] = box.checked; });
    var q = text.value.trim().toLowerCase();
    var shown = 0;
    items.forEach(function (el, i) {
      var ok = wanted[el.dataset.sev] !== false &&
        (!check.value || el.dataset.check === check.value) &&
        (baselined.checked || el.dataset.baselined !== "1") &&
        (!q || haystack[i].indexOf(q) !== -1);
      el.hidden = !ok;
      if (ok) { shown++; }
    });
    count.textContent = "showing " + shown + " of " + items.length;
  }

  function reorder() {
    var sorted = items.slice().sort(compare(sort.value));
    var frag = document.createDocumentFragment();
    sorted.forEach(function (el) { frag.appendChild(el); });
    list.appendChild(frag);
  }

  form.hidden = false;
  form.addEventListener("submit", function (e) { e.preventDefault(); });
  form.addEventListener("input", apply);
  form.addEventListener("change", function (e) { if (e.target === sort) { reorder(); } apply(); });
  apply();
})();
