(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  var byId = {};
  data.papers.forEach(function (p) { p.haystack = p.text.toLowerCase(); byId[p.id] = p; });
  var controls = {
    q: document.getElementById("f-q"),
    category: document.getElementById("f-category"),
    contribution: document.getElementById("f-contribution"),
    dataset: document.getElementById("f-dataset"),
    review: document.getElementById("f-review")
  };
  var form = document.getElementById("filters");
  var status = document.getElementById("shown");
  var empty = document.getElementById("no-match");
  var cards = Array.prototype.slice.call(document.querySelectorAll("article.card"));
  var bars = Array.prototype.slice.call(document.querySelectorAll("button.bar"));

  function matches(p) {
    var needle = controls.q.value.trim().toLowerCase();
    return (!controls.category.value || p.category === controls.category.value) &&
      (!controls.contribution.value || p.contribution === controls.contribution.value) &&
      (!controls.dataset.value || p.datasets.indexOf(controls.dataset.value) >= 0) &&
      (!controls.review.value || (controls.review.value === "yes") === p.review) &&
      (!needle || p.haystack.indexOf(needle) >= 0);
  }

  function apply() {
    var shown = 0;
    cards.forEach(function (card) {
      var ok = matches(byId[card.getAttribute("data-id")]);
      card.hidden = !ok;
      if (ok) { shown += 1; }
    });
    status.textContent = "Showing " + shown + " of " + cards.length + " papers";
    empty.hidden = shown !== 0;
    bars.forEach(function (bar) {
      var ctrl = controls[bar.getAttribute("data-filter")];
      bar.setAttribute("aria-pressed", String(ctrl.value === bar.getAttribute("data-value")));
    });
  }

  form.addEventListener("input", apply);
  form.addEventListener("change", apply);
  form.addEventListener("submit", function (e) { e.preventDefault(); });
  document.getElementById("f-clear").addEventListener("click", function () {
    Object.keys(controls).forEach(function (k) { controls[k].value = ""; });
    apply();
  });
  bars.forEach(function (bar) {
    bar.addEventListener("click", function () {
      var ctrl = controls[bar.getAttribute("data-filter")];
      var value = bar.getAttribute("data-value");
      ctrl.value = ctrl.value === value ? "" : value;
      apply();
    });
  });

  function showClaim(button) {
    var card = button.closest("article.card");
    var wasOn = button.getAttribute("aria-pressed") === "true";
    card.querySelectorAll("button.claim").forEach(function (b) { b.setAttribute("aria-pressed", "false"); });
    card.querySelectorAll(".ev.on").forEach(function (s) { s.classList.remove("on"); });
    if (wasOn) { return; }
    button.setAttribute("aria-pressed", "true");
    var spans = card.querySelectorAll('.ev[data-claims~="' + button.getAttribute("data-claim") + '"]');
    spans.forEach(function (s) { s.classList.add("on"); });
    if (spans.length) {
      var details = spans[0].closest("details");
      if (details) { details.open = true; }
      spans[0].scrollIntoView({ block: "nearest" });
    }
  }
  document.addEventListener("click", function (e) {
    var button = e.target.closest ? e.target.closest("button.claim") : null;
    if (button) { showClaim(button); }
  });
  apply();

  // report.html#selftest&category=..&dataset=..&q=..&claim=ID:N drives the page as a user
  // would (real controls, real clicks) and writes what it saw, as JSON, into a pre element with the id "selftest".
  function visible() {
    return cards.filter(function (c) { return !c.hidden; }).map(function (c) { return c.getAttribute("data-id"); });
  }
  function fire(ctrl) {
    ctrl.dispatchEvent(new Event(ctrl.tagName === "SELECT" ? "change" : "input", { bubbles: true }));
  }
  function selftest(params) {
    var out = { cards: cards.length, chart: { category: {}, contribution: {} }, filters: {}, bars: {}, claims: [] };
    bars.forEach(function (b) {
      out.chart[b.getAttribute("data-filter")][b.getAttribute("data-value")] =
        Number(b.querySelector(".bar-count").textContent);
    });
    Object.keys(controls).forEach(function (k) {
      var ctrl = controls[k];
      var wanted = params.get(k);
      if (wanted === null) { wanted = ctrl.tagName === "SELECT" && ctrl.options.length > 1 ? ctrl.options[1].value : ""; }
      ctrl.value = wanted;
      fire(ctrl);
      out.filters[k] = { asked: wanted, value: ctrl.value, control: ctrl.tagName.toLowerCase(), visible: visible(), status: status.textContent };
      ctrl.value = "";
      fire(ctrl);
    });
    var bar = bars.filter(function (b) { return b.getAttribute("data-value") === params.get("category"); })[0] || bars[0];
    if (bar) {
      bar.click();
      out.bars = { value: bar.getAttribute("data-value"), pressed: bar.getAttribute("aria-pressed"), visible: visible() };
      bar.click();
      out.bars.after = visible().length;
    }
    params.getAll("claim").forEach(function (spec) {
      var cut = spec.lastIndexOf(":");
      var card = document.getElementById("p-" + spec.slice(0, cut));
      var button = card && card.querySelector('button.claim[data-claim="' + spec.slice(cut + 1) + '"]');
      if (!button) { out.claims.push({ spec: spec, error: "no such claim button" }); return; }
      button.focus();
      var style = getComputedStyle(button);
      button.click();
      var details = card.querySelector("details.abstract");
      out.claims.push({
        spec: spec,
        tag: button.tagName.toLowerCase(),
        focused: document.activeElement === button,
        outline: style.outlineStyle + " " + style.outlineWidth,
        pressed: button.getAttribute("aria-pressed"),
        highlighted: Array.prototype.map.call(card.querySelectorAll(".ev.on"), function (s) { return s.textContent; }).join(""),
        highlightedInAbstract: card.querySelectorAll("details.abstract .ev.on").length,
        detailsOpen: details ? details.open : null
      });
    });
    out.scripts = document.scripts.length;
    out.foreignElements = document.querySelectorAll("img, iframe, object, embed, link, base, meta[http-equiv=refresh]").length;
    out.pwned = window.__pwned === undefined ? null : String(window.__pwned);
    out.title = document.title;
    out.overflowX = document.documentElement.scrollWidth > document.documentElement.clientWidth;
    out.viewport = document.documentElement.clientWidth;
    return out;
  }
  if (location.hash.indexOf("#selftest") === 0) {
    var result;
    try {
      result = selftest(new URLSearchParams(location.hash.slice(1)));
    } catch (err) {
      result = { error: String(err && err.stack || err) };
    }
    var pre = document.createElement("pre");
    pre.id = "selftest";
    pre.textContent = JSON.stringify(result);
    document.body.appendChild(pre);
  }
})();
