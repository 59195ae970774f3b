#if canImport(Glibc)
import Glibc
#endif

// sse-bench: the benchmark backend and load generator of sse-keepalive.
// See Benchmarks/README.md. Loopback targets only.

let usage = """
usage:
  sse-bench backend --port P [--host 127.0.0.1] [--rate EVENTS_PER_S] [--event-size BYTES]
                    [--flood-size BYTES] [--framing chunked|close] [--max-seconds S] [--bcast-rate EVENTS_PER_S]
  sse-bench client --target HOST:PORT [--path /idle] [--streams N] [--duration S] [--warmup S]
                   [--sources 127.0.0.2-127.0.0.50] [--connect-concurrency N] [--connect-timeout S]
                   [--label TEXT]
  sse-bench client --churn --target HOST:PORT [--path /ping] [--connections N] [--concurrency C]
                   [--duration S] [--sources ...] [--first-event]

--first-event (with --churn): each connection asks for an event stream
(Accept: text/event-stream) and closes at its first event (the backend's .../first).

The backend serves GET .../idle, .../flood?size=N, .../rate, .../bcast, .../first and .../ping.
The client prints {"phase":"open",...} once its streams are open, then one JSON
line of results after --duration seconds.
"""

var arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else { fail(usage) }
arguments.removeFirst()

final class Flags: @unchecked Sendable {
    var values: [String: String] = [:]
    var switches: Set<String> = []

    func take<T: LosslessStringConvertible>(_ name: String, _ fallback: T) -> T {
        guard let text = values.removeValue(forKey: name) else { return fallback }
        guard let value = T(text) else { fail("bad value for --\(name): \(text)") }
        return value
    }

    func checkUnused() {
        if let unknown = values.keys.sorted().first { fail("unknown option --\(unknown)\n\(usage)") }
    }
}

let parsed = Flags()
var i = 0
while i < arguments.count {
    let a = arguments[i]
    guard a.hasPrefix("--") else { fail("unexpected argument \(a)\n\(usage)") }
    let name = String(a.dropFirst(2))
    if name == "churn" || name == "first-event" || name == "help" {
        parsed.switches.insert(name)
        i += 1
    } else if let eq = name.firstIndex(of: "=") {
        parsed.values[String(name[..<eq])] = String(name[name.index(after: eq)...])
        i += 1
    } else {
        guard i + 1 < arguments.count else { fail("\(a) needs a value") }
        parsed.values[name] = arguments[i + 1]
        i += 2
    }
}
if parsed.switches.contains("help") || command == "--help" || command == "help" {
    print(usage)
    exit(0)
}


switch command {
case "backend":
    var o = Backend.Options()
    o.host = parsed.take("host", o.host)
    o.port = parsed.take("port", o.port)
    o.rate = parsed.take("rate", o.rate)
    o.eventSize = parsed.take("event-size", o.eventSize)
    o.floodSize = parsed.take("flood-size", o.floodSize)
    o.maxSeconds = parsed.take("max-seconds", o.maxSeconds)
    o.bcastRate = parsed.take("bcast-rate", o.bcastRate)
    let framing: String = parsed.take("framing", "chunked")
    guard framing == "chunked" || framing == "close" else { fail("--framing is chunked or close") }
    o.chunked = framing == "chunked"
    _ = parsed.take("mode", "")   // accepted for symmetry; the path picks the behaviour
    parsed.checkUnused()
    Backend(options: o).run()
case "client":
    var o = Client.Options()
    o.churn = parsed.switches.contains("churn")
    o.firstEvent = parsed.switches.contains("first-event")
    guard !o.firstEvent || o.churn else { fail("--first-event goes with --churn") }
    if o.churn { o.path = o.firstEvent ? "/first" : "/ping" }
    o.target = parsed.take("target", o.target)
    o.path = parsed.take("path", o.path)
    o.streams = parsed.take("streams", o.streams)
    o.duration = parsed.take("duration", o.duration)
    o.warmup = parsed.take("warmup", o.warmup)
    o.sources = parsed.take("sources", o.sources)
    o.connectConcurrency = parsed.take("connect-concurrency", o.connectConcurrency)
    o.connectTimeout = parsed.take("connect-timeout", o.connectTimeout)
    o.connections = parsed.take("connections", o.connections)
    o.concurrency = parsed.take("concurrency", o.concurrency)
    o.label = parsed.take("label", o.label)
    parsed.checkUnused()
    guard o.streams > 0, o.streams <= 19_000, o.concurrency > 0, o.concurrency <= 10_000,
          o.duration > 0, o.duration <= 3600, o.connections > 0 else { fail("counts out of range") }
    Client(options: o).run()
default:
    fail("unknown command \(command)\n\(usage)")
}
