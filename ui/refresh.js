// Refreshes the page's live part in place: fetch it (the same URL with
// fragment=live), parse it and swap the #live element when it changed. Nothing else is touched, so
// the scroll position stays and nothing flickers. Pauses while the tab is
// hidden. Without this script the page is a static view.
(function () {
  "use strict";
  var live = document.getElementById("live");
  var stamp = document.getElementById("updated");
  if (!live || !stamp || !window.fetch || !window.DOMParser) {
    return;
  }
  var every = Number(document.body.getAttribute("data-refresh")) || 10000;
  var count = 0;
  function later() {
    window.setTimeout(tick, every);
  }
  function tick() {
    if (document.hidden) {
      later();
      return;
    }
    var url = new URL(window.location.href);
    url.hash = "";
    url.searchParams.set("fragment", "live");
    window.fetch(url.toString(), { cache: "no-store", credentials: "same-origin" })
      .then(function (r) {
        if (!r.ok && r.status !== 404) {
          throw new Error("HTTP " + r.status);
        }
        return r.text();
      })
      .then(function (html) {
        var next = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (next && next.innerHTML !== live.innerHTML) {
          live.replaceWith(next);
          live = next;
        }
        count++;
        document.documentElement.setAttribute("data-refreshed", String(count));
        stamp.textContent = "live · updated " + new Date().toISOString().slice(11, 19) + " UTC";
        stamp.className = "ok";
      })
      .catch(function (e) {
        stamp.textContent = "refresh failed (" + e.message + "); retrying";
        stamp.className = "stale";
      })
      .then(later);
  }
  stamp.textContent = "live";
  later();
})();
