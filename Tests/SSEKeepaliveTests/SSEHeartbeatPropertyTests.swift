import XCTest
@testable import SSEKeepalive

/// The seeded SplitMix64 generator of FuzzRegressionTests.swift.
typealias SeededRNG = FuzzRNG

extension SeededRNG {
    mutating func chance(_ p: Double) -> Bool { Double.random(in: 0..<1, using: &self) < p }
    mutating func pick<T>(_ xs: [T]) -> T { xs.randomElement(using: &self)! }
    mutating func int(_ r: ClosedRange<Int>) -> Int { Int.random(in: r, using: &self) }
}

/// Random event-stream payloads: fields, comments, ids, retry and blank lines
/// with random CR / LF / CRLF line ends, optional BOM, optional unterminated tail.
enum SSEPayloadGenerator {
    static let pieces: [[UInt8]] = [
        Array("a".utf8), Array("xyz".utf8), Array(" ".utf8), Array(":".utf8), Array("data".utf8),
        Array("id: 9".utf8), Array("caf\u{E9}".utf8), Array("\u{1F600}".utf8), [0xFF], [0xC3],
        [0xEF, 0xBB, 0xBF], [0x00], Array("heartbeat".utf8),
    ]

    static func value(_ rng: inout SeededRNG) -> [UInt8] {
        var v: [UInt8] = []
        for _ in 0..<rng.int(0...4) { v += rng.pick(pieces) }
        return v
    }

    static func line(_ rng: inout SeededRNG) -> [UInt8] {
        switch rng.int(0...11) {
        case 0, 1, 2: return Array("data:".utf8) + (rng.chance(0.7) ? [0x20] : []) + value(&rng)
        case 3: return Array("data".utf8)
        case 4: return Array("event: ".utf8) + rng.pick([Array("add".utf8), Array("remove".utf8), value(&rng)])
        case 5: return Array("id: ".utf8) + rng.pick([Array("1".utf8), Array("42".utf8), [], Array("a\0b".utf8), value(&rng)])
        case 6: return Array("id".utf8)
        case 7: return Array("retry: ".utf8) + rng.pick([Array("1000".utf8), Array("15x".utf8), [], Array("3".utf8)])
        case 8: return [0x3A] + value(&rng)                        // comment
        case 9: return Array("unknown: ".utf8) + value(&rng)
        default: return []                                         // blank line
        }
    }

    static func lineEnd(_ rng: inout SeededRNG) -> [UInt8] {
        rng.pick([[0x0A], [0x0A], [0x0D], [0x0D, 0x0A]])
    }

    static func payload(_ rng: inout SeededRNG) -> [UInt8] {
        var bytes: [UInt8] = []
        if rng.chance(0.3) { bytes += LeadingBOM.bytes }
        else if rng.chance(0.05) { bytes += rng.pick([[0xEF], [0xEF, 0xBB], [0xEF, 0xBB, 0xBE]]) }
        for _ in 0..<rng.int(0...14) {
            bytes += line(&rng)
            bytes += lineEnd(&rng)
            if rng.chance(0.25) { bytes += lineEnd(&rng) }           // end an event
        }
        if rng.chance(0.3) { bytes += line(&rng) }                 // unterminated tail
        return bytes
    }

    /// Random non-empty segment lengths covering `count` bytes.
    static func segments(_ count: Int, _ rng: inout SeededRNG) -> [Range<Int>] {
        var result: [Range<Int>] = []
        var at = 0
        while at < count {
            let n = rng.chance(0.2) ? rng.int(1...count) : rng.int(1...4)
            let end = min(count, at + n)
            result.append(at..<end)
            at = end
        }
        return result
    }
}

final class SSEHeartbeatPropertyTests: XCTestCase {
    struct Stats {
        var cases = 0, heartbeats = 0, boundary = 0, line = 0, refused = 0
        var bomsStripped = 0, earlyHeartbeats = 0, httpxDifferWithBlankLine = 0
    }

    func runCase(_ rng: inout SeededRNG, _ stats: inout Stats) {
        let input = SSEPayloadGenerator.payload(&rng)
        let blankLine = rng.chance(0.5)
        let comment = rng.pick(["heartbeat", "", "ping", "data: not an event", "id: 99", "\u{E9}"])
        let sim = EventStreamDriver(heartbeat: HeartbeatBytes(comment: comment, blankLine: blankLine), upstreamChunked: rng.chance(0.5))

        let early = rng.chance(0.5)
        if early {
            XCTAssertEqual(sim.idle(), .boundary)
            // A second one is the boundary form again, or (blank_line: false) the line form.
            if rng.chance(0.3) { XCTAssertEqual(sim.idle(), blankLine ? .boundary : .line) }
            stats.earlyHeartbeats += 1
        }
        for segment in SSEPayloadGenerator.segments(input.count, &rng) {
            sim.upstream(Array(input[segment]))
            if rng.chance(0.5) {
                for _ in 0..<rng.int(1...2) {
                    if sim.idle() == nil { stats.refused += 1 }
                }
            }
        }
        sim.endOfStream()
        if rng.chance(0.5) { _ = sim.idle() }   // idle after the last byte, before the close

        stats.cases += 1
        stats.heartbeats += sim.heartbeatForms.count
        stats.boundary += sim.heartbeatForms.filter { $0 == .boundary }.count
        stats.line += sim.heartbeatForms.filter { $0 == .line }.count
        if sim.bomStripped { stats.bomsStripped += 1 }

        let output = sim.output
        let context = "input \(input) output \(output) comment \(comment.debugDescription) blankLine \(blankLine)"

        // (a) Payload bytes are untouched, except a leading BOM after an early heartbeat.
        let stripped = early && input.starts(with: LeadingBOM.bytes)
        XCTAssertEqual(sim.bomStripped, stripped, context)
        let expectedPayload = stripped ? Array(input.dropFirst(3)) : input
        XCTAssertEqual(sim.outputWithoutHeartbeats, expectedPayload, context)
        // Every heartbeat starts at a line start of the output and is the route's bytes.
        for (range, form) in zip(sim.heartbeatRanges, sim.heartbeatForms) {
            XCTAssertEqual(Array(output[range]), sim.heartbeat.bytes(form), context)
            if range.lowerBound > 0 {
                XCTAssertTrue(output[range.lowerBound - 1] == 0x0A, "heartbeat not after LF: \(context)")
            }
        }

        // (b) WHATWG parsers see the same events, last event id and retry.
        XCTAssertEqual(WHATWGEventParser.parseAll(output), WHATWGEventParser.parseAll(input), context)

        // (c) With blank_line: false, httpx-sse 0.4 style parsers see no difference either.
        let httpxSame = HTTPXStyleEventParser.parseAll(output) == HTTPXStyleEventParser.parseAll(input)
        if !blankLine {
            XCTAssertTrue(httpxSame, context)
        } else if !httpxSame {
            stats.httpxDifferWithBlankLine += 1
        }
    }

    func testHeartbeatsNeverChangeWhatParsersSee() {
        // SSE_PROPERTY_SEED / SSE_PROPERTY_CASES override the fixed seed and count.
        let env = ProcessInfo.processInfo.environment
        let seed = env["SSE_PROPERTY_SEED"].flatMap { UInt64($0) } ?? 0x55E_4EA1_7B3A7
        let count = env["SSE_PROPERTY_CASES"].flatMap { Int($0) } ?? 4000
        var rng = SeededRNG(seed: seed)
        var stats = Stats()
        for _ in 0..<count { runCase(&rng, &stats) }
        guard count == 4000 else { return print("SSE property stats (seed \(seed)): \(stats)") }
        // The generator really exercises what it claims to.
        XCTAssertEqual(stats.cases, 4000)
        XCTAssertGreaterThan(stats.heartbeats, 4000)
        XCTAssertGreaterThan(stats.boundary, 1000)
        XCTAssertGreaterThan(stats.line, 500)
        XCTAssertGreaterThan(stats.refused, 500)
        XCTAssertGreaterThan(stats.bomsStripped, 200)
        // And the blank-line form does matter for httpx-style clients.
        XCTAssertGreaterThan(stats.httpxDifferWithBlankLine, 20)
        print("SSE property stats: \(stats)")
    }
}
