import XCTest
@testable import SSEKeepalive

final class SSELeadingBOMGateTests: XCTestCase {
    private func take(_ gate: inout LeadingBOMGate, _ bytes: [UInt8]) -> LeadingBOMGate.Outcome {
        bytes.withUnsafeBytes { gate.take($0) }
    }

    func testIdleUntilAHeartbeatPrecedesThePayload() {
        let gate = LeadingBOMGate()
        XCTAssertEqual(gate.wants(10), 0, "without a heartbeat a BOM is still the stream's start")
    }

    func testDropsALeadingBOMAfterAHeartbeat() {
        var gate = LeadingBOMGate()
        gate.heartbeatWritten()
        XCTAssertEqual(gate.wants(10), 3)
        XCTAssertEqual(take(&gate, [0xEF, 0xBB, 0xBF]), .dropped)
        XCTAssertEqual(gate.wants(10), 0)
    }

    func testHoldsABOMSplitAcrossReads() {
        var gate = LeadingBOMGate()
        gate.heartbeatWritten()
        XCTAssertEqual(gate.wants(1), 1)
        XCTAssertEqual(take(&gate, [0xEF]), .holding)
        XCTAssertEqual(gate.held, [0xEF])
        XCTAssertEqual(gate.wants(5), 2)
        XCTAssertEqual(take(&gate, [0xBB, 0xBF]), .dropped)
        XCTAssertEqual(gate.held, [])
    }

    func testReleasesAPrefixThatIsNotABOM() {
        var gate = LeadingBOMGate()
        gate.heartbeatWritten()
        XCTAssertEqual(take(&gate, [0xEF, 0xBB]), .holding)
        XCTAssertEqual(take(&gate, [0x41]), .release([0xEF, 0xBB, 0x41]))
        XCTAssertEqual(gate.wants(3), 0)
    }

    func testReleasesHeldBytesAtTheEndOfTheStream() {
        var gate = LeadingBOMGate()
        gate.heartbeatWritten()
        XCTAssertEqual(take(&gate, [0xEF]), .holding)
        XCTAssertEqual(gate.finish(), .release([0xEF]))
    }

    /// Found by the sse_heartbeat fuzzer: after the leading BOM was dropped, a
    /// second BOM is payload (part of the first field name) and must be kept,
    /// even if another heartbeat goes out before it.
    func testOnlyTheLeadingBOMIsEverDropped() {
        var gate = LeadingBOMGate()
        gate.heartbeatWritten()
        XCTAssertEqual(take(&gate, [0xEF, 0xBB, 0xBF]), .dropped)
        gate.heartbeatWritten()
        XCTAssertEqual(gate.wants(3), 0)
    }

    func testPayloadBeforeAnyHeartbeatDisarmsTheGate() {
        var gate = LeadingBOMGate()
        gate.payloadForwarded()
        gate.heartbeatWritten()
        XCTAssertEqual(gate.wants(3), 0)
    }
}
