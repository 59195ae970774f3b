import CLibevent

/// Thin helpers over a libevent `evbuffer*`; no ownership.
struct EvBuffer {
    let raw: OpaquePointer

    init(_ raw: OpaquePointer) { self.raw = raw }

    var count: Int { evbuffer_get_length(raw) }

    /// A contiguous view of the first `count` bytes (rearranges chains if needed).
    func pullup<R>(_ count: Int, _ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        let n = min(count, self.count)
        guard n > 0, let start = evbuffer_pullup(raw, n) else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeRawBufferPointer(start: start, count: n))
    }

    /// The first contiguous extent, without copying.
    func firstExtent<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        var vec = iovec()
        let n = evbuffer_peek(raw, -1, nil, &vec, 1)
        guard n > 0, vec.iov_len > 0 else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeRawBufferPointer(start: vec.iov_base, count: vec.iov_len))
    }

    /// Copies up to `tail.count` bytes ending at offset `end` into `tail`; returns how many.
    func copyTail(endingAt end: Int, into tail: inout (UInt8, UInt8, UInt8)) -> Int {
        let n = min(3, end)
        guard n > 0 else { return 0 }
        var position = evbuffer_ptr()
        guard evbuffer_ptr_set(raw, &position, end - n, EVBUFFER_PTR_SET) == 0 else { return 0 }
        return withUnsafeMutableBytes(of: &tail) { dst in
            Int(evbuffer_copyout_from(raw, &position, dst.baseAddress, n))
        }
    }

    func drain(_ count: Int) { evbuffer_drain(raw, count) }

    func add(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { _ = evbuffer_add(raw, $0.baseAddress, $0.count) }
    }

    func add(_ bytes: UnsafeRawBufferPointer) {
        _ = evbuffer_add(raw, bytes.baseAddress, bytes.count)
    }

    /// Moves `count` bytes from the front of `self` to the end of `destination` (splices chains).
    func move(_ count: Int, to destination: EvBuffer) {
        _ = evbuffer_remove_buffer(raw, destination.raw, count)
    }
}

/// `ExchangeIO`'s queries for a runtime whose sides are evbuffers (`Connection`,
/// `SharedUpstream`): they differ in where the buffers are, not in how they are read.
protocol EvBufferExchangeIO: ExchangeIO {
    func input(_ side: Side) -> EvBuffer
    func output(_ side: Side) -> EvBuffer
}

extension EvBufferExchangeIO {
    func inputCount(_ side: Side) -> Int { input(side).count }

    func withInputPrefix<R>(_ side: Side, limit: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        input(side).pullup(limit, body)
    }

    func withFirstInputExtent<R>(_ side: Side, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        input(side).firstExtent(body)
    }

    func inputTail(_ side: Side, endingAt end: Int) -> InputTail {
        var tail = InputTail()
        tail.count = input(side).copyTail(endingAt: end, into: &tail.bytes)
        return tail
    }

    func outputCount(_ side: Side) -> Int { output(side).count }

    func now() -> Int { MonotonicClock.milliseconds() }

    func describe(errno code: Int32) -> String { SocketErrors.describe(code) }

    func random(below n: Int) -> Int { Int.random(in: 0..<n) }
}
