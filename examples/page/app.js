// sse-keepalive demo page: one EventSource, counters, and a JSON summary.
//
//   /page?stream=/api/messages/stream&token=demo-token
//
// `token` goes on the EventSource URL as ?token= (EventSource cannot set
// headers); sse-keepalive's token route moves it into `Authorization: Bearer`
// before the request reaches the app. Heartbeats are SSE comments, so they
// never fire onmessage or any event listener: `messages` and `named` count
// real events only. The summary is kept in window.sseDemo and in <pre id=summary>
// (Tests/integration/test_browser.py reads it through the DevTools protocol).
(function () {
  "use strict";
  var params = new URLSearchParams(location.search);
  var stream = params.get("stream") || "/api/messages/stream";
  var token = params.get("token");
  var url = stream + (token ? "?token=" + encodeURIComponent(token) : "");
  var started = performance.now();
  var NAMED = ["notification", "tick"];
  var KEEP = 100; // events kept in the summary and the list

  var s = window.sseDemo = {
    url: stream + (token ? "?token=[REDACTED]" : ""),
    state: "connecting",
    opens: 0,
    reconnects: 0,
    errors: 0,
    messages: 0,          // onmessage calls (unnamed events)
    named: 0,             // addEventListener(notification|tick) calls
    named_by_type: {},
    empty_data: 0,        // events whose data was empty (a heartbeat misparsed would show here)
    last_id: null,
    events: [],           // {t, type, id, data} of the last KEEP events
    open_times: [],       // ms since page load
    error_times: []
  };

  function $(id) { return document.getElementById(id); }
  function now() { return Math.round(performance.now() - started); }

  function render() {
    var state = $("state");
    state.textContent = s.state;
    state.className = "state " + s.state;
    $("opens").textContent = s.opens;
    $("reconnects").textContent = s.reconnects;
    $("errors").textContent = s.errors;
    $("messages").textContent = s.messages;
    $("named").textContent = s.named;
    $("last-id").textContent = s.last_id === null ? "–" : s.last_id;
    $("summary").textContent = JSON.stringify(s, null, 1);
    document.title = "sse-keepalive demo: " + s.state + " (" + (s.messages + s.named) + " events)";
  }

  function record(type, e) {
    if (e.data === "") s.empty_data++;
    s.last_id = e.lastEventId || s.last_id;
    s.events.push({ t: now(), type: type, id: e.lastEventId, data: e.data });
    if (s.events.length > KEEP) s.events.shift();
    var li = document.createElement("li");
    li.textContent = (now() / 1000).toFixed(1) + "s  " + type + "  id=" + e.lastEventId + "  " + e.data;
    var list = $("events");
    list.insertBefore(li, list.firstChild);
    while (list.childNodes.length > KEEP) list.removeChild(list.lastChild);
  }

  $("url").textContent = s.url;
  var es = new EventSource(url);

  es.onopen = function () {
    s.opens++;
    s.reconnects = s.opens - 1;
    s.state = "open";
    s.open_times.push(now());
    render();
  };
  es.onerror = function () {
    s.errors++;
    s.error_times.push(now());
    // CONNECTING: the browser retries after the stream's `retry:` delay;
    // CLOSED: it gave up (e.g. a 401 or a non-event-stream response).
    s.state = es.readyState === EventSource.CLOSED ? "closed" : "error";
    render();
  };
  es.onmessage = function (e) {
    s.messages++;
    record("message", e);
    render();
  };
  NAMED.forEach(function (type) {
    es.addEventListener(type, function (e) {
      s.named++;
      s.named_by_type[type] = (s.named_by_type[type] || 0) + 1;
      record(type, e);
      render();
    });
  });
  render();
})();
