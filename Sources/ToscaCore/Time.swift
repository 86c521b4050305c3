import Foundation

/// Wall-clock time in the formats the data uses (ARCHITECTURE D13, §3): all UTC.
public struct UTCTime: Sendable, Equatable, Comparable, Hashable {
    /// Seconds since the Unix epoch.
    public var seconds: Int64
    /// Microseconds within the second.
    public var microseconds: Int32

    public init(seconds: Int64, microseconds: Int32) {
        self.seconds = seconds
        self.microseconds = microseconds
    }

    public init(_ date: Date) {
        let us = (date.timeIntervalSince1970 * 1_000_000).rounded(.down)
        let total = Int64(us)
        seconds = total >= 0 ? total / 1_000_000 : (total - 999_999) / 1_000_000
        microseconds = Int32(total - seconds * 1_000_000)
    }

    /// The current wall-clock time (`CLOCK_REALTIME`).
    public static func now() -> UTCTime {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return UTCTime(seconds: Int64(ts.tv_sec), microseconds: Int32(ts.tv_nsec / 1000))
    }

    public var date: Date { Date(timeIntervalSince1970: Double(seconds) + Double(microseconds) / 1_000_000) }

    public static func < (a: UTCTime, b: UTCTime) -> Bool {
        (a.seconds, a.microseconds) < (b.seconds, b.microseconds)
    }

    /// Broken-down UTC fields.
    var fields: (year: Int, month: Int, day: Int, hour: Int, minute: Int, second: Int) {
        var t = time_t(seconds)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        return (Int(tmv.tm_year) + 1900, Int(tmv.tm_mon) + 1, Int(tmv.tm_mday), Int(tmv.tm_hour), Int(tmv.tm_min), Int(tmv.tm_sec))
    }

    /// TOSCA's DATETIME text, in UTC: `YYYY-MM-DD HH:MM:SS.ffffff`.
    public var sqlDateTime: String {
        let f = fields
        return "\(pad(f.year, 4))-\(pad(f.month, 2))-\(pad(f.day, 2)) \(pad(f.hour, 2)):\(pad(f.minute, 2)):\(pad(f.second, 2)).\(pad(Int(microseconds), 6))"
    }

    /// ISO-8601 with microseconds and `Z`: `YYYY-MM-DDTHH:MM:SS.ffffffZ`.
    public var iso8601: String {
        let f = fields
        return "\(pad(f.year, 4))-\(pad(f.month, 2))-\(pad(f.day, 2))T\(pad(f.hour, 2)):\(pad(f.minute, 2)):\(pad(f.second, 2)).\(pad(Int(microseconds), 6))Z"
    }

    /// `YYYY-MM-DD_HHMMSS`, the session folder name (§2).
    public var folderStamp: String {
        let f = fields
        return "\(pad(f.year, 4))-\(pad(f.month, 2))-\(pad(f.day, 2))_\(pad(f.hour, 2))\(pad(f.minute, 2))\(pad(f.second, 2))"
    }
}

/// Zero-padded decimal.
func pad(_ value: Int, _ width: Int) -> String {
    let s = String(value)
    return s.count >= width ? s : String(repeating: "0", count: width - s.count) + s
}

/// A monotonic clock reading in nanoseconds (`CLOCK_MONOTONIC`).
public func monotonicNanoseconds() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}
