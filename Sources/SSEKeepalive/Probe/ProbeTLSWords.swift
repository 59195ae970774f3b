/// Certificate verification failures in plain words (OpenSSL's X509_V_ERR
/// codes; the numbers are stable across OpenSSL versions).
public enum ProbeTLSWords {
    public static func certificateProblem(code: Int, host: String, names: String, notAfter: String,
                                          usingCACert: Bool, reason: String) -> String {
        let trust = usingCACert ? "the CA file given with --cacert" : "this machine's CA store"
        switch code {
        case 10:
            return "the server's certificate has expired" + (notAfter.isEmpty ? "" : " (valid until \(notAfter))")
        case 9:
            return "the server's certificate is not valid yet (check the clocks)"
        case 62, 64:
            let listed = names.isEmpty ? "" : " (it is for: \(names))"
            return "wrong host: the server's certificate is not valid for \(host)\(listed)"
        case 2, 18, 19, 20, 21:
            let fix = usingCACert ? "" : "; for a private CA pass its certificate with --cacert FILE"
            return "unknown issuer: the server's certificate is not signed by a CA in \(trust)"
                + (code == 18 ? " (it is self-signed)" : "") + fix
        default:
            return "the server's certificate was rejected: \(reason)"
        }
    }
}
