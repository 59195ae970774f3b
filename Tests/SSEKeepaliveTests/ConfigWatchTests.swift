import XCTest
@testable import SSEKeepalive

final class ConfigWatchTests: XCTestCase {
    // MARK: What to watch

    func testDirectoryOfTheFileWithItsNameAndTheConfigMapSwitch() {
        XCTAssertEqual(ConfigWatchTarget.targets(path: "/etc/sse-keepalive/sse-keepalive.yaml", resolved: nil),
                       [ConfigWatchTarget(directory: "/etc/sse-keepalive", names: ["sse-keepalive.yaml", "..data"])])
        XCTAssertEqual(ConfigWatchTarget.targets(path: "a.yaml", resolved: nil),
                       [ConfigWatchTarget(directory: ".", names: ["a.yaml", "..data"])])
        XCTAssertEqual(ConfigWatchTarget.targets(path: "/a.yaml", resolved: nil),
                       [ConfigWatchTarget(directory: "/", names: ["a.yaml", "..data"])])
    }

    func testASymlinkIntoAnotherDirectoryWatchesBoth() {
        XCTAssertEqual(ConfigWatchTarget.targets(path: "/etc/x.yaml", resolved: "/srv/conf/real.yaml"), [
            ConfigWatchTarget(directory: "/etc", names: ["x.yaml", "..data"]),
            ConfigWatchTarget(directory: "/srv/conf", names: ["real.yaml", "..data"]),
        ])
        XCTAssertEqual(ConfigWatchTarget.targets(path: "/etc/x.yaml", resolved: "/etc/y.yaml"), [
            ConfigWatchTarget(directory: "/etc", names: ["x.yaml", "y.yaml", "..data"]),
        ])
    }

    // MARK: Debounce

    func testTenWritesWithin100msGiveOneReload() {
        var d = ReloadDebounce(quietMs: 200, maxDelayMs: 2000, loaded: Array("v1".utf8))
        var due = 0
        for t in stride(from: 1000, through: 1090, by: 10) { due = d.changed(atMs: t) }
        XCTAssertEqual(due, 1290, "quiet period after the last write")
        XCTAssertEqual(d.decide(atMs: 1200, content: { Array("v2".utf8) }), .wait(untilMs: 1290))
        XCTAssertEqual(d.decide(atMs: 1290, content: { Array("v2".utf8) }), .reload)
        XCTAssertEqual(d.decide(atMs: 1300, content: { Array("v2".utf8) }), .idle)
        XCTAssertFalse(d.pending)
    }

    func testEndlessWritesStillReloadAfterMaxDelay() {
        var d = ReloadDebounce(quietMs: 200, maxDelayMs: 1000, loaded: nil)
        XCTAssertEqual(d.changed(atMs: 0), 200)
        XCTAssertEqual(d.changed(atMs: 100), 300)
        for t in stride(from: 200, through: 800, by: 100) { _ = d.changed(atMs: t) }
        XCTAssertEqual(d.changed(atMs: 900), 1000, "capped at first event + max delay")
        XCTAssertEqual(d.decide(atMs: 950, content: { [1] }), .wait(untilMs: 1000))
        XCTAssertEqual(d.decide(atMs: 1000, content: { [1] }), .reload)
        XCTAssertEqual(d.changed(atMs: 1000), 1200, "a new burst starts its own window")
    }

    func testSameBytesDoNotReloadButNewOnesDo() {
        var d = ReloadDebounce(quietMs: 100, loaded: Array("v1".utf8))
        _ = d.changed(atMs: 0)
        XCTAssertEqual(d.decide(atMs: 100, content: { Array("v1".utf8) }), .unchanged)
        _ = d.changed(atMs: 200)
        XCTAssertEqual(d.decide(atMs: 300, content: { Array("v2".utf8) }), .reload)
        _ = d.changed(atMs: 400)
        XCTAssertEqual(d.decide(atMs: 500, content: { Array("v2".utf8) }), .unchanged, "compared with the last reload")
    }

    func testAnUnreadableFileReloadsOnceSoTheErrorIsReported() {
        var d = ReloadDebounce(quietMs: 100, loaded: Array("v1".utf8))
        _ = d.changed(atMs: 0)
        XCTAssertEqual(d.decide(atMs: 100, content: { nil }), .reload)
        _ = d.changed(atMs: 200)
        XCTAssertEqual(d.decide(atMs: 300, content: { nil }), .unchanged, "still missing: said once")
        _ = d.changed(atMs: 400)
        XCTAssertEqual(d.decide(atMs: 500, content: { Array("v1".utf8) }), .reload, "back again")
    }

    func testNothingPendingIsIdle() {
        var d = ReloadDebounce(loaded: nil)
        XCTAssertEqual(d.decide(atMs: 5, content: { XCTFail("not read"); return nil }), .idle)
    }

    // MARK: inotify records

    func record(wd: Int32, mask: UInt32, name: String, padTo: Int) -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: wd) { bytes += $0 }
        withUnsafeBytes(of: mask) { bytes += $0 }
        withUnsafeBytes(of: UInt32(0)) { bytes += $0 }
        withUnsafeBytes(of: UInt32(padTo)) { bytes += $0 }
        var name = Array(name.utf8)
        name += [UInt8](repeating: 0, count: padTo - name.count)
        return bytes + name
    }

    func testInotifyRecordsAreSplitAndNamesUnpadded() {
        let bytes = record(wd: 1, mask: 0x80, name: "..data", padTo: 16) + record(wd: 2, mask: 0x8, name: "", padTo: 0)
            + record(wd: 1, mask: 0x100, name: "sse-keepalive.yaml", padTo: 32)
        let records = bytes.withUnsafeBytes { InotifyRecord.parse($0) }
        XCTAssertEqual(records, [
            InotifyRecord(watch: 1, mask: 0x80, name: "..data"),
            InotifyRecord(watch: 2, mask: 0x8, name: ""),
            InotifyRecord(watch: 1, mask: 0x100, name: "sse-keepalive.yaml"),
        ])
    }

    func testATruncatedRecordIsDropped() {
        let bytes = record(wd: 1, mask: 0x80, name: "a", padTo: 16) + Array(record(wd: 1, mask: 0x80, name: "b", padTo: 16).prefix(20))
        XCTAssertEqual(bytes.withUnsafeBytes { InotifyRecord.parse($0) }, [InotifyRecord(watch: 1, mask: 0x80, name: "a")])
        XCTAssertEqual([UInt8](repeating: 0, count: 10).withUnsafeBytes { InotifyRecord.parse($0) }, [])
    }
}
