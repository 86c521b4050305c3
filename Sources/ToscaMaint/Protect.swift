import Foundation
import ToscaBundle
import ToscaCore

/// `tosca-maint protect`: takes every finished session named in `spool/ended/` off the
/// disk it was written on, right after it ends (``SessionSpool``). For the sessions of the
/// markers, in order: each session's bundle, one backup of kind `session` holding their
/// rows (unless the newest verified backup already does), and, where an export repository
/// is configured, one verified export holding both (unless the last recorded export
/// already does). A marker is removed only when its session is protected; anything else
/// keeps it for the next run. Markers that name no finished session, and anything in the
/// spool that is not a marker, are moved to `spool/set-aside/` and reported.
public struct ProtectJob: Sendable {
    public let folder: DataFolder
    /// The export repository, or nil when none is configured (bundle and backup only).
    public var repository: ExportRepository?
    /// The age recipients file of the bundles (``BundleJob/recipients(file:)``).
    public var recipients = BundleJob.defaultRecipients
    /// Retention of session backups (``PrunePlan``), the prune command's defaults.
    public var keepDaily = 7, keepWeekly = 4, keepMonthly = 12

    public init(folder: DataFolder, repository: ExportRepository? = nil) {
        self.folder = folder
        self.repository = repository
    }

    // MARK: - Where things are

    public var spool: String { SessionSpool.spool(folder.root) }
    public var ended: String { SessionSpool.ended(folder.root) }
    public var setAsideFolder: String { spool + "/set-aside" }
    public var stateFile: String { spool + "/protect.json" }

    /// What the runs remember (`spool/protect.json`): when the last one started (the rate
    /// limit) and how many in a row left a session unprotected (the alert).
    public struct State: Codable, Sendable, Equatable {
        public var lastRunStartedUTC: String?
        public var consecutiveFailures = 0
        enum CodingKeys: String, CodingKey { case lastRunStartedUTC = "last_run_started_utc", consecutiveFailures = "consecutive_failures" }
        public init(lastRunStartedUTC: String? = nil, consecutiveFailures: Int = 0) {
            self.lastRunStartedUTC = lastRunStartedUTC
            self.consecutiveFailures = consecutiveFailures
        }
    }

    public func readState() -> State {
        guard let data = FileManager.default.contents(atPath: stateFile), data.count < 4096,
              let s = try? JSONDecoder().decode(State.self, from: data) else { return State() }
        return s
    }

    public func writeState(_ state: State) throws {
        try LayoutFolder.make(spool)
        let enc = JSONEncoder()
        enc.outputFormatting = [.sortedKeys]
        try AtomicFile.write(Array(try enc.encode(state)) + [10], to: stateFile)
    }

    /// Seconds to wait before a run so that runs start at least `minimumInterval` apart
    /// (0 when the last run is older, or its time is unreadable or in the future).
    public func waitBeforeRun(minimumInterval: Double, now: UTCTime = .now()) -> Double {
        guard minimumInterval > 0, let last = readState().lastRunStartedUTC.flatMap({ UTCTime(iso8601: $0) }) else { return 0 }
        let elapsed = Double(now.seconds - last.seconds) + Double(now.microseconds - last.microseconds) / 1e6
        guard elapsed >= 0 else { return 0 }
        return max(0, minimumInterval - elapsed)
    }

    // MARK: - The spool

    /// One entry of `spool/ended/` as a run sees it.
    public enum Entry: Sendable, Equatable {
        /// A marker naming a session.
        case marker(sessionID: Int64, name: String)
        /// A marker still being written by a live process: left alone.
        case beingWritten(name: String)
        /// Not a marker: set aside with the reason (`raw`: the name's bytes, which may not
        /// be UTF-8; `name` shows them).
        case foreign(name: String, raw: [UInt8], reason: String)
    }

    /// The spool's entries, markers in session order. A marker whose writer died before
    /// renaming it (`.<id>.<pid>.tmp`, a small regular file, the pid gone or the file older
    /// than a minute) is published first: its session's ending was committed before the
    /// marker was begun.
    public func scan() throws -> [Entry] {
        guard try LayoutFolder.check(spool), try LayoutFolder.check(ended) else { return [] }
        let raws: [[UInt8]]
        do { raws = try SessionSpool.rawNames(ended) } catch {
            throw ToolFailure(.ioError, "cannot read \(ended): \(error)")
        }
        var markers: [(Int64, String)] = [], others: [Entry] = []
        for raw in raws.sorted(by: { $0.lexicographicallyPrecedes($1) }) {
            guard let name = String(validating: raw, as: UTF8.self) else {
                others.append(.foreign(name: Self.shown(raw), raw: raw, reason: "not a marker name (not even UTF-8)")); continue
            }
            var st = stat()
            guard lstat(ended + "/" + name, &st) == 0 else { continue } // gone meanwhile
            if let t = SessionSpool.temporary(name) {
                // Only a small regular file can be a marker being written.
                guard st.st_mode & S_IFMT == S_IFREG, st.st_size <= 4096 else {
                    others.append(.foreign(name: name, raw: raw, reason: "a temporary name, but not a small regular file")); continue
                }
                // Its writer alive and the file fresh: being written, left for the next run.
                // (A live pid on an old file is not a writer: markers take milliseconds.)
                let age = time(nil) - st.st_mtim.tv_sec
                if (kill(t.pid, 0) == 0 || errno == EPERM) && age < 60 { others.append(.beingWritten(name: name)); continue }
                let final = ended + "/\(t.sessionID)"
                if FileManager.default.fileExists(atPath: final) { unlink(ended + "/" + name) } else if rename(ended + "/" + name, final) != 0 {
                    throw ToolFailure(.ioError, "cannot publish the interrupted marker \(name): \(String(cString: strerror(errno)))")
                }
                try AtomicFile.syncDirectory(ended)
                Journal.shared.log(.notice, "published the marker of session \(t.sessionID), left half-written by process \(t.pid)")
                if !markers.contains(where: { $0.0 == t.sessionID }) { markers.append((t.sessionID, "\(t.sessionID)")) }
                continue
            }
            guard let id = SessionSpool.sessionID(ofMarker: name) else {
                others.append(.foreign(name: name, raw: raw, reason: "not a marker name (a session id)")); continue
            }
            guard st.st_mode & S_IFMT == S_IFREG else {
                others.append(.foreign(name: name, raw: raw, reason: "not a regular file")); continue
            }
            guard st.st_size <= 4096 else { others.append(.foreign(name: name, raw: raw, reason: "larger than a marker (\(st.st_size) bytes)")); continue }
            if !markers.contains(where: { $0.0 == id }) { markers.append((id, name)) }
        }
        return markers.sorted { $0.0 < $1.0 }.map { .marker(sessionID: $0.0, name: $0.1) } + others
    }

    /// A name's bytes as they can be shown: invalid UTF-8 escaped byte by byte.
    public static func shown(_ raw: [UInt8]) -> String {
        if let s = String(validating: raw, as: UTF8.self) { return shown(s) }
        let out = raw.map { (0x20..<0x7f).contains($0) && $0 != 0x5c ? String(UnicodeScalar($0)) : String(format: "\\x%02x", $0) }.joined()
        return out.count > 120 ? String(out.prefix(120)) + "..." : out
    }

    /// `name` as it can be shown: control characters escaped.
    public static func shown(_ name: String) -> String {
        var out = ""
        for u in name.unicodeScalars {
            if u.value < 0x20 || u.value == 0x7f || u == "\\" { out += String(format: "\\x%02x", u.value) } else { out.unicodeScalars.append(u) }
        }
        return out.count > 120 ? String(out.prefix(120)) + "..." : out
    }

    /// Moves `name` out of `spool/ended/` into `spool/set-aside/` (never deleted: it may
    /// be evidence). Returns where it went.
    func setAside(_ name: String, raw: [UInt8]? = nil, reason: String, now: UTCTime) throws -> String {
        try LayoutFolder.make(setAsideFolder)
        let display = raw.map(Self.shown) ?? Self.shown(name)
        let safe = String(display.map { $0 == "/" || $0 == "\\" ? "_" : $0 }.prefix(100))
        var target = setAsideFolder + "/\(now.folderStamp)_\(safe)"
        var n = 2
        while FileManager.default.fileExists(atPath: target) || (try? FileManager.default.destinationOfSymbolicLink(atPath: target)) != nil {
            target = setAsideFolder + "/\(now.folderStamp)_\(safe)_\(n)"; n += 1
        }
        let source = Array((ended + "/").utf8) + (raw ?? Array(name.utf8)) + [0]
        let moved = source.withUnsafeBufferPointer { $0.withMemoryRebound(to: CChar.self) { rename($0.baseAddress!, target) } }
        guard moved == 0 else {
            throw ToolFailure(.ioError, "cannot set \(display) aside: \(String(cString: strerror(errno)))")
        }
        try AtomicFile.syncDirectory(ended)
        try AtomicFile.syncDirectory(setAsideFolder)
        Journal.shared.log(.err, "spool/ended/\(display) set aside to \(target): \(reason)", id: .markerSetAside,
                           fields: ["TOSCA_SPOOL_ENTRY": display, "TOSCA_PATH": target])
        return target
    }

    // MARK: - A run

    public struct Outcome: Sendable {
        /// Sessions protected by this run (their markers removed).
        public var protected: [Int64] = []
        /// Sessions left unprotected, with why; their markers stay.
        public var pending: [(session: Int64, reason: String, status: ExitStatus)] = []
        /// Spool entries moved to `spool/set-aside/`: the name (escaped for showing), why,
        /// and where it went.
        public var setAside: [(name: String, reason: String, path: String)] = []
        /// Markers still being written by a live process (left for the next run).
        public var beingWritten = 0
        /// The session backup this run published (nil: none needed or none made).
        public var backup: String?
        /// The export this run recorded (its snapshot id), if any.
        public var exportSnapshot: String?
        /// Session backups removed by retention after the new one.
        public var thinned: [String] = []
        /// The worst exit status among the pending sessions.
        public var worstPending: ExitStatus? {
            pending.map(\.status).max { a, b in rank(a) < rank(b) }
        }
        private func rank(_ s: ExitStatus) -> Int { s == .dataError ? 3 : s == .tempFail ? 1 : 2 }
    }

    /// Runs once. The caller holds `.maint.lock`.
    public func run(progress: ((String) -> Void)? = nil) throws -> Outcome {
        var outcome = Outcome()
        let now = UTCTime.now()
        var sessions: [Int64] = []
        let entries = try scan()
        // Which markers name a finished session: read from the live database.
        var rows: [Int64: (status: String, folder: String?)] = [:]
        if entries.contains(where: { if case .marker = $0 { return true }; return false }) {
            let db = try Database(path: folder.database, options: .init(readOnly: true, key: folder.liveKey))
            for case .marker(let id, _) in entries {
                if let r = try db.rows("SELECT status, session_folder_path FROM sessions WHERE session_id = ?", [.integer(id)]).first {
                    rows[id] = (r[0].string ?? "", r[1].string)
                }
            }
        }
        for e in entries {
            switch e {
            case .beingWritten:
                outcome.beingWritten += 1
            case .foreign(let name, let raw, let reason):
                outcome.setAside.append((Self.shown(raw), reason, try setAside(name, raw: raw, reason: reason, now: now)))
            case .marker(let id, let name):
                let reason: String?
                if let row = rows[id] {
                    if row.status == "in_progress" {
                        reason = "session \(id) is still in progress: a marker is written only after a session ends"
                    } else if !["completed", "aborted"].contains(row.status) {
                        reason = "session \(id) has status '\(Self.shown(row.status))', not a finished one"
                    } else {
                        reason = markerContentProblem(name, sessionID: id)
                    }
                } else {
                    reason = "no session \(id) in \(folder.database)"
                }
                if let reason {
                    outcome.setAside.append((Self.shown(name), reason, try setAside(name, reason: reason, now: now)))
                } else {
                    sessions.append(id)
                }
            }
        }
        guard !sessions.isEmpty else { return outcome }
        progress?("protecting session\(sessions.count == 1 ? "" : "s") \(sessions.map(String.init).joined(separator: ", "))")

        // 1. Each session's bundle, verified (its SHA-256 against its sidecar, whose
        // publication check read it back). A session whose folder is not there (ENOENT:
        // recovered as aborted with no folder) has nothing to bundle; any other error
        // reaching it keeps the marker.
        var bundleOf: [Int64: BundleJob.Published?] = [:]
        var failed: [Int64: (String, ExitStatus)] = [:]
        let bundles = BundleJob(folder: folder)
        for id in sessions {
            let relative = rows[id]?.folder ?? ""
            // No folder recorded at all (a row of the old app): nothing to bundle.
            if relative.isEmpty { bundleOf[id] = .some(nil); continue }
            guard !relative.hasPrefix("/"), !relative.split(separator: "/").contains("..") else {
                failed[id] = ("its folder path is missing or leaves the data folder", .dataError); continue
            }
            var st = stat()
            if lstat(folder.root + "/" + relative, &st) != 0 {
                let e = errno
                guard e == ENOENT else {
                    failed[id] = ("its folder cannot be reached: \(String(cString: strerror(e)))", .ioError); continue
                }
                // No folder (recovered as aborted with none, or released after an export
                // that holds its bundle): what there is, is its bundle if it has one.
                if let b = try? bundles.published().first(where: { $0.sessionID == id }) {
                    if let problem = Self.bundleProblem(b) { failed[id] = ("its folder is gone and \(problem)", .dataError); continue }
                    bundleOf[id] = .some(b)
                } else {
                    bundleOf[id] = .some(nil)
                }
                continue
            }
            do {
                let o = try bundles.run(sessionID: id, recipients: recipients)
                if let f = o.failed.first(where: { $0.session == id }) { failed[id] = ("not bundled: \(f.reason)", .dataError); continue }
                guard let b = try bundles.published().first(where: { $0.sessionID == id }) else {
                    failed[id] = ("no bundle was published (its folder holds no session.json)", .dataError); continue
                }
                if let problem = Self.bundleProblem(b) { failed[id] = (problem, .dataError); continue }
                bundleOf[id] = .some(b)
            } catch {
                let f = classify(error)
                failed[id] = ("not bundled: \(f.message)", f.status)
            }
        }

        // 2. A verified backup holding every session's finished row.
        let holding: CatalogEntry
        do {
            if let newest = try folder.scanCatalog().newestVerifiedBackup, try holdsFinished(sessions, copy: newest) {
                holding = newest
            } else {
                progress?("backup (kind session)")
                var job = CopyJob(folder: folder, kind: .session)
                job.showProgress = false
                job.keepsSuspectCopy = false
                let copy = try job.runHoldingMaintenanceLock()
                outcome.backup = copy.path
                guard let entry = try folder.scanCatalog().entries.first(where: { $0.path == copy.path }) else {
                    throw ToolFailure(.ioError, "the session backup \(copy.path) is not in the catalog after publication")
                }
                let missing = try sessions.filter { try !holdsFinished([$0], copy: entry) }
                guard missing.isEmpty else {
                    throw ToolFailure(.dataError, "the session backup \(entry.name) does not hold session(s) \(missing.map(String.init).joined(separator: ", ")) as finished")
                }
                holding = entry
            }
        } catch {
            let f = classify(error)
            for id in sessions { outcome.pending.append((id, failed[id]?.0 ?? "no verified backup holds it: \(f.message)", failed[id]?.1 ?? f.status)) }
            logPending(outcome.pending)
            return outcome
        }
        if outcome.backup != nil { outcome.thinned = (try? thinSessionBackups()) ?? [] }

        // 3. Where a repository is configured: a verified export holding the copy and the bundles.
        var ready = sessions.filter { failed[$0] == nil }
        if let repository, !ready.isEmpty {
            do {
                if !exportHolds(ready, bundleOf: bundleOf, copy: holding) {
                    progress?("export to \(repository.redacted)")
                    // restic on one core while a recorder runs: the next treatment may have begun.
                    var restic = try Restic(repository: repository)
                    restic.oneCore = folder.recorderRuns
                    let o = try ExportJob(folder: folder, restic: restic).run(progress: progress)
                    outcome.exportSnapshot = o.snapshotID
                    // The export takes the newest verified backup: it must be the one that holds them.
                    let newest = try folder.scanCatalog().newestVerifiedBackup
                    let held = ready.filter { id in exportHolds([id], bundleOf: bundleOf, copy: newest ?? holding) && (try? holdsFinished([id], copy: newest ?? holding)) == true }
                    for id in ready where !held.contains(id) {
                        failed[id] = ("the verified export \(o.snapshotID) does not hold its bundle or its rows", .dataError)
                    }
                    ready = held
                }
            } catch {
                let f = classify(error)
                for id in ready { failed[id] = ("not exported to \(repository.redacted): \(f.message)", f.status) }
                ready = []
            }
        }

        // 4. The markers of the protected sessions go; the others stay.
        for id in ready {
            guard unlink(ended + "/\(id)") == 0 || errno == ENOENT else {
                failed[id] = ("protected, but its marker cannot be removed: \(String(cString: strerror(errno)))", .ioError); continue
            }
            outcome.protected.append(id)
        }
        if !outcome.protected.isEmpty { try AtomicFile.syncDirectory(ended) }
        for id in outcome.protected {
            let how = repository.map { "its bundle and a backup holding its rows are in a verified export to \($0.redacted)" }
                ?? "its bundle and a verified backup holding its rows exist (on this disk: no export repository is configured)"
            Journal.shared.log(.info, "session \(id) protected: \(how)", id: .sessionProtected,
                               fields: ["TOSCA_SESSION_ID": String(id), "TOSCA_BACKUP_PATH": holding.path])
        }
        for id in sessions where failed[id] != nil { outcome.pending.append((id, failed[id]!.0, failed[id]!.1)) }
        logPending(outcome.pending)
        return outcome
    }

    private func logPending(_ pending: [(session: Int64, reason: String, status: ExitStatus)]) {
        for p in pending {
            Journal.shared.log(.warning, "session \(p.session) is not protected yet: \(p.reason); its marker stays for the next run",
                               id: .sessionNotProtected, fields: ["TOSCA_SESSION_ID": String(p.session), "TOSCA_EXIT_STATUS": String(p.status.rawValue)])
        }
    }

    /// Why a marker's content does not fit its name, or nil. An empty marker is accepted
    /// (its writer lost power between creating and writing it); the database decides.
    func markerContentProblem(_ name: String, sessionID id: Int64) -> String? {
        // Never through a link, never blocking on a FIFO put there after the scan.
        let fd = open(ended + "/" + name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC)
        guard fd >= 0 else { return "it cannot be opened as a file (\(String(cString: strerror(errno))))" }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG, st.st_size <= 4096 else { return "not a small regular file" }
        var buf = [UInt8](repeating: 0, count: 4097)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, 4097) }
        guard n >= 0, n <= 4096 else { return "it cannot be read as a marker" }
        let data = Data(buf[0..<n])
        if data.isEmpty { return nil }
        guard let m = try? JSONDecoder().decode(SessionSpool.Marker.self, from: data) else { return "its content is not a marker" }
        return m.sessionID == id ? nil : "its content names session \(m.sessionID), its name session \(id)"
    }

    /// Why a published bundle cannot count as verified, or nil: its sidecar's last check
    /// passed (publication read it back) and the file still has the sidecar's size and
    /// SHA-256.
    static func bundleProblem(_ b: BundleJob.Published) -> String? {
        guard let sidecar = b.sidecar, sidecar.checks.last?.ok == true else {
            return "its bundle \(PathName.name(b.path)) has no passing check in its sidecar"
        }
        guard let (sha, size) = try? FileDigest.sha256(path: b.path), sha == sidecar.sha256, size == sidecar.sizeBytes else {
            return "its bundle \(PathName.name(b.path)) does not match its sidecar (SHA-256)"
        }
        return nil
    }

    /// Whether `copy` holds every one of `sessions` as completed or aborted.
    func holdsFinished(_ sessions: [Int64], copy: CatalogEntry) throws -> Bool {
        guard !sessions.isEmpty else { return true }
        let db = try Database(path: copy.path, options: .init(readOnly: true, key: folder.key(for: copy)))
        let list = sessions.map(String.init).joined(separator: ",")
        return try db.scalar("SELECT count(*) FROM sessions WHERE session_id IN (\(list)) AND status IN ('completed', 'aborted')")?.int == sessions.count
    }

    /// Whether the last recorded (verified) export holds `copy` as it is stored and each
    /// session's bundle as its sidecar says.
    func exportHolds(_ sessions: [Int64], bundleOf: [Int64: BundleJob.Published?], copy: CatalogEntry) -> Bool {
        guard let last = ExportJob.recordedExports(folder).last, last.snapshotID != nil,
              last.databaseCopy == "backups/" + copy.name, let facts = copy.manifest?.facts else { return false }
        let files = Dictionary(last.files.map { ($0.path, $0.sha256) }, uniquingKeysWith: { a, _ in a })
        guard files["backups/" + copy.name] == facts.sha256 else { return false }
        for id in sessions {
            guard let entry = bundleOf[id] else { return false }
            guard let b = entry else { continue } // nothing to bundle
            guard let sidecar = b.sidecar, files["bundles/" + PathName.name(b.path)] == sidecar.sha256 else { return false }
        }
        return true
    }

    /// Session backups beyond retention (``PrunePlan``): removed after a new one.
    func thinSessionBackups() throws -> [String] {
        let catalog = try folder.scanCatalog()
        var plan = PrunePlan.make(catalog: catalog, keepDaily: keepDaily, keepWeekly: keepWeekly, keepMonthly: keepMonthly,
                                  safetyCopiesOlderThanDays: nil, now: .now(), anchor: LiveCheck.anchor(catalog)?.name)
        plan.remove = plan.remove.filter { $0.entry.kind == .session }
        try plan.apply(backupsDirectory: catalog.backupsDirectory)
        return plan.remove.map(\.entry.name)
    }
}
