// Upstream host names that move (a Kubernetes Service, a Compose service):
// when to look them up again, what a lookup result changes, and which of a
// name's addresses the next connect uses. The lookups run on a thread of
// their own (Runtime/UpstreamResolver.swift); these types only decide.

/// The last good addresses of one upstream name and what a new lookup means.
/// A name that stops resolving keeps its last good addresses (one warning,
/// not one per lookup); only a change of the set of addresses is a change
/// (resolvers rotate the order of the same answer).
public struct NameResolution<Address: Hashable & Sendable>: Sendable {
    public enum Outcome: Equatable, Sendable {
        case unchanged
        /// New addresses; `recovered` when the name had been failing.
        case changed(to: [Address], recovered: Bool)
        /// Same addresses as before the failure.
        case recovered
        /// The lookup failed or came back empty; the last good addresses stay.
        /// `firstFailure`: log it (once per outage).
        case keptAfterFailure(firstFailure: Bool)
    }

    public private(set) var addresses: [Address]
    public private(set) var failing = false

    public init(addresses: [Address]) {
        self.addresses = addresses
    }

    public mutating func resolved(_ new: [Address]) -> Outcome {
        guard !new.isEmpty else { return failed() }
        let wasFailing = failing
        failing = false
        if Set(new) == Set(addresses) { return wasFailing ? .recovered : .unchanged }
        addresses = new
        return .changed(to: new, recovered: wasFailing)
    }

    public mutating func failed() -> Outcome {
        defer { failing = true }
        return .keptAfterFailure(firstFailure: !failing)
    }
}

/// When the resolver thread looks names up: every `interval`, and soon after
/// a connect failure, but never more often than `minimumGap` (a dead upstream
/// fails every request; one lookup per second is enough).
public struct ResolveSchedule: Sendable {
    /// nil: no periodic lookups (`upstream_resolve: off`).
    public let intervalMs: Int?
    public let minimumGapMs: Int
    private var lastRunMs: Int
    private var triggered = false

    public init(intervalMs: Int?, minimumGapMs: Int = 1000, startedAtMs: Int) {
        self.intervalMs = intervalMs
        self.minimumGapMs = minimumGapMs
        self.lastRunMs = startedAtMs
    }

    /// A connect to one of the addresses failed.
    public mutating func connectFailed() { triggered = true }

    /// When the next lookup is due; nil: not until something triggers it.
    public var nextDueMs: Int? {
        let periodic = intervalMs.map { lastRunMs + $0 }
        let early = triggered ? lastRunMs + minimumGapMs : nil
        switch (periodic, early) {
        case let (p?, e?): return min(p, e)
        case let (p?, nil): return p
        case let (nil, e?): return e
        case (nil, nil): return nil
        }
    }

    public func isDue(atMs now: Int) -> Bool { nextDueMs.map { now >= $0 } ?? false }

    public mutating func ran(atMs now: Int) {
        lastRunMs = now
        triggered = false
    }
}

/// Which of a name's addresses the next connect uses: round robin, skipping
/// an address whose connect failed within `holdMs`, unless all of them did
/// (then round robin over all: one may be back).
public struct CandidatePicker: Sendable {
    public let count: Int
    public let holdMs: Int
    private var cursor = 0
    private var failedAtMs: [Int?]

    public init(count: Int, holdMs: Int = 10_000) {
        precondition(count > 0)
        self.count = count
        self.holdMs = holdMs
        self.failedAtMs = Array(repeating: nil, count: count)
    }

    public mutating func next(atMs now: Int) -> Int {
        for step in 0..<count {
            let index = (cursor + step) % count
            if let failed = failedAtMs[index], now - failed < holdMs { continue }
            cursor = (index + 1) % count
            return index
        }
        let index = cursor
        cursor = (cursor + 1) % count
        return index
    }

    public mutating func failed(_ index: Int, atMs now: Int) {
        guard index >= 0 && index < count else { return }
        failedAtMs[index] = now
    }

    public mutating func connected(_ index: Int) {
        guard index >= 0 && index < count else { return }
        failedAtMs[index] = nil
    }
}
