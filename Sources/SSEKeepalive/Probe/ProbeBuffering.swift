/// Buffering detection. Two kinds of evidence:
///
/// 1. Send times. When events carry a number that tracks the sender's clock
///    (an epoch time in s/ms/us/ns, an ISO 8601 date-time, or a monotonic
///    counter that advances like a clock), each event's arrival time minus
///    its send time is its latency plus an unknown clock offset. The event
///    with the smallest difference defines "not delayed"; every other
///    event's excess over it is how long the path held it.
/// 2. Bursts. Without send times: several events within a few ms of each
///    other, right after a long quiet gap, more than once.

/// A number found in an event's id or data.
public struct ProbeNumber: Equatable, Sendable {
    public enum Source: String, Sendable { case id, data }

    public var source: Source
    /// Position among the numbers of its source (0-based).
    public var index: Int
    /// The value; ISO 8601 date-times are converted to epoch seconds.
    public var value: Double
    public var isDate: Bool
    /// All digits, no fraction.
    public var isInteger: Bool

    public init(source: Source, index: Int, value: Double, isDate: Bool = false, isInteger: Bool = true) {
        self.source = source
        self.index = index
        self.value = value
        self.isDate = isDate
        self.isInteger = isInteger
    }

    public static let maxPerSource = 4

    /// Decimal numbers (digits with an optional fraction) not glued to a
    /// preceding letter (so hex ids and names like `user42` are skipped),
    /// and ISO 8601 date-times `YYYY-MM-DD[T ]HH:MM:SS[.fff]`.
    public static func scan(_ bytes: [UInt8], source: Source) -> [ProbeNumber] {
        var out: [ProbeNumber] = []
        var i = 0
        let n = bytes.count
        func isDigit(_ k: Int) -> Bool { k < n && HTTPBytes.isDigit(bytes[k]) }
        func isLetter(_ b: UInt8) -> Bool { (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A }
        while i < n && out.count < maxPerSource {
            guard HTTPBytes.isDigit(bytes[i]) else { i += 1; continue }
            let start = i
            while isDigit(i) { i += 1 }
            if start > 0 && (isLetter(bytes[start - 1]) || bytes[start - 1] == 0x2E) { continue }
            if i - start == 4, let (seconds, end) = isoDate(bytes, start) {
                out.append(ProbeNumber(source: source, index: out.count, value: seconds, isDate: true, isInteger: false))
                i = end
                continue
            }
            var end = i
            var isInteger = true
            if i + 1 < n && bytes[i] == 0x2E && isDigit(i + 1) {
                end = i + 1
                while isDigit(end) { end += 1 }
                isInteger = false
            }
            if i - start <= 19, let value = Double(String(decoding: bytes[start..<end], as: UTF8.self)) {
                out.append(ProbeNumber(source: source, index: out.count, value: value, isInteger: isInteger))
            }
            i = end
        }
        return out
    }

    /// `YYYY-MM-DD[T ]HH:MM:SS[.fraction]` at `s`, as seconds since the epoch
    /// (the zone is ignored: only differences are used), and the end index.
    static func isoDate(_ b: [UInt8], _ s: Int) -> (Double, Int)? {
        func num(_ at: Int, _ count: Int) -> Int? {
            guard at + count <= b.count else { return nil }
            var v = 0
            for k in at..<at + count {
                guard HTTPBytes.isDigit(b[k]) else { return nil }
                v = v * 10 + Int(b[k] - 0x30)
            }
            return v
        }
        func byte(_ at: Int, _ options: [UInt8]) -> Bool { at < b.count && options.contains(b[at]) }
        guard let year = num(s, 4), byte(s + 4, [0x2D]), let month = num(s + 5, 2), byte(s + 7, [0x2D]),
              let day = num(s + 8, 2), byte(s + 10, [0x54, 0x74, 0x20]),
              let hour = num(s + 11, 2), byte(s + 13, [0x3A]), let minute = num(s + 14, 2), byte(s + 16, [0x3A]),
              let second = num(s + 17, 2),
              (1...12).contains(month), (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
        var end = s + 19
        var fraction = 0.0
        if byte(end, [0x2E, 0x2C]) && end + 1 < b.count && HTTPBytes.isDigit(b[end + 1]) {
            var scale = 0.1
            end += 1
            while end < b.count && HTTPBytes.isDigit(b[end]) {
                fraction += Double(b[end] - 0x30) * scale
                scale /= 10
                end += 1
            }
        }
        let days = daysFromCivil(year, month, day)
        return (Double(days * 86_400 + hour * 3600 + minute * 60 + second) + fraction, end)
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
    static func daysFromCivil(_ year: Int, _ month: Int, _ day: Int) -> Int {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let doy = (153 * (month + (month > 2 ? -3 : 9)) + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }
}

/// Which number of the events is the sender's clock, and its unit.
public struct SenderClock: Equatable, Sendable {
    public enum Kind: String, Sendable {
        case epochSeconds = "epoch seconds"
        case epochMilliseconds = "epoch milliseconds"
        case epochMicroseconds = "epoch microseconds"
        case epochNanoseconds = "epoch nanoseconds"
        case isoDate = "ISO 8601 date-time"
        case monotonic = "monotonic clock"
    }

    public var source: ProbeNumber.Source
    public var index: Int
    public var kind: Kind
    /// Value units per second (1 for seconds, 1000 for ms, ...).
    public var unitsPerSecond: Double

    public init(source: ProbeNumber.Source, index: Int, kind: Kind, unitsPerSecond: Double) {
        self.source = source
        self.index = index
        self.kind = kind
        self.unitsPerSecond = unitsPerSecond
    }

    public var description: String {
        let ordinal = ["first", "second", "third", "fourth"][min(index, 3)]
        let place = source == .id ? "id" : "data"
        return "the event \(place)'s \(ordinal) number (\(kind.rawValue))"
    }

    /// Events with this clock, as (arrival, send time in ns relative to the
    /// first one; differences first, so large epoch values keep their precision).
    func samples(_ events: [ProbeMessage]) -> [(arrival: ProbeTime, sent: Double)] {
        let pairs = events.compactMap { e in e.numbers.first { $0.source == source && $0.index == index }.map { (e.time, $0.value) } }
        guard let first = pairs.first?.1 else { return [] }
        let nsPerUnit = 1e9 / unitsPerSecond
        return pairs.map { ($0.0, ($0.1 - first) * nsPerUnit) }
    }

    /// 2000-01-01 .. 2100-01-01 in epoch seconds.
    static let epochRange = 946_684_800.0...4_102_444_800.0
    /// A clock may step back this much (multi-threaded senders).
    static let backstepTolerance = 0.005

    /// The most plausible sender clock among the events' numbers, or nil.
    /// A candidate appears in at least 3 events and 80 % of them, and never
    /// goes backwards. Epoch values and ISO dates qualify by their range; any
    /// other number must advance like a clock (over at least 1 s its span in
    /// s, ms, us or ns is within a factor of 2 of the arrival span) and not
    /// be a counter (steps of 0 or 1 only).
    public static func detect(_ events: [ProbeMessage]) -> SenderClock? {
        guard events.count >= 3 else { return nil }
        var slots: [(ProbeNumber.Source, Int)] = []
        for e in events {
            for n in e.numbers where !slots.contains(where: { $0 == (n.source, n.index) }) {
                slots.append((n.source, n.index))
            }
        }
        var best: (clock: SenderClock, count: Int, rank: Int)? = nil
        for (source, index) in slots {
            let values = events.compactMap { e in e.numbers.first { $0.source == source && $0.index == index } }
            let times = events.compactMap { e in e.numbers.contains { $0.source == source && $0.index == index } ? e.time : nil }
            guard values.count >= 3, values.count * 5 >= events.count * 4 else { continue }
            guard let clock = classify(values, times: times, source: source, index: index) else { continue }
            let rank = clock.kind == .monotonic ? 1 : 0
            if let b = best, (b.rank, -b.count) <= (rank, -values.count) { continue }
            best = (clock, values.count, rank)
        }
        return best?.clock
    }

    static func classify(_ values: [ProbeNumber], times: [ProbeTime], source: ProbeNumber.Source, index: Int) -> SenderClock? {
        let v = values.map(\.value)
        if values.allSatisfy(\.isDate) {
            guard nonDecreasing(v, unitsPerSecond: 1) else { return nil }
            return SenderClock(source: source, index: index, kind: .isoDate, unitsPerSecond: 1)
        }
        guard !values.contains(where: \.isDate) else { return nil }
        let epochKinds: [(Kind, Double)] = [(.epochSeconds, 1), (.epochMilliseconds, 1e3), (.epochMicroseconds, 1e6), (.epochNanoseconds, 1e9)]
        for (kind, units) in epochKinds where v.allSatisfy({ epochRange.contains($0 / units) }) {
            guard nonDecreasing(v, unitsPerSecond: units) else { return nil }
            return SenderClock(source: source, index: index, kind: kind, unitsPerSecond: units)
        }
        // Monotonic: advances like a clock.
        guard nonDecreasing(v, unitsPerSecond: .infinity) else { return nil }
        let steps = zip(v, v.dropFirst()).map { $1 - $0 }
        if values.allSatisfy(\.isInteger) && steps.allSatisfy({ $0 == 0 || $0 == 1 }) { return nil }
        let valueSpan = v.last! - v.first!
        let arrivalSpan = Double(times.last! - times.first!) / 1e9
        guard valueSpan > 0, arrivalSpan >= 1 else { return nil }
        var best: (Double, Double)? = nil
        for units in [1.0, 1e3, 1e6, 1e9] {
            let ratio = valueSpan / units / arrivalSpan
            guard ratio >= 0.5 && ratio <= 2 else { continue }
            let distance = abs(ratio > 1 ? ratio : 1 / ratio)
            if best == nil || distance < best!.1 { best = (units, distance) }
        }
        guard let (units, _) = best else { return nil }
        return SenderClock(source: source, index: index, kind: .monotonic, unitsPerSecond: units)
    }

    static func nonDecreasing(_ v: [Double], unitsPerSecond: Double) -> Bool {
        let tolerance = unitsPerSecond.isFinite ? backstepTolerance * unitsPerSecond : 0
        return zip(v, v.dropFirst()).allSatisfy { $1 >= $0 - tolerance }
    }
}

/// How late events arrived relative to their send times.
public struct ProbeLateness: Equatable, Sendable {
    /// Events with a send time that were sent while the probe was connected.
    public var samples: Int
    /// Events held at least `lateThreshold`.
    public var late: Int
    /// The longest hold.
    public var maxDelay: ProbeTime
    /// Events sent before the probe connected (replayed history), left out.
    public var replayed: Int

    public static let lateThreshold: ProbeTime = 500_000_000

    /// Late means: held `lateThreshold` or more relative to the
    /// least-delayed event. An event whose delay exceeds its own arrival
    /// time (since the probe started) was sent before the probe connected;
    /// it says nothing about this connection's path.
    public static func measure(_ events: [ProbeMessage], clock: SenderClock) -> ProbeLateness {
        var samples = clock.samples(events)
        guard !samples.isEmpty else { return ProbeLateness(samples: 0, late: 0, maxDelay: 0, replayed: 0) }
        var replayed = 0
        for _ in 0..<3 {
            let base = samples.map { Double($0.arrival) - $0.sent }.min()!
            let fresh = samples.filter { Double($0.arrival) - $0.sent - base <= Double($0.arrival) + 250e6 }
            if fresh.count == samples.count { break }
            replayed += samples.count - fresh.count
            samples = fresh
        }
        let base = samples.map { Double($0.arrival) - $0.sent }.min()!
        let delays = samples.map { Double($0.arrival) - $0.sent - base }
        let late = delays.filter { $0 >= Double(lateThreshold) }.count
        return ProbeLateness(samples: samples.count, late: late, maxDelay: ProbeTime((delays.max() ?? 0).rounded()), replayed: replayed)
    }

    /// At least two events and a quarter of them held half a second or more.
    public var showsBuffering: Bool { late >= 2 && late * 4 >= samples }
}

/// Several events within `tight` of each other after a quiet gap.
public struct ProbeBurst: Equatable, Sendable {
    public var start: ProbeTime
    public var count: Int
    /// Quiet time before the burst (since the previous event).
    public var gapBefore: ProbeTime
    /// First to last event of the burst.
    public var span: ProbeTime

    public init(start: ProbeTime, count: Int, gapBefore: ProbeTime, span: ProbeTime) {
        self.start = start
        self.count = count
        self.gapBefore = gapBefore
        self.span = span
    }

    public static let tight: ProbeTime = 10_000_000
    public static let longGap: ProbeTime = 500_000_000
    public static let minCount = 3

    /// Bursts in sorted event times. The first group of the stream is not a
    /// burst (a server replaying history on connect looks like one).
    public static func find(_ times: [ProbeTime], tight: ProbeTime = tight, longGap: ProbeTime = longGap,
                            minCount: Int = minCount) -> [ProbeBurst] {
        var bursts: [ProbeBurst] = []
        var i = 0
        while i < times.count {
            var j = i
            while j + 1 < times.count && times[j + 1] - times[j] <= tight { j += 1 }
            let count = j - i + 1
            if i > 0 && count >= minCount && times[i] - times[i - 1] >= longGap {
                bursts.append(ProbeBurst(start: times[i], count: count, gapBefore: times[i] - times[i - 1],
                                         span: times[j] - times[i]))
            }
            i = j + 1
        }
        return bursts
    }
}

/// The buffering verdict over a probe's events.
public struct ProbeBuffering: Equatable, Sendable {
    public var clock: SenderClock?
    public var lateness: ProbeLateness?
    public var bursts: [ProbeBurst]
    public var detected: Bool
    /// "timestamps" or "bursts" when detected.
    public var method: String?
    /// Median bytes read per burst (wire bytes, framing included): the
    /// size a buffering hop releases at a time.
    public var burstBytes: Int?

    public init(events: [ProbeMessage], reads: [ProbeRead] = []) {
        let events = events.filter { $0.kind == .event }
        clock = SenderClock.detect(events)
        lateness = clock.map { ProbeLateness.measure(events, clock: $0) }
        bursts = ProbeBurst.find(events.map(\.time))
        if let lateness, lateness.samples >= 3 {
            // Send times are the better witness: a server that batches on
            // purpose makes bursts but no late events.
            detected = lateness.showsBuffering
            method = detected ? "timestamps" : nil
        } else {
            detected = bursts.count >= 2
            method = detected ? "bursts" : nil
        }
        if detected && !bursts.isEmpty && !reads.isEmpty {
            let sizes = bursts.map { b in
                reads.filter { $0.time >= b.start - ProbeBurst.tight && $0.time <= b.start + b.span + ProbeBurst.tight }
                    .reduce(0) { $0 + $1.bytes }
            }.sorted()
            burstBytes = sizes[sizes.count / 2]
        }
    }
}
