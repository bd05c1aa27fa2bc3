// seawall live status page: draws the snapshot stream; no dependencies, no CDN.
"use strict";
(function () {
  var HISTORY_SECONDS = 120;   // sparkline length
  var RATE_SECONDS = 10;       // call rate and error % are averaged over this
  var history = {};            // breaker name -> [{t, calls, failures, rejected}]
  var retryHistory = {};
  var source = null;

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  // The one "nothing here" row a table body shows while its list is empty, spanning every column.
  function emptyRow(body, text, columns) {
    var row = el("tr", "empty");
    var cell = el("td", null, text);
    cell.colSpan = columns;
    row.appendChild(cell);
    body.appendChild(row);
  }
  function svgEl(tag) { return document.createElementNS("http://www.w3.org/2000/svg", tag); }
  function fmt(n, digits) { return (n === null || n === undefined || isNaN(n)) ? "–" : n.toFixed(digits); }
  function total(calls) { var s = 0; for (var k in calls) s += calls[k]; return s; }

  // Connection: connecting -> live; on error, a missed heartbeat or the server's "bye":
  // reconnecting (next attempt after a fully jittered, capped exponential delay) -> live again;
  // offline while the browser itself has no network. The page never reloads itself.
  var BACKOFF_FIRST_MS = 500, BACKOFF_CAP_MS = 15000, CONNECT_TIMEOUT_MS = 10000;
  var conn = { state: "connecting", attempt: 0, nextAt: 0, timer: null, watchdog: null, deadAfterMs: 5000 };

  function setConnection(state) {
    conn.state = state;
    var badge = document.getElementById("connection");
    var text = state, title = "the status stream is " + state;
    if (state === "reconnecting") {
      var wait = Math.max(0, Math.ceil((conn.nextAt - Date.now()) / 1000));
      text = conn.timer ? "reconnecting · next try in " + wait + " s" : "reconnecting · trying now";
      title = "attempt " + conn.attempt + "; retries back off up to " + BACKOFF_CAP_MS / 1000 + " s, with jitter";
      badge.setAttribute("data-next-attempt", String(conn.nextAt));
    } else if (state === "offline") {
      title = "the browser reports no network; the page reconnects when it is back";
    }
    badge.className = "badge " + state;
    badge.textContent = text;
    badge.title = title;
    badge.setAttribute("data-connection", state);
    document.body.setAttribute("data-connection", state);
  }

  // The server drops a stream whose reader acknowledges nothing for a while (an idle client's
  // kernel buffers would otherwise hide it for minutes): tell it, on frames, that this page reads.
  function acknowledge() {
    if (!conn.stream || Date.now() - conn.ackedAt < conn.ackEveryMs) return;
    conn.ackedAt = Date.now();
    fetch("api/resilience/stream/ack?stream=" + encodeURIComponent(conn.stream), { cache: "no-store" })
      .catch(function () { /* the stream's own watchdog notices a dead server */ });
  }

  function heard(es, timeoutMs) {
    if (es !== source) return;
    acknowledge();
    clearTimeout(conn.watchdog);
    conn.watchdog = setTimeout(function () {
      if (es !== source) return;
      console.warn("seawall: no frame for " + timeoutMs + " ms; the stream is dead");
      drop(false);
    }, timeoutMs);
  }

  function drop(planned) {
    clearTimeout(conn.watchdog);
    if (source) { source.close(); source = null; }
    if (navigator.onLine === false) { setConnection("offline"); return; }
    if (!planned) conn.attempt += 1;
    var bound = Math.min(BACKOFF_CAP_MS, BACKOFF_FIRST_MS * Math.pow(2, Math.max(0, conn.attempt - 1)));
    var delay = planned ? 250 * Math.random() : bound * Math.random();   // full jitter
    conn.nextAt = Date.now() + delay;
    clearTimeout(conn.timer);
    conn.timer = setTimeout(function () { conn.timer = null; connect(); }, delay);
    setConnection("reconnecting");
  }

  function connect() {
    clearTimeout(conn.timer);
    conn.timer = null;
    if (source) source.close();
    if (navigator.onLine === false) { source = null; setConnection("offline"); return; }
    var es = source = new EventSource("api/resilience/stream");
    setConnection(conn.state === "connecting" ? "connecting" : "reconnecting");
    heard(es, CONNECT_TIMEOUT_MS);
    es.addEventListener("hello", function (event) {
      try {
        var hello = JSON.parse(event.data);
        conn.deadAfterMs = 2000 * hello.heartbeat + 1000;
        conn.stream = hello.stream;
        conn.ackEveryMs = 1000 * (hello.ack_every || 5);
        conn.ackedAt = Date.now();
      } catch (err) { /* keep */ }
      heard(es, conn.deadAfterMs);
    });
    es.addEventListener("heartbeat", function () { heard(es, conn.deadAfterMs); });
    es.addEventListener("snapshot", function (event) {
      if (es !== source) return;
      heard(es, conn.deadAfterMs);
      conn.attempt = 0;
      setConnection("live");
      try { draw(JSON.parse(event.data)); } catch (err) { console.error("seawall: bad snapshot", err); }
    });
    // The server ends each stream after a while and on shutdown: reconnect at once (planned).
    es.addEventListener("bye", function () { if (es === source) drop(true); });
    es.addEventListener("error", function () { if (es === source) drop(false); });
  }

  setInterval(function () { if (conn.state === "reconnecting" && conn.timer) setConnection("reconnecting"); }, 500);
  window.addEventListener("offline", function () { if (source) drop(false); else setConnection("offline"); });
  window.addEventListener("online", function () { conn.attempt = 0; connect(); });

  function remember(store, name, t, sample) {
    var list = store[name] || (store[name] = []);
    sample.t = t;
    list.push(sample);
    while (list.length > 1 && t - list[0].t > HISTORY_SECONDS + RATE_SECONDS) list.shift();
    return list;
  }

  // Rate of `key` per second between the newest sample and the one ~`seconds` before it.
  function rate(list, key, seconds) {
    if (list.length < 2) return null;
    var last = list[list.length - 1], first = list[0];
    for (var i = list.length - 2; i >= 0; i--) { first = list[i]; if (last.t - list[i].t >= seconds) break; }
    var dt = last.t - first.t;
    return dt > 0 ? Math.max(0, last[key] - first[key]) / dt : null;
  }

  function sparkline(list) {
    var svg = svgEl("svg");
    svg.setAttribute("viewBox", "0 0 " + HISTORY_SECONDS + " 36");
    svg.setAttribute("preserveAspectRatio", "none");
    if (list.length < 2) return svg;
    var last = list[list.length - 1].t, calls = [], fails = [], max = 0.001;
    for (var i = 1; i < list.length; i++) {
      var dt = list[i].t - list[i - 1].t;
      if (dt <= 0 || last - list[i].t > HISTORY_SECONDS) continue;
      var x = HISTORY_SECONDS - (last - list[i].t);
      var c = Math.max(0, list[i].calls - list[i - 1].calls) / dt;
      var f = Math.max(0, list[i].failures - list[i - 1].failures) / dt;
      calls.push([x, c]); fails.push([x, f]); max = Math.max(max, c, f);
    }
    [["calls", calls], ["fails", fails]].forEach(function (pair) {
      var line = svgEl("polyline");
      line.setAttribute("class", pair[0]);
      line.setAttribute("points", pair[1].map(function (p) {
        return p[0].toFixed(1) + "," + (34 - 32 * p[1] / max).toFixed(1);
      }).join(" "));
      svg.appendChild(line);
    });
    return svg;
  }

  function stat(label, value) {
    var cell = el("div", null, label);
    cell.insertBefore(el("b", null, value), cell.firstChild);
    return cell;
  }

  function drawBreakers(breakers, t) {
    var box = document.getElementById("breakers");
    box.textContent = "";
    if (!breakers.length) { box.appendChild(el("p", "empty", "no breakers yet")); return; }
    breakers.forEach(function (b) {
      var calls = b.calls || {};
      var list = remember(history, b.name, t, {
        calls: (calls.success || 0) + (calls.failure || 0) + (calls.ignored || 0),
        failures: calls.failure || 0, successes: calls.success || 0, rejected: calls.rejected || 0
      });
      var callRate = rate(list, "calls", RATE_SECONDS);
      var failRate = rate(list, "failures", RATE_SECONDS);
      var okRate = rate(list, "successes", RATE_SECONDS);
      var errPct = (failRate !== null && okRate !== null && failRate + okRate > 0)
        ? 100 * failRate / (failRate + okRate)
        : (b.failure_rate !== null && b.failure_rate !== undefined ? 100 * b.failure_rate : null);
      var rejectRate = rate(list, "rejected", RATE_SECONDS);
      var tile = el("div", "tile");
      tile.setAttribute("data-breaker", b.name);
      tile.setAttribute("data-state", b.state);
      var head = el("div", "name");
      head.appendChild(el("span", null, b.name));
      var badge = el("span", "state s-" + b.state, b.state.replace("_", " "));
      head.appendChild(badge);
      tile.appendChild(head);
      var stats = el("div", "stats");
      stats.appendChild(stat("calls/s", fmt(callRate, 1)));
      stats.appendChild(stat("error %", fmt(errPct, 0)));
      stats.appendChild(stat("rejected/s", fmt(rejectRate, 1)));
      tile.appendChild(stats);
      tile.appendChild(sparkline(list));
      var foot = "calls " + total(calls) + " (rejected " + (calls.rejected || 0) + ")";
      var ok = (b.durations || {}).success;
      if (ok && ok.count) foot += " · p50 " + ms(ok.p50) + " · p99 " + ms(ok.p99);
      if (b.retry_after !== null && b.retry_after !== undefined && b.state !== "closed")
        foot += " · probe in " + fmt(b.retry_after, 1) + " s";
      tile.appendChild(el("div", "foot", foot));
      box.appendChild(tile);
    });
  }

  var REASON_WORDS = { disabled: "off", circuit_open: "off", error: "error", stale: "stale" };

  // Fallbacks by reason in the words of the note under the list: "off" ones never reached the
  // breaker, which is why they do not add up to the breaker tile's calls.
  function fallbackText(fallbacks) {
    var by = {};
    for (var reason in fallbacks) {
      var word = REASON_WORDS[reason] || reason;
      by[word] = (by[word] || 0) + fallbacks[reason];
    }
    var parts = ["off", "error", "stale"].filter(function (w) { return by[w]; }).map(function (w) {
      return w + " " + by[w];
    });
    return parts.length ? " (" + parts.join(" · ") + ")" : "";
  }

  function drawFeatures(features) {
    var list = document.getElementById("features");
    list.textContent = "";
    if (!features.length) { list.appendChild(el("li", "empty", "no features")); return; }
    features.forEach(function (f) {
      var item = el("li");
      item.setAttribute("data-feature", f.name);
      item.setAttribute("data-enabled", f.enabled ? "true" : "false");
      item.appendChild(el("span", null, f.name + (f.manually_disabled ? " (switched off)" : "")));
      var fallbacks = total(f.fallbacks || {});
      var pill = el("span", "pill " + (f.enabled ? "on" : "off"),
        (f.enabled ? "on" : "fallback") + " · " + fallbacks + " fallbacks" + fallbackText(f.fallbacks || {}));
      pill.title = "answers from the fallback; see the note below for why this differs from the breaker's calls";
      item.appendChild(pill);
      list.appendChild(item);
    });
  }

  function ago(epoch, now) {
    if (epoch === null || epoch === undefined) return "–";
    var s = Math.max(0, now - epoch);
    return s < 120 ? Math.round(s) + " s ago" : Math.round(s / 60) + " min ago";
  }

  function ms(seconds) {
    return seconds === null || seconds === undefined ? "–" : fmt(seconds * 1000, seconds < 0.01 ? 1 : 0) + " ms";
  }

  function drawLimits(snapshot) {
    var body = document.querySelector("#limits tbody");
    body.textContent = "";
    var rows = [];
    (snapshot.timeouts || []).forEach(function (x) {
      var c = x.calls || {};
      rows.push(["timeout", x.name, (c.success || 0) + (c.failure || 0), (c.timed_out || 0) + " timed out",
        fmt(x.seconds, 1) + " s budget", "p99 " + ms((x.durations || {}).p99)]);
    });
    (snapshot.bulkheads || []).forEach(function (x) {
      var c = x.calls || {};
      rows.push(["bulkhead", x.name, c.admitted || 0, (c.rejected || 0) + " rejected",
        x.in_flight + " / " + x.max_concurrent + " in flight" + (x.waiting ? ", " + x.waiting + " waiting" : ""),
        "wait p99 " + ms((x.wait || {}).p99)]);
    });
    (snapshot.rate_limiters || []).forEach(function (x) {
      var c = x.calls || {};
      var budget = fmt(x.rate, 0) + " / " + fmt(x.per, 0) + " s";
      var tokens = x.available_tokens === null || x.available_tokens === undefined
        ? x.backend + (x.backend_up ? "" : " down, failing " + x.failure_policy)
        : fmt(x.available_tokens, 1) + " tokens left";
      rows.push(["rate limiter", x.name, c.admitted || 0, (c.rejected || 0) + " rejected", budget, tokens]);
    });
    if (!rows.length) {
      emptyRow(body, "no timeouts, bulkheads or rate limiters", 6);
      return;
    }
    rows.forEach(function (values) {
      var row = el("tr");
      row.setAttribute("data-limit", values[0] + ":" + values[1]);
      values.forEach(function (v) { row.appendChild(el("td", null, String(v))); });
      body.appendChild(row);
    });
  }

  function drawTasks(tasks, now) {
    var body = document.querySelector("#tasks tbody");
    body.textContent = "";
    if (!tasks.length) {
      emptyRow(body, "no supervised tasks", 5);
      return;
    }
    tasks.forEach(function (t) {
      var row = el("tr");
      row.setAttribute("data-task", t.name);
      row.setAttribute("data-state", t.state);
      row.setAttribute("data-stale", t.stale ? "true" : "false");
      var state = t.state.replace("_", " ");
      if (t.state === "backing_off" && t.next_restart_at) state += " · restart in " + fmt(Math.max(0, t.next_restart_at - now), 1) + " s";
      if (t.critical) state += " · critical";
      var error = t.last_error_type ? t.last_error_type + (t.last_error_message ? ": " + t.last_error_message : "") : "–";
      var beat = t.heartbeat_timeout && t.state === "running" ? (t.stale ? "stale, " : "") + ago(t.last_beat_at, now) : "–";
      [t.name, state, String(t.restarts), error, beat].forEach(function (v) { row.appendChild(el("td", null, v)); });
      body.appendChild(row);
    });
  }

  function drawRetries(retries, t) {
    var body = document.querySelector("#retries tbody");
    body.textContent = "";
    retries.forEach(function (r) {
      var c = r.calls || {};
      var list = remember(retryHistory, r.name, t, { calls: total(c), retries: r.retries || 0 });
      var row = el("tr");
      row.setAttribute("data-retry", r.name);
      [r.name, fmt(rate(list, "calls", RATE_SECONDS), 1), fmt(rate(list, "retries", RATE_SECONDS), 1),
       c.success_without_retry || 0, c.success_with_retry || 0,
       (c.failed_without_retry || 0) + (c.failed_with_retry || 0)].forEach(function (v) {
        row.appendChild(el("td", null, String(v)));
      });
      body.appendChild(row);
    });
  }

  function drawErrors(stats, recent, details) {
    stats = stats || {};
    document.getElementById("error-window").textContent =
      stats.window_seconds ? "(last " + (stats.window_seconds >= 120 ? Math.round(stats.window_seconds / 60) + " min)" : Math.round(stats.window_seconds) + " s)") : "";
    var totals = document.getElementById("error-totals");
    totals.textContent = "";
    totals.appendChild(stat("errors", String(stats.total_errors || 0)));
    totals.appendChild(stat("per minute", fmt(stats.error_rate || 0, 1)));
    var bars = document.getElementById("error-categories");
    bars.textContent = "";
    var byCat = stats.errors_by_category || {}, max = 1;
    for (var k in byCat) max = Math.max(max, byCat[k]);
    Object.keys(byCat).sort().filter(function (cat) { return byCat[cat] > 0; }).forEach(function (cat) {
      var line = el("div");
      line.appendChild(el("span", "label", cat));
      var bar = el("span", "bar");
      bar.style.width = (12 * byCat[cat] / max) + "rem";
      line.appendChild(bar);
      line.appendChild(el("span", null, String(byCat[cat])));
      bars.appendChild(line);
    });
    var body = document.querySelector("#recent-errors tbody");
    body.textContent = "";
    (recent || []).slice(0, 10).forEach(function (e) {
      var row = el("tr");
      var when = e.timestamp ? new Date(e.timestamp * 1000).toLocaleTimeString([], { hour12: false }) : "";
      [when, e.source || "", e.type || e.error_type || "", e.category || "", e.message || ""].forEach(function (v) {
        row.appendChild(el("td", null, String(v)));
      });
      body.appendChild(row);
    });
    // The server leaves messages and context out unless this client may see them: say so.
    document.getElementById("error-details").textContent = details ? "" :
      "messages and context are hidden: GET api/resilience/errors/recent with the admin token shows them";
  }

  function draw(snapshot) {
    var t = snapshot.time || Date.now() / 1000;
    var breakers = snapshot.breakers || [];
    drawBreakers(breakers, t);
    drawFeatures(snapshot.features || []);
    drawRetries(snapshot.retries || [], t);
    drawTasks(snapshot.tasks || [], t);
    drawLimits(snapshot);
    drawErrors(snapshot.errors, snapshot.recent_errors, snapshot.details);
    var open = breakers.filter(function (b) { return b.state !== "closed"; }).length;
    var off = (snapshot.features || []).filter(function (f) { return !f.enabled; }).length;
    var tasks = snapshot.tasks || [];
    var failed = tasks.filter(function (k) { return k.state === "failed"; }).length;
    // A frame lists at most 500 of each kind (not closed first); totals counts them all.
    var shown = snapshot.truncated ? " (" + breakers.length + " shown)" : "";
    var count = (snapshot.totals && snapshot.totals.breaker) || breakers.length;
    document.getElementById("summary").textContent = count + " breakers" + shown + ", " + open +
      " not closed · " + (snapshot.features || []).length + " features, " + off + " on fallback · " +
      (tasks.length ? tasks.length + (tasks.length === 1 ? " task, " : " tasks, ") + failed + " failed · " : "") +
      "updated " + new Date(t * 1000).toLocaleTimeString();
    document.body.setAttribute("data-updated", String(t));
  }

  document.addEventListener("DOMContentLoaded", connect);
})();
