import COpenSSL

#if canImport(Glibc)
import Glibc
#endif

/// The probe's TLS client (OpenSSL) over a connected non-blocking socket:
/// system CA store or --cacert, SNI, host name check, ALPN. I/O only; the
/// words for certificate failures are in ProbeTLSWords.
final class ProbeTLSSession {
    enum ReadOutcome {
        case data(Int)
        case wouldBlock
        case closed
        case reset
        case failed(String)
    }

    private let ctx: OpaquePointer
    private let ssl: OpaquePointer
    private let fd: Int32

    /// ALPN protocol lists in wire format.
    static let http11: [UInt8] = [8] + Array("http/1.1".utf8)
    static let h2First: [UInt8] = [2] + Array("h2".utf8) + http11

    init(fd: Int32, options: ProbeOptions, alpn: [UInt8]) throws(ProbeConnectError) {
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw ProbeConnectError("TLS: \(Self.lastError())") }
        sse_ssl_ctx_setup(ctx)
        if let cacert = options.cacert {
            guard SSL_CTX_load_verify_locations(ctx, cacert, nil) == 1 else {
                SSL_CTX_free(ctx)
                throw ProbeConnectError("--cacert \(cacert): cannot load it as PEM certificates (\(Self.lastError()))")
            }
        } else if !options.insecure {
            SSL_CTX_set_default_verify_paths(ctx)
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nil)
        guard let ssl = SSL_new(ctx) else {
            SSL_CTX_free(ctx)
            throw ProbeConnectError("TLS: \(Self.lastError())")
        }
        self.ctx = ctx
        self.ssl = ssl
        self.fd = fd
        if !options.insecure { sse_ssl_verify_peer(ssl) }
        let host = options.url.host
        if options.url.hostIsAddress {
            if !options.insecure { X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) }
        } else {
            _ = sse_ssl_set_sni(ssl, host)
            if !options.insecure { SSL_set1_host(ssl, host) }
        }
        alpn.withUnsafeBufferPointer { _ = SSL_set_alpn_protos(ssl, $0.baseAddress, UInt32($0.count)) }
        SSL_set_fd(ssl, fd)
    }

    deinit {
        sse_ssl_free(ssl)
        SSL_CTX_free(ctx)
    }

    static func lastError() -> String {
        let code = ERR_get_error()
        ERR_clear_error()
        guard code != 0 else { return "unknown error" }
        var buffer = [CChar](repeating: 0, count: 256)
        ERR_error_string_n(code, &buffer, buffer.count)
        return cText(buffer)
    }

    /// A NUL-terminated C buffer as text.
    static func cText(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Runs the handshake before `deadline`; `stop` says the user interrupted.
    func handshake(options: ProbeOptions, until deadline: ProbeTime, clock: () -> ProbeTime,
                   stop: () -> Bool) -> Result<ProbeTLSInfo, ProbeConnectError> {
        while true {
            ERR_clear_error()
            let rc = SSL_connect(ssl)
            if rc == 1 { break }
            let error = SSL_get_error(ssl, rc)
            let events: Int16
            switch error {
            case SSL_ERROR_WANT_READ: events = Int16(POLLIN)
            case SSL_ERROR_WANT_WRITE: events = Int16(POLLOUT)
            default:
                return .failure(ProbeConnectError(describeFailure(error, options: options)))
            }
            if stop() { return .failure(ProbeConnectError("interrupted")) }
            let left = deadline - clock()
            if left <= 0 { return .failure(ProbeConnectError(
                "\(options.url.hostHeader): TLS handshake timed out (is the server speaking TLS on this port?)")) }
            var pfd = pollfd(fd: fd, events: events, revents: 0)
            _ = poll(&pfd, 1, Int32(min(left, 250_000_000) / 1_000_000 + 1))
        }
        var alpnData: UnsafePointer<UInt8>? = nil
        var alpnLength: UInt32 = 0
        SSL_get0_alpn_selected(ssl, &alpnData, &alpnLength)
        let alpn = alpnData.map { String(decoding: UnsafeBufferPointer(start: $0, count: Int(alpnLength)), as: UTF8.self) }
        let cipher = SSL_get_current_cipher(ssl).flatMap { SSL_CIPHER_get_name($0) }.map { String(cString: $0) } ?? "?"
        return .success(ProbeTLSInfo(version: String(cString: SSL_get_version(ssl)), cipher: cipher,
                                     serverName: options.url.host, alpn: alpn, verified: !options.insecure))
    }

    private func describeFailure(_ error: Int32, options: ProbeOptions) -> String {
        let where_ = "TLS with \(options.url.hostHeader)"
        let verify = SSL_get_verify_result(ssl)
        if verify != X509_V_OK && !options.insecure {
            var names = [CChar](repeating: 0, count: 512)
            var notAfter = [CChar](repeating: 0, count: 64)
            sse_peer_names(ssl, &names, names.count, &notAfter, notAfter.count)
            let reason = String(cString: X509_verify_cert_error_string(verify))
            ERR_clear_error()
            return "\(where_): " + ProbeTLSWords.certificateProblem(
                code: Int(verify), host: options.url.host, names: Self.cText(names), notAfter: Self.cText(notAfter),
                usingCACert: options.cacert != nil, reason: reason)
        }
        if error == SSL_ERROR_SYSCALL {
            let code = errno
            ERR_clear_error()
            return code == 0 ? "\(where_): the server closed the connection during the handshake (is it speaking TLS on this port?)"
                : "\(where_): \(String(cString: strerror(code)))"
        }
        let detail = Self.lastError()
        if detail.contains("wrong version number") || detail.contains("packet length too long") {
            return "\(where_): the server did not answer with TLS (plain HTTP on this port? use http://)"
        }
        return "\(where_): handshake failed: \(detail)"
    }

    /// Decrypted bytes waiting inside OpenSSL (read them before polling again).
    var pending: Bool { SSL_pending(ssl) > 0 }

    func read(into buffer: inout [UInt8]) -> ReadOutcome {
        ERR_clear_error()
        let n = buffer.withUnsafeMutableBytes { SSL_read(ssl, $0.baseAddress, Int32($0.count)) }
        if n > 0 { return .data(Int(n)) }
        let error = SSL_get_error(ssl, n)
        switch error {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE:
            return .wouldBlock
        case SSL_ERROR_ZERO_RETURN:
            return .closed
        case SSL_ERROR_SYSCALL:
            let code = errno
            ERR_clear_error()
            if code == 0 { return .closed }
            if code == ECONNRESET { return .reset }
            if code == EAGAIN || code == EINTR { return .wouldBlock }
            return .failed("reading: \(String(cString: strerror(code)))")
        default:
            return .failed("TLS: \(Self.lastError())")
        }
    }

    /// Bytes written (0 when it would block), or the error.
    func write(_ bytes: ArraySlice<UInt8>) -> Result<Int, ProbeConnectError> {
        ERR_clear_error()
        let n = bytes.withUnsafeBytes { SSL_write(ssl, $0.baseAddress, Int32($0.count)) }
        if n > 0 { return .success(Int(n)) }
        switch SSL_get_error(ssl, n) {
        case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return .success(0)
        case SSL_ERROR_SYSCALL: return .failure(ProbeConnectError(String(cString: strerror(errno))))
        default: return .failure(ProbeConnectError("TLS: \(Self.lastError())"))
        }
    }
}
