import XCTest
@testable import SSEKeepalive

final class UpstreamResolutionTests: XCTestCase {
    // MARK: NameResolution

    func testSameSetInAnotherOrderIsUnchanged() {
        var n = NameResolution(addresses: ["a", "b"])
        XCTAssertEqual(n.resolved(["b", "a"]), .unchanged)
        XCTAssertEqual(n.addresses, ["a", "b"], "the order in use stays")
    }

    func testNewAddressesAreAChange() {
        var n = NameResolution(addresses: ["a"])
        XCTAssertEqual(n.resolved(["b", "c"]), .changed(to: ["b", "c"], recovered: false))
        XCTAssertEqual(n.addresses, ["b", "c"])
    }

    func testFailuresKeepTheLastGoodAddressesAndWarnOncePerOutage() {
        var n = NameResolution(addresses: ["a"])
        XCTAssertEqual(n.failed(), .keptAfterFailure(firstFailure: true))
        XCTAssertEqual(n.failed(), .keptAfterFailure(firstFailure: false))
        XCTAssertEqual(n.resolved([]), .keptAfterFailure(firstFailure: false), "an empty answer is a failure")
        XCTAssertEqual(n.addresses, ["a"])
        XCTAssertTrue(n.failing)
        XCTAssertEqual(n.resolved(["a"]), .recovered)
        XCTAssertFalse(n.failing)
        XCTAssertEqual(n.failed(), .keptAfterFailure(firstFailure: true), "a new outage warns again")
        XCTAssertEqual(n.resolved(["z"]), .changed(to: ["z"], recovered: true))
    }

    // MARK: ResolveSchedule

    func testPeriodicLookups() {
        var s = ResolveSchedule(intervalMs: 30_000, startedAtMs: 1000)
        XCTAssertEqual(s.nextDueMs, 31_000)
        XCTAssertFalse(s.isDue(atMs: 30_999))
        XCTAssertTrue(s.isDue(atMs: 31_000))
        s.ran(atMs: 31_002)
        XCTAssertEqual(s.nextDueMs, 61_002)
    }

    func testAConnectFailureBringsTheLookupForwardButNotCloserThanTheGap() {
        var s = ResolveSchedule(intervalMs: 30_000, minimumGapMs: 1000, startedAtMs: 0)
        s.ran(atMs: 10_000)
        s.connectFailed()
        XCTAssertEqual(s.nextDueMs, 11_000)
        s.ran(atMs: 11_000)
        XCTAssertEqual(s.nextDueMs, 41_000, "the trigger is used up by the lookup")
        s.ran(atMs: 20_000)
        s.connectFailed()
        s.connectFailed()
        XCTAssertEqual(s.nextDueMs, 21_000, "many failures, one lookup")
    }

    func testOffLooksUpOnlyAfterFailures() {
        var s = ResolveSchedule(intervalMs: nil, startedAtMs: 0)
        XCTAssertNil(s.nextDueMs)
        XCTAssertFalse(s.isDue(atMs: .max / 2))
        s.connectFailed()
        XCTAssertEqual(s.nextDueMs, 1000)
    }

    // MARK: CandidatePicker

    func testRoundRobinOverAllAddresses() {
        var p = CandidatePicker(count: 3)
        XCTAssertEqual((0..<6).map { _ in p.next(atMs: 0) }, [0, 1, 2, 0, 1, 2])
    }

    func testAFailedAddressIsSkippedForTheHoldThenTriedAgain() {
        var p = CandidatePicker(count: 3, holdMs: 10_000)
        p.failed(1, atMs: 100)
        XCTAssertEqual((0..<4).map { _ in p.next(atMs: 200) }, [0, 2, 0, 2])
        XCTAssertEqual((0..<3).map { _ in p.next(atMs: 10_100) }, [0, 1, 2], "hold over")
    }

    func testAllFailedStillTakesTurnsAndASuccessClearsTheHold() {
        var p = CandidatePicker(count: 2, holdMs: 10_000)
        p.failed(0, atMs: 0)
        p.failed(1, atMs: 0)
        XCTAssertEqual([p.next(atMs: 1), p.next(atMs: 1), p.next(atMs: 1)], [0, 1, 0])
        p.connected(1)
        XCTAssertEqual([p.next(atMs: 2), p.next(atMs: 2)], [1, 1])
        p.failed(7, atMs: 0)  // out of range: ignored
    }
}
