import Logging

extension AccessLogEntry {
    /// The fields as log metadata (numbers as numbers), keys as in the JSON line.
    public var metadata: Logger.Metadata {
        [
            "client": .string(client),
            "method": .string(method),
            "target": .string(target),
            "status": .stringConvertible(status),
            "bytes_sent": .stringConvertible(bytesSent),
            "duration_ms": .stringConvertible(durationMs),
            "route": .string(route),
            "heartbeats": .stringConvertible(heartbeats),
            "end": .string(ending.rawValue),
        ]
    }

    /// Logs the entry at `info`. text: the `textLine` message, no
    /// metadata. json: message `access` with the fields as metadata, so the
    /// handler's object is flat:
    /// `{"ts":"…","level":"info","msg":"access","bytes_sent":1234,"client":"…",…}`
    /// (metadata keys sorted, as for every JSON line).
    public func log(to logger: Logger, format: LogFormat) {
        switch format {
        case .text: logger.info("\(textLine)")
        case .json: logger.info("access", metadata: metadata)
        }
    }
}
