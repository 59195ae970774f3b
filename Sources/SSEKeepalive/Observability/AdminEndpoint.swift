/// The admin listener's responses (docs/metrics.md), without I/O.
///
/// - `GET`/`HEAD /metrics`: 200, Prometheus text format 0.0.4.
/// - `GET`/`HEAD /healthz`: 200 `ok` while running, 503 `draining` while draining.
/// - Any other path: 404. A known path with another method: 405 with `Allow: GET, HEAD`.
///
/// The query string is ignored for matching; an absolute-form target
/// (`http://host/metrics`) matches by its path. Methods are case-sensitive
/// (RFC 9110 section 9.1). Every response has Content-Length and
/// `Connection: close`; a HEAD response has the GET response's headers and no body.
public enum AdminEndpoint {
    public static let metricsContentType = "text/plain; version=0.0.4; charset=utf-8"

    /// What a request asks for, after matching.
    public enum Resource: Equatable, Sendable {
        case metrics, healthz, notFound
    }

    public static func resource(target: String) -> Resource {
        switch path(of: target) {
        case "/metrics": return .metrics
        case "/healthz": return .healthz
        default: return .notFound
        }
    }

    /// The full HTTP/1.1 response (with Content-Length and Connection: close) for one admin request.
    /// `metrics` is called only for `GET`/`HEAD /metrics`.
    public static func response(method: String, target: String, draining: Bool,
                                metrics: () -> (MetricsSnapshot, workers: Int)) -> [UInt8] {
        let head = method == "HEAD"
        switch (resource(target: target), isGetOrHead(method)) {
        case (.notFound, _):
            return build(status: 404, reason: "Not Found", contentType: plain, body: "not found\n", omitBody: head)
        case (_, false):
            return build(status: 405, reason: "Method Not Allowed", contentType: plain,
                         body: "method not allowed\n", extra: "Allow: GET, HEAD\r\n", omitBody: false)
        case (.metrics, true):
            let (snapshot, workers) = metrics()
            return build(status: 200, reason: "OK", contentType: metricsContentType,
                         body: snapshot.prometheusText(workers: workers, draining: draining), omitBody: head)
        case (.healthz, true):
            return draining
                ? build(status: 503, reason: "Service Unavailable", contentType: plain, body: "draining\n", omitBody: head)
                : build(status: 200, reason: "OK", contentType: plain, body: "ok\n", omitBody: head)
        }
    }

    // MARK: - Helpers

    private static let plain = "text/plain; charset=utf-8"

    private static func isGetOrHead(_ method: String) -> Bool { method == "GET" || method == "HEAD" }

    /// The path of an origin-form or absolute-form target, without query or fragment.
    static func path(of target: String) -> Substring {
        var t = Substring(target)
        if let end = t.firstIndex(where: { $0 == "?" || $0 == "#" }) { t = t[..<end] }
        if !t.hasPrefix("/"), let schemeEnd = t.firstRange(of: "://") {
            let afterAuthority = t[schemeEnd.upperBound...]
            t = afterAuthority.firstIndex(of: "/").map { afterAuthority[$0...] } ?? "/"
        }
        return t
    }

    private static func build(status: Int, reason: String, contentType: String, body: String,
                              extra: String = "", omitBody: Bool) -> [UInt8] {
        var out: [UInt8] = []
        let head = "HTTP/1.1 \(status) \(reason)\r\n"
            + "Content-Type: \(contentType)\r\n"
            + "Content-Length: \(body.utf8.count)\r\n"
            + "Cache-Control: no-store\r\n"
            + extra
            + "Connection: close\r\n\r\n"
        out.reserveCapacity(head.utf8.count + (omitBody ? 0 : body.utf8.count))
        out.append(contentsOf: head.utf8)
        if !omitBody { out.append(contentsOf: body.utf8) }
        return out
    }
}
