import Foundation

/// The session-recording engine the device service uses (ARCHITECTURE §2, D2, D5, D7).
///
/// Holds `<data>/tosca.lock` for its whole life, so a second recorder is refused and crash
/// recovery only ever runs in the holder. On open it creates a new database (baseline +
/// every migration), refuses one whose schema is behind without changing it, then
/// recovers from a crash: sessions left `in_progress` become `aborted`, torn last JSONL
/// lines are cut and the cut is recorded in the safety log.
///
/// Thread-safe: every call takes one lock; a background flusher applies the time limits
/// of ``RecorderOptions``.
public final class Recorder: @unchecked Sendable {
    public let dataDirectory: String
    public let databasePath: String
    public let options: RecorderOptions
    /// What crash recovery did at open.
    public private(set) var recovery = RecoveryReport()
    /// Whether this open created the database.
    public let createdDatabase: Bool

    private let lock = NSLock()
    private var dirLock: FileLock?
    private var db: Database?
    private var insertEvent: Statement?
    private var pending: [(Int64, TreatmentEvent)] = []
    private var pendingSince: UInt64 = 0
    private var sessions: [Int64: RecordingSession] = [:]
    private var timer: DispatchSourceTimer?
    private var backgroundError: (any Error)?
    /// Migration 0007 applied: rows inserted by other programs may arrive unsealed.
    private var admitsUnsealed = false
    private var lastSealCheck: UInt64 = 0
    /// Sessions whose `spool/ended/` marker could not be written, and why.
    public var markerFailures: [(session: Int64, reason: String)] { lock.withLock { unwrittenMarkers } }
    private var unwrittenMarkers: [(session: Int64, reason: String)] = []

    /// Opens the data folder. `admission` runs after the schema check and before crash
    /// recovery, with the database and whether it was just created; throwing from it
    /// closes everything and changes nothing more (the simulator's D16 check).
    public init(dataDirectory: String, options: RecorderOptions = RecorderOptions(),
                admission: ((Database, Bool) throws -> Void)? = nil) throws {
        self.dataDirectory = dataDirectory
        self.databasePath = dataDirectory + "/tosca.db"
        self.options = options
        try AtomicFile.makeDirectory(dataDirectory)
        do {
            dirLock = try FileLock(path: dataDirectory + "/tosca.lock")
        } catch FileLockError.held(let path, let holder) {
            throw RecorderError.locked(path: path, holder: holder)
        }
        let exists = FileManager.default.fileExists(atPath: databasePath)
        if !exists && !options.createIfMissing { throw RecorderError.noDatabase(path: databasePath) }
        let db = try Database(path: databasePath, options: .init(create: !exists, key: options.key))
        let migrator = Migrator()
        let status = try migrator.status(db)
        var created = false
        switch status.kind {
        case .empty:
            try db.execute("PRAGMA journal_mode = WAL")
            let config = options.initialConfig
            try migrator.migrate(db, beforeCommit: { db in
                for (k, v) in config.sorted(by: { $0.key < $1.key }) {
                    try db.execute("INSERT INTO system_config (config_key, config_value, config_type, description) VALUES (?, ?, 'text', ?)",
                                   [.text(k), .text(v), .text("set when this database was created")])
                }
            })
            created = true
        case .legacyBaseline, .versioned:
            guard status.isCurrent else {
                throw MigrationError.schemaBehind(path: databasePath, current: status.versionDescription,
                                                  pending: status.pending.map(\.id))
            }
        }
        try admission?(db, created)
        if !created {
            guard try db.scalar("PRAGMA journal_mode = WAL")?.string?.lowercased() == "wal" else {
                throw SQLiteError(code: 1, message: "could not switch \(databasePath) to WAL")
            }
        }
        self.createdDatabase = created
        self.db = db
        self.insertEvent = try db.prepare("""
            INSERT INTO treatment_events (session_id, timestamp, time_offset_ms, event_type,
              laser_power_commanded_watts, laser_power_actual_watts, ring_size_mm, actuator_position_um,
              photodiode_voltage_v, footpedal_state, smoothing_device_state, interlock_status, image_path,
              video_timestamp_ms, event_details) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)
            """, persistent: true)
        try recoverInterruptedSessions()
        // Safety events other programs inserted without chain columns (TOSCA v0.9.12's
        // app, a technician's sqlite3) are sealed at once, here and on the flusher's ticks.
        // Neither may stop the recorder from opening: a failure is kept as the background
        // error, and what is left unsealed is reported by verify --live and status.
        admitsUnsealed = (try? SafetyChain.admitsUnsealedRows(db)) ?? false
        do {
            if admitsUnsealed { try db.transaction { try SafetyChain.sealPending(db) } }
            // Finished sessions without a seal (ended before seals existed, or by the old
            // app) get one, once; never onto a chain that does not verify (a removed seal
            // must not be replaced by one that blesses whatever the events are now).
            if try SessionSeal.unsealedSessionCount(db) > 0, try SafetyChain.verify(db).isIntact {
                try db.transaction { _ = try SessionSeal.backfill(db, dataDirectory: dataDirectory) }
            }
        } catch {
            backgroundError = error
        }
        if options.backgroundFlush { startFlusher() }
    }

    deinit {
        timer?.cancel()
        // Best effort for a recorder released without close(): queued events and buffered
        // samples still reach the disk (open sessions are recovered as aborted next time).
        lock.withLock {
            try? commitPending()
            for s in sessions.values { try? s.flushStreams() }
        }
    }

    // MARK: - Reference data

    /// Adds a technician; returns its `tech_id`.
    @discardableResult
    public func addTechnician(username: String, fullName: String, role: String = "technician") throws -> Int64 {
        try locked { db in
            try db.execute("INSERT INTO tech_users (username, full_name, role, created_date, is_active) VALUES (?, ?, ?, ?, 1)",
                           [.text(username), .text(fullName), .text(role), .text(UTCTime.now().sqlDateTime)])
            return db.lastInsertRowID
        }
    }

    /// Adds a subject; returns its `subject_id`.
    @discardableResult
    public func addSubject(code: String, createdByTechID: Int64?, dateOfBirth: String? = nil, gender: String? = nil) throws -> Int64 {
        guard Self.isSafePathComponent(code) else { throw RecorderError.invalidArgument("subject code \(code.debugDescription) cannot name a folder") }
        return try locked { db in
            try db.execute("INSERT INTO subjects (subject_code, date_of_birth, gender, created_date, created_by_tech_id, is_active) VALUES (?, ?, ?, ?, ?, 1)",
                           [.text(code), dateOfBirth.sqlValue, gender.sqlValue, .text(UTCTime.now().sqlDateTime), createdByTechID.sqlValue])
            return db.lastInsertRowID
        }
    }

    /// Adds a protocol; `data` is its JSON; returns its `protocol_id`.
    @discardableResult
    public func addProtocol(name: String, type: String, data: String, description: String? = nil, createdByTechID: Int64?) throws -> Int64 {
        try locked { db in
            try db.execute("""
                INSERT INTO protocols (protocol_name, description, protocol_type, protocol_data, created_date, created_by_tech_id, usage_count, is_active)
                VALUES (?, ?, ?, ?, ?, ?, 0, 1)
                """, [.text(name), description.sqlValue, .text(type), .text(data), .text(UTCTime.now().sqlDateTime), createdByTechID.sqlValue])
            return db.lastInsertRowID
        }
    }

    /// Runs `body` with the recorder's connection under its lock (queries, `system_config`).
    public func withDatabase<T>(_ body: (Database) throws -> T) throws -> T {
        try locked(body)
    }

    // MARK: - Sessions

    /// Starts a session: creates `sessions/<subject_code>/<YYYY-MM-DD_HHMMSS>/` (UTC) with
    /// `streams/` and `media/`, inserts the `sessions` row (`in_progress`, the protocol
    /// snapshotted) and a `session_started` safety-log entry.
    public func startSession(subjectID: Int64, techID: Int64, protocolID: Int64?, treatmentSite: String? = nil) throws -> RecordingSession {
        try locked { db in
            guard let code = try db.scalar("SELECT subject_code FROM subjects WHERE subject_id = ?", [.integer(subjectID)])?.string else {
                throw RecorderError.invalidArgument("no subject \(subjectID)")
            }
            guard try db.scalar("SELECT 1 FROM tech_users WHERE tech_id = ?", [.integer(techID)]) != nil else {
                throw RecorderError.invalidArgument("no technician \(techID)")
            }
            var protoName: SQLValue = .null, protoData: SQLValue = .null
            if let protocolID {
                guard let p = try db.rows("SELECT protocol_name, protocol_data FROM protocols WHERE protocol_id = ?", [.integer(protocolID)]).first else {
                    throw RecorderError.invalidArgument("no protocol \(protocolID)")
                }
                protoName = p[0]; protoData = p[1]
            }
            guard Self.isSafePathComponent(code) else { throw RecorderError.invalidArgument("subject code \(code.debugDescription) cannot name a folder") }
            let start = UTCTime.now()
            let startMono = monotonicNanoseconds()
            let subjectDir = "sessions/\(code)"
            // Layout folders are never followed through a link: a symlinked sessions/ or
            // sessions/<subject>/ would put treatment records outside the data folder.
            try LayoutFolder.make(dataDirectory + "/sessions")
            try LayoutFolder.make(dataDirectory + "/" + subjectDir)
            var relative = "\(subjectDir)/\(start.folderStamp)"
            var n = 2
            while mkdir(dataDirectory + "/" + relative, 0o700) != 0 {
                guard errno == EEXIST else { throw POSIXFailure(operation: "create \(dataDirectory)/\(relative)", code: errno) }
                relative = "\(subjectDir)/\(start.folderStamp)_\(n)"
                n += 1
            }
            let folder = dataDirectory + "/" + relative
            try AtomicFile.makeDirectory(folder + "/streams")
            try AtomicFile.makeDirectory(folder + "/media")
            try AtomicFile.syncDirectory(dataDirectory + "/" + subjectDir)
            do {
                let id: Int64 = try db.transaction {
                    try db.execute("""
                        INSERT INTO sessions (subject_id, tech_id, protocol_id, start_time, status, treatment_site, protocol_name,
                          protocol_data_snapshot, session_folder_path, created_date)
                        VALUES (?, ?, ?, ?, 'in_progress', ?, ?, ?, ?, ?)
                        """, [.integer(subjectID), .integer(techID), protocolID.sqlValue, .text(start.sqlDateTime), treatmentSite.sqlValue,
                              protoName, protoData, .text(relative), .text(start.sqlDateTime)])
                    let id = db.lastInsertRowID
                    if let protocolID {
                        try db.execute("UPDATE protocols SET usage_count = usage_count + 1, last_used_date = ? WHERE protocol_id = ?",
                                       [.text(start.sqlDateTime), .integer(protocolID)])
                    }
                    try SafetyChain.append(SafetyLogEntry(timestamp: start, sessionID: id, techID: techID, eventType: "session_started",
                                                          severity: .info, description: "treatment session started",
                                                          systemState: "treatment"), to: db)
                    return id
                }
                let session = RecordingSession(recorder: self, id: id, subjectCode: code, techID: techID, protocolID: protocolID,
                                               protocolName: protoName.string, relativeFolder: relative, folder: folder,
                                               start: start, startMonotonic: startMono)
                sessions[id] = session
                return session
            } catch {
                rmdir(folder + "/streams"); rmdir(folder + "/media"); rmdir(folder)
                throw error
            }
        }
    }

    /// Records one treatment event; committed per the grouping policy (see
    /// ``RecorderOptions``). Call ``flush()`` to commit at once. When it throws, this event
    /// was not accepted (retrying cannot duplicate it); events accepted earlier stay queued.
    public func record(_ event: TreatmentEvent, in session: RecordingSession) throws {
        try locked { _ in
            guard sessions[session.id] === session else { throw RecorderError.unknownSession(session.id) }
            var e = event
            if e.timeOffsetMs == nil { e.timeOffsetMs = session.elapsedMilliseconds() }
            if pending.isEmpty { pendingSince = monotonicNanoseconds() }
            pending.append((session.id, e))
            if pending.count >= options.eventGroupSize || monotonicNanoseconds() &- pendingSince >= options.eventGroupIntervalNanoseconds {
                do {
                    try commitPending()
                } catch {
                    // Throwing means "this event was not accepted": take it back so a retry
                    // cannot duplicate it. Events accepted earlier stay queued.
                    pending.removeLast()
                    throw error
                }
            }
        }
    }

    /// Appends a safety event to the chain and commits it before returning; returns the
    /// new chain head. Pending treatment events are committed first when possible; if that
    /// fails they stay queued and the safety event is still written.
    @discardableResult
    public func recordSafetyEvent(_ entry: SafetyLogEntry) throws -> ChainHead {
        try locked { db in
            do { try commitPending() } catch { backgroundError = error }
            return try db.transaction { try SafetyChain.append(entry, to: db) }
        }
    }

    /// Commits pending events and writes and fsyncs every open stream.
    public func flush() throws {
        try locked { _ in
            try commitPending()
            for s in sessions.values { try s.flushStreams() }
            backgroundError = nil
        }
    }

    /// The last failure of a background flush (or of committing queued events before a
    /// safety event), cleared by a successful ``flush()``. Background failures are retried
    /// on the next tick; they never replace another call's own result.
    public var lastBackgroundError: (any Error)? { lock.withLock { backgroundError } }

    /// Ends a session: commits its events, closes its streams (fsynced), writes
    /// `session.json`, then updates the `sessions` row (status, end time, summary
    /// statistics) with a `session_ended` safety-log entry in one transaction.
    @discardableResult
    public func endSession(_ session: RecordingSession, status: SessionStatus = .completed, abortReason: String? = nil,
                           notes: String? = nil) throws -> SessionManifest {
        guard status != .inProgress else { throw RecorderError.invalidArgument("a session cannot end as in_progress") }
        return try locked { db in
            guard sessions[session.id] === session else { throw RecorderError.unknownSession(session.id) }
            try commitPending()
            let streams = try session.closeStreams()
            let end = UTCTime.now()
            let manifest = try finish(db: db, sessionID: session.id, folder: session.folder, end: end, status: status,
                                      abortReason: abortReason, notes: notes, streams: streams,
                                      durationSeconds: Int64(session.elapsedMilliseconds() / 1000),
                                      safetyEvent: SafetyLogEntry(timestamp: end, sessionID: session.id, techID: session.techID,
                                                                  eventType: "session_ended", severity: status == .completed ? .info : .warning,
                                                                  description: "treatment session \(status.rawValue)" + (abortReason.map { ": \($0)" } ?? ""),
                                                                  systemState: "idle"))
            sessions[session.id] = nil
            dropEndedMarker(session.id, status: status.rawValue, ended: end)
            return manifest
        }
    }

    /// Writes `session.json`, then the row update and the safety entry in one transaction.
    private func finish(db: Database, sessionID: Int64, folder: String, end: UTCTime, status: SessionStatus, abortReason: String?,
                        notes: String?, streams: [StreamSummary], durationSeconds: Int64, safetyEvent: SafetyLogEntry) throws -> SessionManifest {
        guard let row = try db.rows("""
            SELECT s.subject_id, sub.subject_code, s.tech_id, s.protocol_id, s.protocol_name, s.start_time
            FROM sessions s JOIN subjects sub ON sub.subject_id = s.subject_id WHERE s.session_id = ?
            """, [.integer(sessionID)]).first else { throw RecorderError.unknownSession(sessionID) }
        let stats = try db.rows("""
            SELECT COUNT(*) FROM treatment_events WHERE session_id = ?1
            """, [.integer(sessionID)]).first
        let power = try db.rows("""
            SELECT SUM(CASE WHEN p > 0 THEN dt END), SUM(p * dt), MAX(p) FROM (
              SELECT laser_power_actual_watts AS p,
                     (LEAD(time_offset_ms) OVER (ORDER BY time_offset_ms, event_id) - time_offset_ms) / 1000.0 AS dt
              FROM treatment_events WHERE session_id = ?1 AND laser_power_actual_watts IS NOT NULL)
            """, [.integer(sessionID)]).first
        let onTime = power?[0].double ?? 0, energy = power?[1].double ?? 0
        let manifest = SessionManifest(
            sessionID: sessionID, subjectCode: row[1].string ?? "", techID: row[2].int64 ?? 0, protocolID: row[3].int64,
            protocolName: row[4].string, status: status.rawValue, abortReason: abortReason,
            startTime: row[5].string ?? "", endTime: end.sqlDateTime, durationSeconds: durationSeconds,
            treatmentEventCount: stats?[0].int ?? 0, totalLaserOnTimeSeconds: onTime,
            avgPowerWatts: onTime > 0 ? energy / onTime : 0, maxPowerWatts: power?[2].double ?? 0, totalEnergyJoules: energy,
            postTreatmentNotes: notes, streams: streams)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(Array(try encoder.encode(manifest)) + [10], to: folder + "/session.json")
        try db.transaction {
            try db.execute("""
                UPDATE sessions SET status = ?, abort_reason = ?, end_time = ?, duration_seconds = ?,
                  total_laser_on_time_seconds = ?, avg_power_watts = ?, max_power_watts = ?, total_energy_joules = ?,
                  post_treatment_notes = COALESCE(?, post_treatment_notes)
                WHERE session_id = ?
                """, [.text(status.rawValue), abortReason.sqlValue, .text(end.sqlDateTime), .integer(durationSeconds),
                      manifest.totalLaserOnTimeSeconds.sqlValue, manifest.avgPowerWatts.sqlValue, manifest.maxPowerWatts.sqlValue,
                      manifest.totalEnergyJoules.sqlValue, notes.sqlValue, .integer(sessionID)])
            try SafetyChain.append(safetyEvent, to: db)
            // The seal: the session's events, session.json and streams as they end.
            try SafetyChain.append(try SessionSeal.entry(db, sessionID: sessionID, techID: row[2].int64, folder: folder, backfill: false, now: end), to: db)
        }
        return manifest
    }

    /// Ends every open session as `aborted` with `reason`, commits, and releases the
    /// database and `tosca.lock`.
    public func close(abortOpenSessionsWith reason: String = "recorder closed while the session was open") throws {
        timer?.cancel()
        timer = nil
        let open = lock.withLock { Array(sessions.values) }
        for s in open { try endSession(s, status: .aborted, abortReason: reason) }
        try locked { _ in try commitPending() }
        lock.withLock {
            insertEvent = nil
            db = nil
            dirLock?.unlock()
            dirLock = nil
        }
    }

    // MARK: - Internals

    private func locked<T>(_ body: (Database) throws -> T) throws -> T {
        lock.lock()
        defer { lock.unlock() }
        guard let db else { throw RecorderError.invalidArgument("recorder is closed") }
        return try body(db)
    }

    private func commitPending() throws {
        guard !pending.isEmpty, let db, let insertEvent else { return }
        let t0 = monotonicNanoseconds()
        try db.transaction {
            for (sid, e) in pending {
                try insertEvent.execute([
                    .integer(sid), .text(e.timestamp.sqlDateTime), .integer(e.timeOffsetMs ?? 0), .text(e.eventType),
                    e.laserPowerCommandedWatts.sqlValue, e.laserPowerActualWatts.sqlValue, e.ringSizeMm.sqlValue,
                    e.actuatorPositionUm.sqlValue, e.photodiodeVoltageV.sqlValue, e.footpedalState.sqlValue,
                    e.smoothingDeviceState.sqlValue, e.interlockStatus.sqlValue, e.imagePath.sqlValue,
                    e.videoTimestampMs.sqlValue, e.eventDetails.sqlValue,
                ])
            }
        }
        options.commitObserver?(monotonicNanoseconds() &- t0, pending.count)
        pending.removeAll(keepingCapacity: true)
    }

    private func startFlusher() {
        let t = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "tosca.recorder.flush"))
        let interval = min(options.eventGroupIntervalNanoseconds, options.streamPolicy.writeIntervalNanoseconds) / 2
        t.schedule(deadline: .now() + .nanoseconds(Int(interval)), repeating: .nanoseconds(Int(max(interval, 10_000_000))))
        t.setEventHandler { [weak self] in self?.flushDue() }
        timer = t
        t.resume()
    }

    private func flushDue() {
        lock.lock()
        defer { lock.unlock() }
        guard db != nil else { return }
        do {
            if !pending.isEmpty && monotonicNanoseconds() &- pendingSince >= options.eventGroupIntervalNanoseconds {
                try commitPending()
            }
            for s in sessions.values { try s.flushStreamsIfDue() }
            if admitsUnsealed, let db, monotonicNanoseconds() &- lastSealCheck >= 1_000_000_000 {
                lastSealCheck = monotonicNanoseconds()
                if try db.scalar("SELECT 1 FROM safety_log WHERE seq IS NULL LIMIT 1") != nil {
                    try db.transaction { try SafetyChain.sealPending(db) }
                }
            }
        } catch {
            backgroundError = error
        }
    }

    static func isSafePathComponent(_ s: String) -> Bool {
        !s.isEmpty && s != "." && s != ".." && !s.contains("/") && !s.contains("\0") && s.utf8.count <= 100
    }

    // MARK: - Crash recovery

    /// Sessions left `in_progress` by a recorder that died. For each:
    /// - a `session.json` that already says how the session ended, and whose stream
    ///   hashes match the files, was written just before the crash: its ending is committed;
    /// - otherwise torn JSONL tails are recorded in the safety log, then cut; the session
    ///   becomes `aborted` with a reason and gets its `session.json` (a different one found
    ///   there is kept aside as `session.json.replaced-<time>`, never overwritten).
    private func recoverInterruptedSessions() throws {
        guard let db else { return }
        // The layout is never followed through links (73), here too: a symlinked
        // sessions/ would have recovery cut files outside the data folder.
        try LayoutFolder.check(dataDirectory + "/sessions")
        let open = try db.rows("SELECT session_id, session_folder_path, tech_id, start_time FROM sessions WHERE status = 'in_progress' ORDER BY session_id")
        for row in open {
            guard let id = row[0].int64 else { continue }
            let techID = row[2].int64
            let now = UTCTime.now()
            // A folder path that leaves the data folder, or whose subject folder is a link,
            // is treated as missing: recovery never touches files outside the data folder.
            guard let relative = row[1].string, SessionSeal.isSafeRelativeFolder(relative),
                  (try? LayoutFolder.check(dataDirectory + "/" + PathName.parent(relative))) == true,
                  FileManager.default.fileExists(atPath: dataDirectory + "/" + relative) else {
                try db.transaction {
                    try db.execute("UPDATE sessions SET status = 'aborted', abort_reason = ?, end_time = ? WHERE session_id = ?",
                                   [.text("recorder stopped before the session ended; session folder missing; recovered at \(now.iso8601)"),
                                    .text(now.sqlDateTime), .integer(id)])
                    try SafetyChain.append(SafetyLogEntry(timestamp: now, sessionID: id, techID: techID, eventType: "session_recovered",
                                                          severity: .warning, description: "session found in progress at start-up, folder missing; marked aborted",
                                                          actionTaken: "status set to aborted"), to: db)
                    try SafetyChain.append(try SessionSeal.entry(db, sessionID: id, techID: techID, folder: nil, backfill: false, now: now), to: db)
                }
                recovery.abortedSessions.append(id)
                dropEndedMarker(id, status: SessionStatus.aborted.rawValue, ended: now)
                continue
            }
            let folder = dataDirectory + "/" + relative
            let manifestPath = folder + "/session.json"
            if let written = try? JSONDecoder().decode(SessionManifest.self, from: Data(contentsOf: URL(fileURLWithPath: manifestPath))),
               written.sessionID == id, written.status != SessionStatus.inProgress.rawValue,
               written.streams.allSatisfy({ (try? FileDigest.sha256(path: folder + "/" + $0.file).hex) == $0.sha256 }) {
                try commitWrittenEnding(db: db, manifest: written, folder: folder, now: now, techID: techID)
                if written.status == SessionStatus.aborted.rawValue { recovery.abortedSessions.append(id) }
                dropEndedMarker(id, status: written.status, ended: now)
                continue
            }
            // Record each cut before making it: a crash in between records it twice, never not at all.
            let streamsDir = folder + "/streams"
            let names = ((try? FileManager.default.contentsOfDirectory(atPath: streamsDir)) ?? []).filter { $0.hasSuffix(".jsonl") }.sorted()
            var cuts: [(String, JSONLRepair.Result)] = []
            for name in names {
                let scan = try JSONLRepair.cutTornTail(path: streamsDir + "/" + name, dryRun: true)
                if scan.bytesCut > 0 { cuts.append((name, scan)) }
            }
            if !cuts.isEmpty {
                try db.transaction {
                    for (name, scan) in cuts {
                        try SafetyChain.append(SafetyLogEntry(timestamp: now, sessionID: id, techID: techID, eventType: "stream_truncated",
                                                              severity: .warning,
                                                              description: "torn last line of streams/\(name) cut off during crash recovery",
                                                              actionTaken: "cut \(scan.bytesCut) byte(s) after the last complete line",
                                                              details: "{\"stream\":\"\(name)\",\"bytes_cut\":\(scan.bytesCut),\"lines_kept\":\(scan.lines)}"), to: db)
                    }
                }
            }
            var summaries: [StreamSummary] = []
            for name in names {
                let result = try JSONLRepair.cutTornTail(path: streamsDir + "/" + name)
                if result.bytesCut > 0 { recovery.truncatedStreams.append((id, "streams/\(name)", result.bytesCut)) }
                summaries.append(StreamSummary(name: String(name.dropLast(6)), file: "streams/\(name)", fields: result.fields,
                                               lines: result.lines, bytes: result.bytes, sha256: result.sha256))
            }
            if FileManager.default.fileExists(atPath: manifestPath) {
                let aside = manifestPath + ".replaced-\(now.folderStamp)"
                guard rename(manifestPath, aside) == 0 else { throw POSIXFailure(operation: "keep \(manifestPath) aside", code: errno) }
            }
            let lastEvent = try db.scalar("SELECT MAX(time_offset_ms) FROM treatment_events WHERE session_id = ?", [.integer(id)])?.int64 ?? 0
            _ = try finish(db: db, sessionID: id, folder: folder, end: now, status: .aborted,
                           abortReason: "recorder stopped before the session ended; recovered at \(now.iso8601)", notes: nil,
                           streams: summaries, durationSeconds: lastEvent / 1000,
                           safetyEvent: SafetyLogEntry(timestamp: now, sessionID: id, techID: techID, eventType: "session_recovered",
                                                       severity: .warning, description: "session found in progress at start-up; marked aborted",
                                                       actionTaken: "status set to aborted"))
            recovery.abortedSessions.append(id)
            dropEndedMarker(id, status: SessionStatus.aborted.rawValue, ended: now)
        }
    }

    /// The session's marker in `spool/ended/` (``SessionSpool``), after its ending is
    /// committed: best effort, a session's end never fails on it. A marker that could not
    /// be written is kept in ``markerFailures``; the nightly bundle and backup still take
    /// the session, and `status` reports a finished session without a bundle after 48 h.
    private func dropEndedMarker(_ id: Int64, status: String, ended: UTCTime) {
        do {
            try SessionSpool.markEnded(dataDirectory: dataDirectory, sessionID: id, status: status, at: ended)
        } catch {
            unwrittenMarkers.append((id, String(describing: error)))
        }
    }

    /// Commits the ending a `session.json` records (the crash came between writing it and
    /// committing the row).
    private func commitWrittenEnding(db: Database, manifest m: SessionManifest, folder: String, now: UTCTime, techID: Int64?) throws {
        try db.transaction {
            try db.execute("""
                UPDATE sessions SET status = ?, abort_reason = ?, end_time = ?, duration_seconds = ?,
                  total_laser_on_time_seconds = ?, avg_power_watts = ?, max_power_watts = ?, total_energy_joules = ?,
                  post_treatment_notes = COALESCE(?, post_treatment_notes)
                WHERE session_id = ? AND status = 'in_progress'
                """, [.text(m.status), m.abortReason.sqlValue, .text(m.endTime), .integer(m.durationSeconds),
                      m.totalLaserOnTimeSeconds.sqlValue, m.avgPowerWatts.sqlValue, m.maxPowerWatts.sqlValue,
                      m.totalEnergyJoules.sqlValue, m.postTreatmentNotes.sqlValue, .integer(m.sessionID)])
            try SafetyChain.append(SafetyLogEntry(timestamp: now, sessionID: m.sessionID, techID: techID, eventType: "session_recovered",
                                                  severity: .info,
                                                  description: "session had ended (\(m.status)) just before the recorder stopped; its session.json ending committed at start-up",
                                                  actionTaken: "status set to \(m.status)"), to: db)
            try SafetyChain.append(try SessionSeal.entry(db, sessionID: m.sessionID, techID: techID, folder: folder, backfill: false, now: now), to: db)
        }
    }
}

/// A session being recorded: its folder and its JSONL streams.
public final class RecordingSession: @unchecked Sendable {
    public let id: Int64
    public let subjectCode: String
    public let techID: Int64
    public let protocolID: Int64?
    public let protocolName: String?
    /// `sessions/<code>/<stamp>` relative to the data folder.
    public let relativeFolder: String
    public let folder: String
    public let start: UTCTime
    let startMonotonic: UInt64
    unowned let recorder: Recorder
    private let lock = NSLock()
    private var streams: [String: SampleStream] = [:]
    private var ended = false

    init(recorder: Recorder, id: Int64, subjectCode: String, techID: Int64, protocolID: Int64?, protocolName: String?,
         relativeFolder: String, folder: String, start: UTCTime, startMonotonic: UInt64) {
        self.recorder = recorder
        self.id = id
        self.subjectCode = subjectCode
        self.techID = techID
        self.protocolID = protocolID
        self.protocolName = protocolName
        self.relativeFolder = relativeFolder
        self.folder = folder
        self.start = start
        self.startMonotonic = startMonotonic
    }

    /// Milliseconds since the session started, on the monotonic clock.
    public func elapsedMilliseconds() -> Int64 { Int64((monotonicNanoseconds() &- startMonotonic) / 1_000_000) }

    /// Opens (creates) `streams/<name>.jsonl` with the given fields.
    public func openStream(_ name: String, fields: [String]) throws -> SampleStream {
        try lock.withLock {
            guard !ended else { throw RecorderError.invalidArgument("session \(id) has ended: no new streams") }
            if let s = streams[name] {
                guard s.fields == fields else { throw RecorderError.invalidArgument("stream \(name) is open with fields \(s.fields)") }
                return s
            }
            let s = try SampleStream(name: name, fields: fields, folder: folder, policy: recorder.options.streamPolicy)
            streams[name] = s
            return s
        }
    }

    func flushStreams() throws { for s in lock.withLock({ Array(streams.values) }) { try s.flush() } }
    func flushStreamsIfDue() throws { for s in lock.withLock({ Array(streams.values) }) { try s.flushIfDue() } }
    func closeStreams() throws -> [StreamSummary] {
        try lock.withLock {
            ended = true
            return try streams.values.sorted { $0.name < $1.name }.map { try $0.close() }
        }
    }
}
