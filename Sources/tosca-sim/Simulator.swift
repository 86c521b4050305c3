import Foundation
import ToscaCore
import ToscaMaint

/// A small deterministic generator (SplitMix64), so a `--seed` reproduces a run.
struct SplitMix64 {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
    mutating func gaussian() -> Double {
        let u1 = max(unit(), 1e-12), u2 = unit()
        return (-2 * log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
    mutating func pick<T>(_ a: [T]) -> T { a[Int(next() % UInt64(a.count))] }
}

/// What one simulated session produced.
struct SimulatedSession: Codable {
    let sessionID: Int64
    let subjectCode: String
    let techID: Int64
    let protocolName: String?
    let status: String
    let folder: String
    let treatmentEvents: Int
    let safetyEvents: Int
    let samples: [String: Int]

    enum CodingKeys: String, CodingKey {
        case status, folder, samples
        case sessionID = "session_id", subjectCode = "subject_code", techID = "tech_id", protocolName = "protocol_name"
        case treatmentEvents = "treatment_events", safetyEvents = "safety_events"
    }
}

/// Drives the recorder like the device service would: protocols that ramp laser power,
/// a foot pedal, ring-size and actuator moves, a photodiode that follows the power with
/// noise, interlock states, camera frame metadata, and now and then a safety event.
struct Simulator {
    let recorder: Recorder
    let sampleRate: Double
    let eventRate: Double
    let stop: StopSignal
    var rng: SplitMix64
    /// MiB of camera video per session (incompressible, like real video), plus two
    /// snapshots; registered in `session_recordings`. 0: none.
    var mediaMiB: Double = 0

    static let protocols: [(name: String, type: String, watts: Double, data: String)] = [
        ("SIM Standard 1.5 W", "standard", 1.5, #"{"steps":[{"power_w":1.5,"duration_s":10,"ring_mm":3.0}],"ramp_s":1.0}"#),
        ("SIM Ramp 0.5-2.5 W", "ramp", 2.5, #"{"steps":[{"power_w":0.5,"duration_s":5},{"power_w":2.5,"duration_s":5}],"ring_mm":4.0}"#),
        ("SIM Pulsed 2 W", "pulsed", 2.0, #"{"pulse_ms":200,"period_ms":500,"power_w":2.0,"ring_mm":2.5}"#),
    ]

    /// Technicians, subjects and protocols: made once, reused by later runs.
    func ensureReferenceData() throws -> (techs: [Int64], subjects: [Int64], protocols: [(Int64, Double)]) {
        let existingTechs = try recorder.withDatabase { db in
            try db.rows("SELECT tech_id FROM tech_users WHERE is_active = 1 ORDER BY tech_id").compactMap { $0[0].int64 }
        }
        var techs = existingTechs
        if techs.isEmpty {
            for (u, n) in [("sim-tech-1", "Simulated Technician One"), ("sim-tech-2", "Simulated Technician Two"), ("sim-admin", "Simulated Admin")] {
                techs.append(try recorder.addTechnician(username: u, fullName: n, role: u == "sim-admin" ? "admin" : "technician"))
            }
        }
        var subjects = try recorder.withDatabase { db in
            try db.rows("SELECT subject_id FROM subjects WHERE is_active = 1 ORDER BY subject_id").compactMap { $0[0].int64 }
        }
        if subjects.isEmpty {
            for i in 1...5 {
                subjects.append(try recorder.addSubject(code: String(format: "SIM-%04d", i), createdByTechID: techs[0],
                                                        dateOfBirth: "19\(60 + i * 5)-0\(i)-1\(i) 00:00:00.000000", gender: i % 2 == 0 ? "F" : "M"))
            }
        }
        var protos = try recorder.withDatabase { db in
            try db.rows("SELECT protocol_id, protocol_name FROM protocols WHERE is_active = 1 ORDER BY protocol_id").compactMap { row -> (Int64, Double)? in
                guard let id = row[0].int64 else { return nil }
                let watts = Self.protocols.first { $0.name == row[1].string }?.watts ?? 1.0
                return (id, watts)
            }
        }
        if protos.isEmpty {
            for p in Self.protocols {
                protos.append((try recorder.addProtocol(name: p.name, type: p.type, data: p.data, description: "simulated protocol",
                                                        createdByTechID: techs.last), p.watts))
            }
        }
        return (techs, subjects, protos)
    }

    /// Records one session lasting `duration` seconds (or until a signal when `nil`).
    mutating func runSession(duration: Double?, techs: [Int64], subjects: [Int64], protocols: [(Int64, Double)]) throws -> SimulatedSession {
        let tech = rng.pick(techs), subject = rng.pick(subjects), proto = rng.pick(protocols)
        let session = try recorder.startSession(subjectID: subject, techID: tech, protocolID: proto.0,
                                                treatmentSite: rng.pick(["left eye", "right eye"]))
        let photodiode = try session.openStream("photodiode", fields: ["voltage_v", "power_w"])
        let interlocks = try session.openStream("interlocks", fields: ["door", "footpedal", "emergency_stop", "temperature_ok", "state"])
        let camera = try session.openStream("camera_meta", fields: ["frame", "exposure_ms", "focus_score", "ring_detected"])
        let interlockRate = min(sampleRate, 50), cameraRate = min(sampleRate, 30)
        var counts = ["photodiode": 0, "interlocks": 0, "camera_meta": 0]
        var events = 0, safety = 0
        let t0 = monotonicNanoseconds()
        var lastSample = 0, lastInterlock = 0, lastFrame = 0, lastEvent = 0
        var power = 0.0, pedal = false, ring = 3.0
        var stoppedBy: Int32 = 0
        try recorder.record(TreatmentEvent(timeOffsetMs: 0, eventType: "protocol_loaded", ringSizeMm: ring,
                                           eventDetails: "{\"protocol_id\":\(proto.0)}"), in: session)
        events += 1
        while true {
            if stop.isSet { stoppedBy = stop.received; break }
            let elapsed = Double(monotonicNanoseconds() &- t0) / 1e9
            if let duration, elapsed >= duration { break }
            let now = UTCTime.now()
            // Power profile: ramp over 1 s, hold, pedal released in the last 10%.
            let target = proto.1
            let phase = duration.map { elapsed / $0 } ?? 0.5
            let newPedal = elapsed > 0.2 && phase < 0.9
            if newPedal != pedal {
                pedal = newPedal
                try recorder.record(TreatmentEvent(timestamp: now, eventType: pedal ? "footpedal_pressed" : "footpedal_released",
                                                   laserPowerCommandedWatts: pedal ? target : 0, laserPowerActualWatts: power,
                                                   footpedalState: pedal), in: session)
                events += 1
            }
            power = pedal ? min(target, target * elapsed) : 0
            // Events at the event rate.
            let dueEvents = Int(elapsed * eventRate) - lastEvent
            for _ in 0..<max(0, dueEvents) {
                lastEvent += 1
                let actual = power == 0 ? 0 : power * (1 + 0.01 * rng.gaussian())
                let kind = rng.unit() < 0.1 ? "actuator_move" : (rng.unit() < 0.05 ? "ring_size_changed" : "power_reading")
                if kind == "ring_size_changed" { ring = rng.pick([2.5, 3.0, 3.5, 4.0]) }
                try recorder.record(TreatmentEvent(timestamp: now, eventType: kind, laserPowerCommandedWatts: pedal ? target : 0,
                                                   laserPowerActualWatts: actual, ringSizeMm: ring,
                                                   actuatorPositionUm: kind == "actuator_move" ? 1000 * rng.unit() : nil,
                                                   photodiodeVoltageV: actual * 0.8, footpedalState: pedal, smoothingDeviceState: true,
                                                   interlockStatus: #"{"door":"closed","estop":"armed"}"#,
                                                   videoTimestampMs: Int64(elapsed * 1000)), in: session)
                events += 1
                // About one safety event every 20 s of treatment.
                if rng.unit() < 0.05 / max(eventRate, 1) * 1 {
                    try recorder.recordSafetyEvent(SafetyLogEntry(
                        timestamp: now, sessionID: session.id, techID: tech, eventType: "photodiode_deviation", severity: .warning,
                        description: "photodiode reading deviates from commanded power", systemState: "treatment",
                        laserState: power > 0 ? "on" : "off", footpedalState: pedal, smoothingDeviceState: true,
                        photodiodeVoltage: actual * 0.8, actionTaken: "power regulated", details: "{\"deviation_pct\":\(Int(5 + 10 * rng.unit()))}"))
                    safety += 1
                }
            }
            let dueSamples = Int(elapsed * sampleRate) - lastSample
            for _ in 0..<max(0, dueSamples) {
                lastSample += 1
                let v = max(0, power * 0.8 + 0.002 * rng.gaussian())
                try photodiode.append(time: now, [.double(v), .double(power)])
            }
            counts["photodiode", default: 0] += max(0, dueSamples)
            let dueInterlocks = Int(elapsed * interlockRate) - lastInterlock
            for _ in 0..<max(0, dueInterlocks) {
                lastInterlock += 1
                try interlocks.append(time: now, [.string("closed"), .bool(pedal), .string("armed"), .bool(true), .string(power > 0 ? "laser_on" : "ready")])
            }
            counts["interlocks", default: 0] += max(0, dueInterlocks)
            let dueFrames = Int(elapsed * cameraRate) - lastFrame
            for _ in 0..<max(0, dueFrames) {
                lastFrame += 1
                try camera.append(time: now, [.int(Int64(lastFrame)), .double(8.0), .double(0.9 + 0.05 * rng.unit()), .bool(true)])
            }
            counts["camera_meta", default: 0] += max(0, dueFrames)
            usleep(5_000)
        }
        let status: SessionStatus = .completed
        let notes = stoppedBy != 0 ? "simulation stopped by signal \(stoppedBy); session ended cleanly" : nil
        try recorder.record(TreatmentEvent(eventType: "protocol_complete", laserPowerCommandedWatts: 0, laserPowerActualWatts: 0,
                                           footpedalState: false), in: session)
        events += 1
        if mediaMiB > 0 { try writeMedia(session) }
        let manifest = try recorder.endSession(session, status: status, notes: notes)
        return SimulatedSession(sessionID: session.id, subjectCode: session.subjectCode, techID: tech, protocolName: session.protocolName,
                                status: manifest.status, folder: session.relativeFolder, treatmentEvents: events, safetyEvents: safety,
                                samples: Dictionary(uniqueKeysWithValues: manifest.streams.map { ($0.name, $0.lines) }))
    }

    /// Camera media into `media/`: a video of `mediaMiB` MiB and two snapshots, bytes from
    /// the generator (incompressible, as real video is), each registered in
    /// `session_recordings` with its size.
    mutating func writeMedia(_ session: RecordingSession) throws {
        let files: [(name: String, type: String, bytes: Int)] = [
            ("video_0001.mp4", "video", Int(mediaMiB * 1_048_576)),
            ("snapshot_0001.jpg", "snapshot", 96 * 1024), ("snapshot_0002.jpg", "snapshot", 96 * 1024),
        ]
        for f in files {
            var bytes = [UInt8](repeating: 0, count: f.bytes)
            var i = 0
            while i < bytes.count {
                var v = rng.next()
                for _ in 0..<8 where i < bytes.count { bytes[i] = UInt8(truncatingIfNeeded: v); v >>= 8; i += 1 }
            }
            let path = session.folder + "/media/" + f.name
            try AtomicFile.write(bytes, to: path)
            try recorder.withDatabase { db in
                try db.execute("""
                    INSERT INTO session_recordings (session_id, recording_type, file_path, file_size_bytes, duration_seconds, timestamp, frame_count, resolution)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                    """, [.integer(session.id), .text(f.type), .text(session.relativeFolder + "/media/" + f.name), .integer(Int64(f.bytes)),
                          f.type == "video" ? .real(Double(f.bytes) / 250_000) : .null, .text(UTCTime.now().sqlDateTime),
                          f.type == "video" ? .integer(Int64(f.bytes / 8_000)) : .null, .text("1920x1080")])
            }
        }
    }
}
