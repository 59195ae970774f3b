/// The proxy's own responses: short plain-text pages a user can read (docs/behaviour.md, "Errors").
public enum ErrorPage {
    public static func reason(_ status: Int) -> String {
        switch status {
        case 400: return "Bad Request"
        case 405: return "Method Not Allowed"
        case 408: return "Request Timeout"
        case 429: return "Too Many Requests"
        case 431: return "Request Header Fields Too Large"
        case 502: return "Bad Gateway"
        case 503: return "Service Unavailable"
        case 504: return "Gateway Timeout"
        case 505: return "HTTP Version Not Supported"
        default: return "Error"
        }
    }

    /// A complete response that closes the connection; `message` becomes the one-line body.
    public static func response(status: Int, message: String, headers: [(String, String)] = []) -> [UInt8] {
        let body = "\(status) \(reason(status)): \(message)\n"
        let head = "HTTP/1.1 \(status) \(reason(status))\r\n"
            + headers.map { "\($0.0): \($0.1)\r\n" }.joined()
            + "Content-Type: text/plain; charset=utf-8\r\n"
            + "Content-Length: \(body.utf8.count)\r\n"
            + "Cache-Control: no-store\r\n"
            + "Connection: close\r\n\r\n"
        return Array((head + body).utf8)
    }

    public static func status(for error: HTTPParseError) -> Int {
        switch error {
        case .headersTooLarge: return 431
        case .unsupportedVersion: return 505
        case .malformed: return 400
        }
    }
}
