/// Log-linear latency histogram in nanoseconds: 64 sub-buckets per power of
/// two (about 1.6% resolution), fixed size, no allocation when recording.
struct Histogram {
    private static let subBits = 6
    private static let subCount = 1 << subBits
    private var buckets = [UInt64](repeating: 0, count: (64 - subBits + 1) * (1 << subBits))
    private(set) var count: UInt64 = 0
    private(set) var max: UInt64 = 0
    private(set) var sum: UInt64 = 0

    @inline(__always)
    private static func index(_ v: UInt64) -> Int {
        if v < UInt64(subCount) { return Int(v) }
        let e = 63 - v.leadingZeroBitCount          // >= subBits
        let m = Int((v >> UInt64(e - subBits)) & UInt64(subCount - 1))
        return (e - subBits + 1) * subCount + m
    }

    /// Lower bound of a bucket plus half its width.
    private static func value(at index: Int) -> UInt64 {
        if index < subCount { return UInt64(index) }
        let e = index / subCount + subBits - 1
        let m = UInt64(index % subCount)
        let low = (UInt64(1) << UInt64(e)) | (m << UInt64(e - subBits))
        return low + (UInt64(1) << UInt64(e - subBits)) / 2
    }

    @inline(__always)
    mutating func record(_ nanos: UInt64) {
        buckets[Self.index(nanos)] &+= 1
        count &+= 1
        sum &+= nanos
        if nanos > max { max = nanos }
    }

    mutating func reset() { self = Histogram() }

    func percentile(_ p: Double) -> UInt64 {
        guard count > 0 else { return 0 }
        let rank = UInt64((Double(count) * p / 100).rounded(.up))
        var seen: UInt64 = 0
        for (i, n) in buckets.enumerated() where n > 0 {
            seen += n
            if seen >= Swift.max(rank, 1) { return Swift.min(Self.value(at: i), max) }
        }
        return max
    }

    /// {"count":..,"p50_us":..,"p90_us":..,"p99_us":..,"p999_us":..,"max_us":..,"mean_us":..}
    var json: String {
        var j = JSON()
        j.add("count", Int(count))
        j.add("p50_us", Double(percentile(50)) / 1000)
        j.add("p90_us", Double(percentile(90)) / 1000)
        j.add("p99_us", Double(percentile(99)) / 1000)
        j.add("p999_us", Double(percentile(99.9)) / 1000)
        j.add("max_us", Double(max) / 1000)
        j.add("mean_us", count > 0 ? Double(sum) / Double(count) / 1000 : 0)
        return j.text
    }
}
