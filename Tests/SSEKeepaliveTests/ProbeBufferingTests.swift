import XCTest
@testable import SSEKeepalive

private let ms: ProbeTime = 1_000_000
private let sec: ProbeTime = 1_000_000_000

final class ProbeBufferingTests: XCTestCase {
    func testNumberScan() {
        func values(_ text: String) -> [Double] { ProbeNumber.scan(Array(text.utf8), source: .data).map(\.value) }
        XCTAssertEqual(values("{\"ts\":1712345678901,\"n\":3}"), [1712345678901, 3])
        XCTAssertEqual(values("t=1712345678.125"), [1712345678.125])
        XCTAssertEqual(values("user42 v1.2.3 id-7"), [7], "glued to letters or after a dot: skipped")
        XCTAssertEqual(values("550e8400-e29b"), [550])
        XCTAssertEqual(values("1 2 3 4 5 6"), [1, 2, 3, 4], "at most four per source")
        XCTAssertEqual(values("no numbers"), [])
        let iso = ProbeNumber.scan(Array("at 2024-04-05T12:34:56.250Z ok".utf8), source: .id)
        XCTAssertEqual(iso.count, 1)
        XCTAssertEqual(iso.first?.isDate, true)
        XCTAssertEqual(iso.first?.value, 1712320496.25)
        XCTAssertEqual(iso.first?.source, .id)
        XCTAssertEqual(ProbeNumber.scan(Array("2024-04-05 12:34:56".utf8), source: .data).first?.value, 1712320496)
        XCTAssertEqual(values("2024-13-05T12:34:56"), [2024, 13, 5, 34], "not a date: plain numbers (12 is glued to the T)")
        XCTAssertEqual(ProbeNumber.daysFromCivil(1970, 1, 1), 0)
        XCTAssertEqual(ProbeNumber.daysFromCivil(2000, 3, 1), 11017)
        XCTAssertEqual(ProbeNumber.daysFromCivil(1969, 12, 31), -1)
    }

    /// Events at `arrivals` (ns) whose data carries `text(i)`.
    static func events(_ arrivals: [ProbeTime], _ text: (Int) -> String, id: ((Int) -> String)? = nil) -> [ProbeMessage] {
        arrivals.enumerated().map { i, t in
            let idText = id?(i)
            let numbers = ProbeNumber.scan(Array((idText ?? "").utf8), source: .id) + ProbeNumber.scan(Array(text(i).utf8), source: .data)
            return ProbeMessage(kind: .event, time: t, type: "message", id: idText, text: text(i), numbers: numbers)
        }
    }

    /// Sent every 100 ms from `start`; a buffer flushes every `flushEvery` events.
    static func buffered(count: Int, flushEvery: Int) -> [ProbeTime] {
        (0..<count).map { (i: Int) -> ProbeTime in ProbeTime((i / flushEvery + 1) * flushEvery * 100) * ms + 5 * ms }
    }

    func testClockDetection() {
        let onTime = (0..<10).map { ProbeTime($0) * 100 * ms + 3 * ms }
        let epochMs = 1_712_345_678_000.0
        var cases: [(String, [ProbeMessage], SenderClock.Kind?)] = []
        cases.append(("epoch ms in data", Self.events(onTime, { "{\"ts\":\(Int(epochMs) + $0 * 100)}" }), .epochMilliseconds))
        cases.append(("epoch s with fraction in id", Self.events(onTime, { _ in "x" }, id: { "\(1_712_345_678.0 + Double($0) / 10)" }), .epochSeconds))
        cases.append(("epoch us", Self.events(onTime, { "\(1_712_345_678_000_000 + $0 * 100_000)" }), .epochMicroseconds))
        cases.append(("epoch ns", Self.events(onTime, { "\(1_712_345_678_000_000_000 + $0 * 100_000_000)" }), .epochNanoseconds))
        cases.append(("iso", Self.events(onTime, { "2024-04-05T12:34:5\($0).000Z" }), .isoDate))
        cases.append(("monotonic ms since boot", Self.events((0..<20).map { ProbeTime($0) * 100 * ms }, { "up=\(5000.5 + Double($0) * 100)" }), .monotonic))
        cases.append(("counter ids are not a clock", Self.events((0..<20).map { ProbeTime($0) * sec }, { _ in "x" }, id: { "\($0 + 1)" }), nil))
        cases.append(("random numbers", Self.events(onTime, { ["17", "3", "99", "5", "40", "2", "77", "8", "1", "60"][$0] }), nil))
        cases.append(("too few events", Self.events(Array(onTime.prefix(2)), { "\(Int(epochMs) + $0)" }), nil))
        cases.append(("in too few events", Self.events(onTime, { $0 < 7 ? "x" : "\(Int(epochMs) + $0)" }), nil))
        cases.append(("epoch going backwards", Self.events(onTime, { "\(Int(epochMs) - $0 * 1000)" }), nil))
        cases.append(("monotonic too slow to be a clock", Self.events((0..<20).map { ProbeTime($0) * 100 * ms }, { "v=\(10.5 + Double($0) * 0.01)" }), nil))
        for (name, events, kind) in cases {
            XCTAssertEqual(SenderClock.detect(events)?.kind, kind, name)
        }
        // The id wins over data on a tie; epoch wins over monotonic.
        let both = Self.events(onTime, { "\(Int(epochMs) + $0 * 100)" }, id: { "\(1_712_345_678 + $0)" })
        XCTAssertEqual(SenderClock.detect(both)?.source, .id)
    }

    func testLatenessAndBufferingFromTimestamps() {
        let epochMs = 1_712_345_678_000
        // Sent every 100 ms, flushed in groups of 10: up to ~0.9 s late.
        let held = Self.events(Self.buffered(count: 40, flushEvery: 10), { "{\"ts\":\(epochMs + $0 * 100)}" })
        let clock = SenderClock.detect(held)!
        let late = ProbeLateness.measure(held, clock: clock)
        XCTAssertEqual(late.samples, 40)
        XCTAssertEqual(late.late, 20, "events held 0.5 s or more: 5 of each 10")
        XCTAssertEqual(late.maxDelay, 900 * ms)
        XCTAssertTrue(late.showsBuffering)
        let verdict = ProbeBuffering(events: held)
        XCTAssertTrue(verdict.detected)
        XCTAssertEqual(verdict.method, "timestamps")

        // On time with 40 ms of jitter: fine.
        let jitter = Self.events((0..<40).map { ProbeTime($0) * 100 * ms + ProbeTime(($0 * 37) % 40) * ms },
                                 { "{\"ts\":\(epochMs + $0 * 100)}" })
        XCTAssertFalse(ProbeBuffering(events: jitter).detected)
        XCTAssertEqual(ProbeBuffering(events: jitter).clock?.kind, .epochMilliseconds)

        // A server that batches on purpose: bursts, but nothing late.
        let batches = Self.events((0..<40).map { ProbeTime($0 / 10) * sec + ProbeTime($0 % 10) * ms + sec },
                                  { "{\"ts\":\(epochMs + ($0 / 10) * 1000 + ($0 % 10))}" })
        let b = ProbeBuffering(events: batches)
        XCTAssertEqual(b.bursts.count, 3)
        XCTAssertFalse(b.detected, "send times say the events were not held")
    }

    func testReplayedHistoryIsNotBuffering() {
        let epochMs = 1_712_345_678_000
        // Five events from an hour ago replayed at connect, then live events on time.
        let arrivals = (0..<5).map { _ in 10 * ms } + (1...20).map { ProbeTime($0) * 200 * ms }
        let events = Self.events(arrivals, { i in
            i < 5 ? "{\"ts\":\(epochMs - 3_600_000 + i)}" : "{\"ts\":\(epochMs + 10_000 + (i - 4) * 200)}"
        })
        let clock = SenderClock.detect(events)!
        let late = ProbeLateness.measure(events, clock: clock)
        XCTAssertEqual(late.replayed, 5)
        XCTAssertEqual(late.samples, 20)
        XCTAssertEqual(late.late, 0)
        XCTAssertFalse(ProbeBuffering(events: events).detected)
    }

    func testBursts() {
        XCTAssertEqual(ProbeBurst.find([]), [])
        XCTAssertEqual(ProbeBurst.find([0, 1 * ms, 2 * ms]), [], "the first group is never a burst")
        XCTAssertEqual(ProbeBurst.find([0, 1000 * ms, 1001 * ms, 1003 * ms]),
                       [ProbeBurst(start: 1000 * ms, count: 3, gapBefore: 1000 * ms, span: 3 * ms)])
        XCTAssertEqual(ProbeBurst.find([0, 1000 * ms, 1001 * ms]), [], "two events are not a burst")
        XCTAssertEqual(ProbeBurst.find([0, 400 * ms, 401 * ms, 402 * ms]), [], "after a short gap")
        XCTAssertEqual(ProbeBurst.find([0, 1000 * ms, 1020 * ms, 1040 * ms]), [], "spread over 40 ms")
        XCTAssertEqual(ProbeBurst.find([0, 600 * ms, 600 * ms, 600 * ms, 600 * ms, 1500 * ms, 1500 * ms, 1509 * ms]).map(\.count), [4, 3])

        // Without send times, two bursts are enough.
        let times = [0, 1000 * ms, 1000 * ms, 1000 * ms, 2000 * ms, 2001 * ms, 2002 * ms]
        let bursty = Self.events(times, { _ in "x" })
        let verdict = ProbeBuffering(events: bursty)
        XCTAssertTrue(verdict.detected)
        XCTAssertEqual(verdict.method, "bursts")
        XCTAssertFalse(ProbeBuffering(events: Array(bursty.prefix(4))).detected, "one burst is only a note")
    }

    func testGaps() {
        XCTAssertNil(ProbeGaps(times: []))
        XCTAssertNil(ProbeGaps(times: [5]))
        XCTAssertEqual(ProbeGaps(times: [0, 10]), ProbeGaps(count: 1, min: 10, median: 10, max: 10))
        XCTAssertEqual(ProbeGaps(times: [0, 1, 3, 6]), ProbeGaps(count: 3, min: 1, median: 2, max: 3))
        XCTAssertEqual(ProbeGaps(times: [0, 10, 30, 60, 100]), ProbeGaps(count: 4, min: 10, median: 25, max: 40))
        XCTAssertEqual(ProbeGaps(times: [0, 0, 0]), ProbeGaps(count: 2, min: 0, median: 0, max: 0))
        XCTAssertEqual(ProbeGaps(times: [0, 500, 600, 2600]), ProbeGaps(count: 3, min: 100, median: 500, max: 2000))
    }
}
