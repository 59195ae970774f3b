/// The request the probe sends: what a browser's EventSource sends.
public enum ProbeRequest {
    public static let userAgent = "sse-keepalive-probe/\(SSEKeepaliveVersion.string)"

    /// Parses one `--header` argument, `Name: value` (space after the colon optional).
    public static func parseHeader(_ text: String) throws(ProbeUsageError) -> HTTPHeaders.Field {
        guard let colon = text.firstIndex(of: ":") else {
            throw ProbeUsageError("--header \"\(TextEscape.message(text))\": write it as Name:value")
        }
        let name = text[..<colon]
        if name.isEmpty { throw ProbeUsageError("--header \"\(TextEscape.message(text))\": empty header name") }
        for b in name.utf8 where !HTTPBytes.isTchar(b) {
            throw ProbeUsageError("--header \"\(TextEscape.message(text))\": invalid character \(HTTPBytes.describe(b)) in header name")
        }
        let value = text[text.index(after: colon)...].trimmingOWS()
        for b in value.utf8 where !HTTPBytes.isFieldValueByte(b) {
            throw ProbeUsageError("--header \"\(TextEscape.message(text))\": invalid character \(HTTPBytes.describe(b)) in header value")
        }
        return HTTPHeaders.Field(name: String(name), value: String(value))
    }

    public static func checkLastEventID(_ id: String) throws(ProbeUsageError) {
        // The field is sent as a header; EventSource never sends CR, LF or NUL in it.
        for b in id.utf8 where b == 0 || b == HTTPBytes.cr || b == HTTPBytes.lf {
            throw ProbeUsageError("--last-event-id must not contain \(HTTPBytes.describe(b))")
        }
    }

    /// GET with Accept: text/event-stream and Cache-Control: no-cache, like
    /// EventSource. Accept-Encoding is what browsers send, so a compressing
    /// hop shows itself; a user header of the same name replaces a default.
    public static func head(url: ProbeURL, headers extra: [HTTPHeaders.Field] = [], lastEventID: String? = nil) -> RequestHead {
        var defaults: [(String, String)] = [
            ("Host", url.hostHeader),
            ("User-Agent", userAgent),
            ("Accept", "text/event-stream"),
            ("Cache-Control", "no-cache"),
            ("Accept-Encoding", "gzip, deflate, br"),
        ]
        if let lastEventID { defaults.append(("Last-Event-ID", lastEventID)) }
        var headers = HTTPHeaders()
        for (name, value) in defaults where !extra.contains(where: { $0.name.asciiCaseInsensitiveEquals(name) }) {
            headers.add(name, value)
        }
        for field in extra { headers.add(field.name, field.value) }
        return RequestHead(method: "GET", target: url.target, version: .http11, headers: headers)
    }

    public static func bytes(url: ProbeURL, headers: [HTTPHeaders.Field] = [], lastEventID: String? = nil) -> [UInt8] {
        head(url: url, headers: headers, lastEventID: lastEventID).serialized()
    }
}

/// What the response head says about the stream and about buffering.
public struct ProbeHeadAnalysis: Equatable, Sendable {
    public var version: HTTPVersion
    public var status: Int
    public var reason: String
    public var contentType: String?
    public var isEventStream: Bool
    public var contentLength: String?
    public var contentEncoding: String?
    public var cacheControl: String?
    public var xAccelBuffering: String?
    public var transferEncoding: String?
    public var location: String?
    /// nil when the framing headers are invalid (see `framingError`).
    public var framing: BodyFraming?
    public var framingError: String?
    /// Intermediaries that name themselves in the head.
    public var hops: [ProbeHop]

    public init(_ head: ResponseHead) {
        func joined(_ name: String) -> String? {
            let values = head.headers.values(name)
            return values.isEmpty ? nil : values.joined(separator: ", ")
        }
        version = head.version
        status = head.status
        reason = head.reason
        contentType = joined("Content-Type")
        isEventStream = HeaderPolicy.isEventStream(contentType: head.headers["Content-Type"])
        contentLength = joined("Content-Length")
        contentEncoding = joined("Content-Encoding")
        cacheControl = joined("Cache-Control")
        xAccelBuffering = joined("X-Accel-Buffering")
        transferEncoding = joined("Transfer-Encoding")
        location = joined("Location")
        hops = ProbeHop.identify(head.headers)
        do {
            framing = try BodyFraming.response(head, requestMethod: "GET")
            framingError = nil
        } catch {
            framing = nil
            if case .malformed(let why) = error { framingError = why } else { framingError = "\(error)" }
        }
    }

    /// Content-coded with anything but identity.
    public var isContentEncoded: Bool {
        guard let contentEncoding else { return false }
        return HeaderPolicy.isContentEncoded(HTTPHeaders([("Content-Encoding", contentEncoding)]))
    }

    /// A coding the probe decodes (gzip, deflate), when content-coded.
    public var decodableCoding: ProbeInflater.Coding? {
        guard isContentEncoded, let contentEncoding else { return nil }
        return ProbeInflater.coding(contentEncoding)
    }

    /// Cache-Control: no-transform (asks intermediaries not to recompress).
    public var forbidsTransform: Bool {
        guard let cacheControl else { return false }
        return HTTPHeaders([("Cache-Control", cacheControl)]).tokens("Cache-Control").contains("no-transform")
    }

    /// EventSource accepts only 200 with text/event-stream; anything else fails the connection.
    public var isUsableStream: Bool { status == 200 && isEventStream && framing != nil }

    /// Cache-Control forbids caching (no-cache or no-store).
    public var forbidsCaching: Bool {
        guard let cacheControl else { return false }
        let tokens = HTTPHeaders([("Cache-Control", cacheControl)]).tokens("Cache-Control")
        return tokens.contains { $0 == "no-cache" || $0.hasPrefix("no-cache=") || $0 == "no-store" }
    }
}

/// The probe's command-line options, validated.
public struct ProbeOptions: Equatable, Sendable {
    public var url: ProbeURL
    public var headers: [HTTPHeaders.Field]
    public var lastEventID: String?
    /// How long to watch the stream (ns).
    public var duration: ProbeTime
    /// https: trust this PEM file instead of the system CA store.
    public var cacert: String?
    /// https: do not check the certificate at all.
    public var insecure: Bool
    public var connectTo: [ProbeConnectTo]

    public static let defaultDuration = "5m"

    /// The shortest --duration for --through-sidecar: the size events and a second to spare.
    public static var minimumDiagnosticDuration: Int {
        var p = DiagnosticScript.Parameters()
        p.silenceTo = 0
        return p.duration + 1000
    }

    public init(url: ProbeURL, headers: [HTTPHeaders.Field] = [], lastEventID: String? = nil,
                duration: ProbeTime = 300_000_000_000, cacert: String? = nil, insecure: Bool = false,
                connectTo: [ProbeConnectTo] = []) {
        self.url = url
        self.headers = headers
        self.lastEventID = lastEventID
        self.duration = duration
        self.cacert = cacert
        self.insecure = insecure
        self.connectTo = connectTo
    }

    /// From the raw arguments; the error says what to fix.
    public static func parse(url: String, headers: [String] = [], duration: String = defaultDuration,
                             lastEventID: String? = nil, cacert: String? = nil, insecure: Bool = false,
                             connectTo: [String] = [], throughSidecar: Bool = false) throws(ProbeUsageError) -> ProbeOptions {
        let parsedURL = try ProbeURL.parse(url)
        var fields: [HTTPHeaders.Field] = []
        for h in headers { fields.append(try ProbeRequest.parseHeader(h)) }
        guard let span = ValueSyntax.duration(duration) else {
            throw ProbeUsageError("--duration \"\(TextEscape.message(duration))\": use a duration like 500ms, 15s, 2m or 1h")
        }
        if let lastEventID { try ProbeRequest.checkLastEventID(lastEventID) }
        if (cacert != nil || insecure) && !parsedURL.isTLS {
            throw ProbeUsageError("\(cacert != nil ? "--cacert" : "--insecure") applies to https:// URLs only")
        }
        if cacert != nil && insecure {
            throw ProbeUsageError("--cacert and --insecure contradict each other: use one")
        }
        var rules: [ProbeConnectTo] = []
        for c in connectTo { rules.append(try ProbeConnectTo.parse(c)) }
        var url = parsedURL
        if throughSidecar {
            let ms = Int(span.milliseconds)
            guard let query = DiagnosticScript.query(fitting: ms) else {
                throw ProbeUsageError("--through-sidecar needs a --duration of at least \(TimeSpan(milliseconds: minimumDiagnosticDuration))")
            }
            if !url.target.contains("silence_to=") {
                url.target += (url.target.contains("?") ? "&" : "?") + query
            }
        }
        return ProbeOptions(url: url, headers: fields, lastEventID: lastEventID,
                            duration: ProbeTime(span.milliseconds) * 1_000_000, cacert: cacert, insecure: insecure,
                            connectTo: rules)
    }
}
