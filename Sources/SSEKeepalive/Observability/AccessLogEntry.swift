/// One finished request or stream, for the access log (`log.access: true`).
/// The exchange machine makes it (without the client's address, which the
/// runtime fills in); the runtime logs it at `info`, through `log(to:format:)`.
public struct AccessLogEntry: Equatable, Sendable {
    /// How the exchange ended (`end=`).
    public typealias Ending = ExchangeEnding

    /// Client address, `127.0.0.1:5555` / `[::1]:5555`.
    public var client: String
    public var method: String
    /// The request-target as logged. It must already have gone through
    /// `Redactor.redact(target:)`: this type prints it as given.
    public var target: String
    /// Status sent to the client; 0 when no response head was sent.
    public var status: Int
    /// Bytes written to the client (head and body, heartbeats included).
    public var bytesSent: Int
    /// From the request head's arrival to the end, in whole milliseconds.
    public var durationMs: Int
    /// The route's name (its path; `default` for the fallback).
    public var route: String
    public var heartbeats: Int
    public var ending: Ending

    public init(client: String, method: String, target: String, status: Int, bytesSent: Int, durationMs: Int,
                route: String, heartbeats: Int, ending: Ending) {
        self.client = client
        self.method = method
        self.target = target
        self.status = status
        self.bytesSent = bytesSent
        self.durationMs = durationMs
        self.route = route
        self.heartbeats = heartbeats
        self.ending = ending
    }

    /// The message of the text log line:
    /// `access 127.0.0.1:5555 "GET /x?token=[REDACTED]" 200 1234B 15ms route=/events heartbeats=3 end=complete`
    /// (in the quoted request and the route, `"`, `\` and control characters
    /// are written as `\"`, `\\`, `\xhh`, so one entry is always one line).
    /// The JSON form is the handler's object with `metadata` as its fields.
    public var textLine: String {
        "access \(TextEscape.logField(client)) \"\(TextEscape.logField(method)) \(TextEscape.logField(target))\" \(status) \(bytesSent)B \(durationMs)ms"
            + " route=\(TextEscape.logField(route)) heartbeats=\(heartbeats) end=\(ending.rawValue)"
    }
}
