import Foundation

/// A treatment event (`treatment_events`, ARCHITECTURE §3). `session_id` and, unless
/// given, `time_offset_ms` are filled in by the recorder.
public struct TreatmentEvent: Sendable {
    public var timestamp: UTCTime
    /// Milliseconds since the session started (monotonic); `nil` = now.
    public var timeOffsetMs: Int64?
    public var eventType: String
    public var laserPowerCommandedWatts: Double?
    public var laserPowerActualWatts: Double?
    public var ringSizeMm: Double?
    public var actuatorPositionUm: Double?
    public var photodiodeVoltageV: Double?
    public var footpedalState: Bool?
    public var smoothingDeviceState: Bool?
    /// JSON text.
    public var interlockStatus: String?
    public var imagePath: String?
    public var videoTimestampMs: Int64?
    /// JSON text.
    public var eventDetails: String?

    public init(timestamp: UTCTime = .now(), timeOffsetMs: Int64? = nil, eventType: String,
                laserPowerCommandedWatts: Double? = nil, laserPowerActualWatts: Double? = nil,
                ringSizeMm: Double? = nil, actuatorPositionUm: Double? = nil, photodiodeVoltageV: Double? = nil,
                footpedalState: Bool? = nil, smoothingDeviceState: Bool? = nil, interlockStatus: String? = nil,
                imagePath: String? = nil, videoTimestampMs: Int64? = nil, eventDetails: String? = nil) {
        self.timestamp = timestamp
        self.timeOffsetMs = timeOffsetMs
        self.eventType = eventType
        self.laserPowerCommandedWatts = laserPowerCommandedWatts
        self.laserPowerActualWatts = laserPowerActualWatts
        self.ringSizeMm = ringSizeMm
        self.actuatorPositionUm = actuatorPositionUm
        self.photodiodeVoltageV = photodiodeVoltageV
        self.footpedalState = footpedalState
        self.smoothingDeviceState = smoothingDeviceState
        self.interlockStatus = interlockStatus
        self.imagePath = imagePath
        self.videoTimestampMs = videoTimestampMs
        self.eventDetails = eventDetails
    }
}

/// `sessions.status` values (§3).
public enum SessionStatus: String, Sendable, Codable, CaseIterable {
    case inProgress = "in_progress", completed, aborted, paused
}

/// How the recorder groups and flushes (the stated policy).
public struct RecorderOptions: Sendable {
    /// Key for an encrypted database (D8); a new database is created encrypted with it.
    public var key: DatabaseKey?
    /// Create `tosca.db` (baseline + every migration) when it does not exist.
    public var createIfMissing = true
    /// Treatment events are committed in groups of at most this many ...
    public var eventGroupSize = 256
    /// ... and at most this long after the first of a group was recorded.
    public var eventGroupIntervalNanoseconds: UInt64 = 100_000_000
    /// JSONL streams.
    public var streamPolicy = StreamFlushPolicy()
    /// Run a background flusher so that the time limits hold while idle.
    public var backgroundFlush = true
    /// `system_config` rows (key → value) written in the transaction that creates a new
    /// database (the simulator's `data_origin`, D16).
    public var initialConfig: [String: String] = [:]
    /// Called with each commit's duration in nanoseconds and event count (benchmarks).
    public var commitObserver: (@Sendable (UInt64, Int) -> Void)?

    public init(key: DatabaseKey? = nil) { self.key = key }

    /// The policy in words, for `--help` and the README.
    public var summary: String {
        "treatment events committed in groups of up to \(eventGroupSize) or within \(eventGroupIntervalNanoseconds / 1_000_000) ms; safety events committed at once, before the call returns; streams \(streamPolicy.summary)"
    }
}

/// Why the recorder refused or failed.
public enum RecorderError: Error, CustomStringConvertible, Sendable {
    /// Another recorder (or a maintenance run that needs it stopped) holds `tosca.lock` (75).
    case locked(path: String, holder: String?)
    case noDatabase(path: String)
    case invalidArgument(String)
    case unknownSession(Int64)
    /// The admission check (e.g. the simulator's D16 check) refused the database.
    case refused(String)

    public var description: String {
        switch self {
        case .locked(let p, let h):
            return "another recorder or maintenance run holds \(p)\(h.map { " (pid \($0))" } ?? ""): only one may use the data folder at a time"
        case .noDatabase(let p): return "no database at \(p)"
        case .invalidArgument(let s): return "invalid argument: \(s)"
        case .unknownSession(let id): return "session \(id) is not being recorded by this recorder"
        case .refused(let s): return s
        }
    }
}

/// `session.json`: written when a session ends (or is recovered as aborted); its presence
/// with `status` completed marks the session complete (§2).
public struct SessionManifest: Codable, Sendable, Equatable {
    public var format = 1
    public var sessionID: Int64
    public var subjectCode: String
    public var techID: Int64
    public var protocolID: Int64?
    public var protocolName: String?
    public var status: String
    public var abortReason: String?
    public var startTime: String
    public var endTime: String
    public var durationSeconds: Int64
    public var treatmentEventCount: Int
    public var totalLaserOnTimeSeconds: Double?
    public var avgPowerWatts: Double?
    public var maxPowerWatts: Double?
    public var totalEnergyJoules: Double?
    public var postTreatmentNotes: String?
    public var streams: [StreamSummary]

    enum CodingKeys: String, CodingKey {
        case format, status, streams
        case sessionID = "session_id", subjectCode = "subject_code", techID = "tech_id", protocolID = "protocol_id"
        case protocolName = "protocol_name", abortReason = "abort_reason", startTime = "start_time", endTime = "end_time"
        case durationSeconds = "duration_seconds", treatmentEventCount = "treatment_event_count"
        case totalLaserOnTimeSeconds = "total_laser_on_time_seconds", avgPowerWatts = "avg_power_watts"
        case maxPowerWatts = "max_power_watts", totalEnergyJoules = "total_energy_joules"
        case postTreatmentNotes = "post_treatment_notes"
    }
}

/// What crash recovery did when the recorder opened.
public struct RecoveryReport: Sendable, Equatable {
    /// Sessions found `in_progress` and marked `aborted`.
    public var abortedSessions: [Int64] = []
    /// Torn last lines cut off: (session, stream file, bytes cut).
    public var truncatedStreams: [(session: Int64, file: String, bytesCut: Int)] = []

    public static func == (a: RecoveryReport, b: RecoveryReport) -> Bool {
        a.abortedSessions == b.abortedSessions && a.truncatedStreams.map { "\($0.session)\($0.file)\($0.bytesCut)" } == b.truncatedStreams.map { "\($0.session)\($0.file)\($0.bytesCut)" }
    }
}
