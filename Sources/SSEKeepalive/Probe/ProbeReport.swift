/// The probe's outputs: the live progress line, the text report and the
/// --json object (stable keys, in a fixed order).
public enum ProbeReport {
    /// Messages listed in the text report: this many first and last.
    public static let textMessages = 10
    /// Messages in the JSON object, at most.
    public static let jsonMessages = 1000

    // MARK: Progress

    /// "  12.3 s  events 5  comments 2  last gap 1.0 s  quiet 0.4 s"
    public static func progressLine(elapsed: ProbeTime, record: ProbeRecord) -> String {
        var line = "probe \(ProbeFormat.seconds(elapsed, decimals: 1)) s"
        if record.headAt == nil {
            line += record.connectedAt == nil ? "  connecting" : "  waiting for the response head"
            return line
        }
        if record.payloadParsed {
            line += "  events \(record.eventCount)  comments \(record.commentCount)"
        } else {
            line += "  bytes \(record.payloadBytes)"
        }
        let times = record.messages.suffix(2).map(\.time)
        line += "  last gap " + (times.count == 2 ? "\(ProbeFormat.seconds(times[1] - times[0], decimals: 1)) s" : "-")
        if let last = record.lastByteAt {
            line += "  quiet \(ProbeFormat.seconds(elapsed - last, decimals: 1)) s"
        }
        return line
    }

    // MARK: Text

    public static func text(_ a: ProbeAnalysis) -> String {
        let r = a.record
        var out = "sse-keepalive probe \(r.url)\n"
        out += "  probed for \(ProbeFormat.seconds(r.endAt ?? 0)) s of --duration \(TimeSpan(milliseconds: Int(r.durationLimit / 1_000_000)))\n"

        if let h = r.head {
            out += "\nResponse\n"
            out += row("status", "\(h.status) \(h.reason) (\(h.version))")
            out += row("event stream", (h.isEventStream ? "yes" : "no") + " (Content-Type: \(h.contentType ?? "none"))")
            out += row("Content-Length", h.contentLength ?? "-")
            out += row("Content-Encoding", h.contentEncoding ?? "-")
            out += row("Cache-Control", h.cacheControl ?? "-")
            out += row("X-Accel-Buffering", h.xAccelBuffering ?? "-")
            out += row("Transfer-Encoding", h.transferEncoding ?? "-")
            if let location = h.location { out += row("Location", location) }
            out += row("retry", r.retry.map { "\($0) ms (set at \(ProbeFormat.seconds(r.retryAt ?? 0)) s)" } ?? "-")
            if !h.hops.isEmpty { out += row("intermediaries", h.hops.map(\.name).joined(separator: ", ")) }
        }
        if let tls = r.tls {
            out += "\nTLS\n"
            out += row("version", "\(tls.version) (\(tls.cipher))")
            out += row("server name", tls.serverName + (tls.verified ? " (certificate verified)" : " (certificate NOT checked: --insecure)"))
            out += row("ALPN", tls.alpn.map { $0 + ($0 == "h2" ? ": browsers use HTTP/2, EventSource streams share one connection"
                                                                  : "") } ?? "none: browsers use HTTP/1.1, at most 6 connections per host name")
        }

        out += "\nTimeline (seconds since start)\n"
        out += row("connected", r.connectedAt.map { ProbeFormat.seconds($0) } ?? "-")
        out += row("first byte", r.firstByteAt.map { ProbeFormat.seconds($0) } ?? "-")
        out += row("head", r.headAt.map { ProbeFormat.seconds($0) } ?? "-")
        out += row("first payload", r.firstPayloadAt.map { ProbeFormat.seconds($0) } ?? "-")
        if r.payloadParsed || r.eventCount > 0 {
            out += row("first event", r.messages.first { $0.kind == .event }.map { ProbeFormat.seconds($0.time) } ?? "-")
            out += row("events", "\(r.eventCount)")
            out += row("comments", "\(r.commentCount)")
            if let g = a.gaps {
                out += row("gaps", "min \(ProbeFormat.seconds(g.min)), median \(ProbeFormat.seconds(g.median)), "
                           + "max \(ProbeFormat.seconds(g.max)) (\(g.count) gap\(g.count == 1 ? "" : "s") between events and comments)")
            } else {
                out += row("gaps", "-")
            }
        }
        out += row("bytes", "\(r.bytesReceived) received, \(r.payloadBytes) payload, \(r.reads) reads")
        if let coding = r.decodedCoding {
            out += row("decoded", "\(coding): \(r.decodedBytes) bytes" + (r.decodeError.map { " (stopped: \($0))" } ?? ""))
        }
        if let end = r.end {
            var text = "\(ProbeFormat.seconds(r.endAt ?? 0)): \(end.description)"
            if let detail = r.endDetail { text += " (\(detail))" }
            if end.isServerSide, let s = a.silenceBeforeEnd { text += ", \(ProbeFormat.seconds(s)) s after the last byte" }
            out += row("end", text)
        }
        if !r.messages.isEmpty {
            out += "\n  arrivals\n"
            let list = r.messages
            let shown: [ProbeMessage]
            if list.count > 2 * textMessages {
                shown = Array(list.prefix(textMessages))
                for m in shown { out += messageLine(m) }
                out += "    ... \(list.count - 2 * textMessages) more ...\n"
                for m in list.suffix(textMessages) { out += messageLine(m) }
            } else {
                for m in list { out += messageLine(m) }
            }
        }

        out += "\nDiagnosis\n"
        if a.findings.isEmpty {
            out += "  ok: nothing on the path interfered with the stream\n"
        }
        for f in a.findings {
            out += "  \(f.severity == .problem ? "!" : "-") \(f.message)\n"
            if let evidence = f.evidence { out += "      evidence: \(evidence)\n" }
        }

        if let rec = a.recommendation {
            out += "\nRecommendation\n"
            out += "  heartbeat every \(rec.heartbeat): \(rec.reason). In sse-keepalive.yaml:\n\n"
            for line in rec.config.split(separator: "\n", omittingEmptySubsequences: false) where !line.isEmpty {
                out += "    \(line)\n"
            }
        }
        let healthy = a.diagnostic?.reachedEnd == true ? "healthy: the diagnostic script ran to its end undisturbed (exit 0)\n"
            : "healthy: the stream stayed open and clean for the whole duration (exit 0)\n"
        out += "\n" + (a.healthy ? healthy : "not healthy (exit 1)\n")
        return out
    }

    static func row(_ label: String, _ value: String) -> String {
        let pad = String(repeating: " ", count: max(1, 19 - label.count))
        return "  \(label)\(pad)\(value)\n"
    }

    static func messageLine(_ m: ProbeMessage) -> String {
        let at = ProbeFormat.seconds(m.time)
        switch m.kind {
        case .comment:
            return "    \(at)  comment :\(preview(m.text, size: m.size))\n"
        case .event:
            var line = "    \(at)  event \(m.type)"
            if let id = m.id { line += " id=\(preview(id, size: id.utf8.count))" }
            return line + " data=\(preview(m.text, size: m.size))\n"
        }
    }

    /// Control characters escaped, long text cut to 60 bytes.
    static func preview(_ s: String, size: Int) -> String {
        var out = ""
        var count = 0
        for scalar in s.unicodeScalars {
            if count >= 60 { break }
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            default: out.unicodeScalars.append(scalar.value < 0x20 || scalar.value == 0x7F ? "?" : scalar)
            }
            count += 1
        }
        if count < s.unicodeScalars.count || size > s.utf8.count { out += "... (\(size) bytes)" }
        return "\"\(out)\""
    }

    // MARK: JSON

    public static func json(_ a: ProbeAnalysis) -> String {
        let r = a.record
        var response = "null"
        if let h = r.head {
            response = object([
                ("status", "\(h.status)"),
                ("reason", str(h.reason)),
                ("version", str(h.version.description)),
                ("event_stream", "\(h.isEventStream)"),
                ("content_type", opt(h.contentType)),
                ("content_length", opt(h.contentLength)),
                ("content_encoding", opt(h.contentEncoding)),
                ("cache_control", opt(h.cacheControl)),
                ("x_accel_buffering", opt(h.xAccelBuffering)),
                ("transfer_encoding", opt(h.transferEncoding)),
                ("location", opt(h.location)),
                ("retry_ms", r.retry.map { "\($0)" } ?? "null"),
                ("no_transform", "\(h.forbidsTransform)"),
            ])
        }
        let gaps = a.gaps.map { g in
            object([("count", "\(g.count)"), ("min_s", secs(g.min)), ("median_s", secs(g.median)), ("max_s", secs(g.max))])
        } ?? "null"
        let timeline = object([
            ("connect_s", optSecs(r.connectedAt)),
            ("first_byte_s", optSecs(r.firstByteAt)),
            ("head_s", optSecs(r.headAt)),
            ("first_payload_s", optSecs(r.firstPayloadAt)),
            ("first_event_s", optSecs(r.messages.first { $0.kind == .event }?.time)),
            ("events", "\(r.eventCount)"),
            ("comments", "\(r.commentCount)"),
            ("payload_parsed", "\(r.payloadParsed)"),
            ("decoded", opt(r.decodedCoding)),
            ("decoded_bytes", "\(r.decodedBytes)"),
            ("bytes", "\(r.bytesReceived)"),
            ("payload_bytes", "\(r.payloadBytes)"),
            ("reads", "\(r.reads)"),
            ("gaps", gaps),
            ("longest_silence_s", secs(max(r.longestReadGap, a.silenceBeforeEnd ?? 0))),
        ])
        let end = object([
            ("reason", str(r.end?.code ?? "none")),
            ("description", str(r.end?.description ?? "")),
            ("detail", opt(r.endDetail)),
            ("at_s", optSecs(r.endAt)),
            ("silence_before_s", optSecs(a.silenceBeforeEnd)),
        ])
        let b = a.buffering
        let clock = b.clock.map { c in
            object([("source", str(c.source.rawValue)), ("index", "\(c.index)"), ("kind", str(c.kind.rawValue))])
        } ?? "null"
        let buffering = object([
            ("detected", "\(b.detected)"),
            ("method", opt(b.method)),
            ("send_time", clock),
            ("timed_events", "\(b.lateness?.samples ?? 0)"),
            ("late_events", "\(b.lateness?.late ?? 0)"),
            ("replayed_events", "\(b.lateness?.replayed ?? 0)"),
            ("max_delay_s", b.lateness.map { secs($0.maxDelay) } ?? "null"),
            ("burst_bytes", b.burstBytes.map { "\($0)" } ?? "null"),
            ("bursts", array(b.bursts.map { burst in
                object([("at_s", secs(burst.start)), ("events", "\(burst.count)"),
                        ("gap_before_s", secs(burst.gapBefore)), ("span_s", secs(burst.span))])
            })),
        ])
        let findings = array(a.findings.map { f in
            object([("code", str(f.code)), ("severity", str(f.severity.rawValue)), ("message", str(f.message)),
                    ("evidence", opt(f.evidence))])
        })
        let recommendation = a.recommendation.map { rec in
            object([("heartbeat", str(rec.heartbeat.description)), ("heartbeat_ms", "\(rec.heartbeat.milliseconds)"),
                    ("reason", str(rec.reason)), ("config", str(rec.config))])
        } ?? "null"
        let diagnostic = a.diagnostic.map { d in
            object([("buffering_threshold_bytes", d.bufferingThreshold.map { "\($0)" } ?? "null"),
                    ("threshold_above_bytes", d.thresholdAbove.map { "\($0)" } ?? "null"),
                    ("size_events", "\(d.sizes.count)"),
                    ("silences_ms", array(d.silences.map { "\($0)" })),
                    ("survived_silences", "\(d.survivedSilences)"),
                    ("longest_survived_silence_ms", d.longestSurvivedSilence.map { "\($0)" } ?? "null"),
                    ("fatal_silence_ms", d.fatalSilence.map { "\($0)" } ?? "null"),
                    ("reached_end", "\(d.reachedEnd)")])
        } ?? "null"
        let tls = r.tls.map { t in
            object([("version", str(t.version)), ("cipher", str(t.cipher)), ("server_name", str(t.serverName)),
                    ("alpn", opt(t.alpn)), ("h2", "\(t.offersH2)"), ("verified", "\(t.verified)")])
        } ?? "null"
        let intermediaries = array(a.hops.map { h in
            object([("name", str(h.name)), ("evidence", str(h.evidence)), ("limit_kind", opt(h.limitKind?.rawValue)),
                    ("limit_name", opt(h.limitName)), ("documented_limit_s", optSecs(h.limit))])
        })
        let messages = array(r.messages.prefix(jsonMessages).map { m in
            object([("at_s", secs(m.time)), ("kind", str(m.kind.rawValue)),
                    ("type", m.kind == .event ? str(m.type) : "null"), ("id", opt(m.id)),
                    ("text", str(m.text)), ("size", "\(m.size)")])
        })
        return object([
            ("url", str(r.url)),
            ("duration_limit_s", secs(r.durationLimit)),
            ("healthy", "\(a.healthy)"),
            ("exit_status", "\(a.exitStatus)"),
            ("response", response),
            ("timeline", timeline),
            ("end", end),
            ("tls", tls),
            ("intermediaries", intermediaries),
            ("idle_timeout_s", optSecs(a.idleTimeout)),
            ("lifetime_limit_s", optSecs(a.lifetimeLimit)),
            ("held_response", "\(a.heldResponse)"),
            ("head_held_s", optSecs(a.headHeldFor)),
            ("observed_heartbeat_s", optSecs(a.observedHeartbeat)),
            ("buffering", buffering),
            ("diagnostic", diagnostic),
            ("findings", findings),
            ("recommendation", recommendation),
            ("messages", messages),
            ("messages_truncated", "\(r.messages.count > jsonMessages || r.eventCount + r.commentCount > r.messages.count)"),
        ])
    }

    static func object(_ members: [(String, String)]) -> String {
        "{" + members.map { "\(JSON.string($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }

    static func array(_ items: [String]) -> String { "[" + items.joined(separator: ",") + "]" }
    static func str(_ s: String) -> String { JSON.string(s) }
    static func opt(_ s: String?) -> String { s.map(JSON.string) ?? "null" }
    static func secs(_ ns: ProbeTime) -> String { ProbeFormat.seconds(ns) }
    static func optSecs(_ ns: ProbeTime?) -> String { ns.map(secs) ?? "null" }
}
