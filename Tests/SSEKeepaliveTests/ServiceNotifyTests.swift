import XCTest
@testable import SSEKeepalive

final class ServiceNotifyTests: XCTestCase {
    func testNotifySocketPathIsNulTerminated() throws {
        let address = try XCTUnwrap(try NotifySocketAddress.parse("/run/systemd/notify"))
        XCTAssertEqual(address, .path("/run/systemd/notify"))
        XCTAssertEqual(address.sunPath, Array("/run/systemd/notify".utf8) + [0])
    }

    func testAbstractNameStartsWithNulAndHasNoTerminator() throws {
        let address = try XCTUnwrap(try NotifySocketAddress.parse("@sd-notify/123"))
        XCTAssertEqual(address, .abstract("sd-notify/123"))
        XCTAssertEqual(address.sunPath, [0] + Array("sd-notify/123".utf8))
        XCTAssertEqual(address.description, "@sd-notify/123")
    }

    func testUnsetOrEmptyMeansNoNotifications() throws {
        XCTAssertNil(try NotifySocketAddress.parse(nil))
        XCTAssertNil(try NotifySocketAddress.parse(""))
    }

    func testRelativeVsockAndOverlongAddressesAreRefused() {
        XCTAssertThrowsError(try NotifySocketAddress.parse("notify.sock"))
        XCTAssertThrowsError(try NotifySocketAddress.parse("vsock:2:1234"))
        XCTAssertThrowsError(try NotifySocketAddress.parse("/" + String(repeating: "a", count: 107)))
        XCTAssertNoThrow(try NotifySocketAddress.parse("/" + String(repeating: "a", count: 106)))
        XCTAssertThrowsError(try NotifySocketAddress.parse("@" + String(repeating: "a", count: 108)))
        XCTAssertNoThrow(try NotifySocketAddress.parse("@" + String(repeating: "a", count: 107)))
    }

    func testWatchdogPingsAtHalfTheInterval() {
        XCTAssertEqual(WatchdogInterval.ping(usec: "30000000", pid: nil, ownPID: 7), .seconds(15))
        XCTAssertEqual(WatchdogInterval.ping(usec: "400000", pid: "7", ownPID: 7), TimeSpan(milliseconds: 200))
        XCTAssertEqual(WatchdogInterval.ping(usec: "1", pid: "", ownPID: 7), TimeSpan(milliseconds: 1))
    }

    func testWatchdogForAnotherProcessOrMalformedIsOff() {
        XCTAssertNil(WatchdogInterval.ping(usec: "30000000", pid: "8", ownPID: 7))
        XCTAssertNil(WatchdogInterval.ping(usec: "30000000", pid: "x", ownPID: 7))
        XCTAssertNil(WatchdogInterval.ping(usec: nil, pid: nil, ownPID: 7))
        XCTAssertNil(WatchdogInterval.ping(usec: "0", pid: nil, ownPID: 7))
        XCTAssertNil(WatchdogInterval.ping(usec: "-5", pid: nil, ownPID: 7))
        XCTAssertNil(WatchdogInterval.ping(usec: "15s", pid: nil, ownPID: 7))
    }

    func testMessagesFollowTheProtocolOrder() {
        var n = ServiceNotifications()
        XCTAssertNil(n.reloadBegins(monotonicMicroseconds: 1), "no reload before READY")
        XCTAssertEqual(n.listenersOpen(), "READY=1")
        XCTAssertNil(n.listenersOpen(), "READY=1 once at start")
        XCTAssertEqual(n.reloadBegins(monotonicMicroseconds: 1_234_567), "RELOADING=1\nMONOTONIC_USEC=1234567")
        XCTAssertEqual(n.phase, .reloading)
        XCTAssertEqual(n.reloadEnds(), "READY=1\nSTATUS=configuration reloaded")
        XCTAssertNil(n.reloadEnds(), "no READY without a reload in progress")
        XCTAssertEqual(n.reloadBegins(monotonicMicroseconds: 9), "RELOADING=1\nMONOTONIC_USEC=9")
        XCTAssertEqual(n.reloadEnds(rejected: "a.yaml:3:1: heartbeat: bad\nsecond line"),
                       "READY=1\nSTATUS=reload rejected, the running configuration stays: a.yaml:3:1: heartbeat: bad second line")
        XCTAssertEqual(n.drainBegins(), "STOPPING=1")
        XCTAssertNil(n.drainBegins(), "STOPPING=1 once")
        XCTAssertNil(n.reloadBegins(monotonicMicroseconds: 10), "no reload while stopping")
        XCTAssertNil(n.listenersOpen())
        XCTAssertEqual(n.watchdog(), "WATCHDOG=1")
    }

    func testDrainDuringReloadStillSaysStopping() {
        var n = ServiceNotifications()
        _ = n.listenersOpen()
        _ = n.reloadBegins(monotonicMicroseconds: 1)
        XCTAssertEqual(n.drainBegins(), "STOPPING=1")
        XCTAssertNil(n.reloadEnds(), "after STOPPING=1 no READY=1")
    }
}
