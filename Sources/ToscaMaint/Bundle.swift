import Foundation
import ToscaBundle
import ToscaCore

/// The sidecar `<bundle>.manifest.json` of a published session bundle (D6 style, no PHI:
/// no subject code, no file names).
public struct BundleSidecar: Codable, Sendable {
    public var format = "tosca-bundle-sidecar/1"
    public var kind = "bundle"
    public var sessionID: Int64
    public var createdUTC: String
    public var sha256: String
    public var sizeBytes: Int64
    public var fileCount: Int
    public var plaintextBytes: Int64
    /// `none`, or (later) the age recipients' fingerprints: never a key.
    public var encryption: String
    public var toolVersion: String
    public var libarchiveVersion: String
    /// ``SessionBundle/listingDigest(folders:files:)`` of the folder when it was bundled.
    public var listingSHA256: String?
    public var checks: [ManifestCheck]

    enum CodingKeys: String, CodingKey {
        case format, kind, encryption, checks
        case sessionID = "session_id", createdUTC = "created_utc", sha256, sizeBytes = "size_bytes", fileCount = "file_count"
        case plaintextBytes = "plaintext_bytes", toolVersion = "tool_version", libarchiveVersion = "libarchive_version"
        case listingSHA256 = "listing_sha256"
    }

    public static func path(for bundle: String) -> String { bundle + ".manifest.json" }

    public static func read(path: String) throws -> BundleSidecar {
        try JSONDecoder().decode(BundleSidecar.self, from: Data(contentsOf: URL(fileURLWithPath: path)))
    }

    public func write(path: String) throws {
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try AtomicFile.write(Array(try enc.encode(self)) + [10], to: path, mode: 0o600)
    }
}

/// `tosca-maint bundle`: every finished session folder sealed into one verified bundle
/// (D17) in `bundles/`.
public struct BundleJob: Sendable {
    public let folder: DataFolder
    public var level = 3
    /// While a recorder holds `tosca.lock`, a session's bundle starts at least this long
    /// after the previous one started.
    public var minimumSecondsPerSessionWhileRecording = 1.0
    /// A progress bar on a terminal (`STATUS=` under systemd).
    public var showProgress = false
    public init(folder: DataFolder) { self.folder = folder }

    /// The clinic's age recipients for encrypted bundles (D18).
    public static let defaultRecipients = "/etc/tosca-maint/bundle-recipients"

    /// A published bundle.
    public struct Published: Sendable {
        public let path: String
        public let sessionID: Int64
        public let sidecar: BundleSidecar?
        public let sidecarError: String?
    }

    /// What a run did.
    public struct Outcome: Sendable {
        public var bundled: [(session: Int64, path: String)] = []
        public var wouldBundle: [Int64] = []
        public var alreadyBundled = 0
        public var inProgress = 0
        /// Sessions that could not be bundled, and why (65).
        public var failed: [(session: Int64, reason: String)] = []
    }

    /// Bundle files in `bundles/` without their sidecar: not published (D4: the sidecar
    /// comes last), left by an interrupted run.
    public func unpublished() throws -> [String] {
        guard try LayoutFolder.check(folder.bundles) else { return [] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.bundles)) ?? []
        return names.sorted().filter { ($0.hasSuffix(".tar.zst") || $0.hasSuffix(".tar.zst.age")) && !names.contains(BundleSidecar.path(for: $0)) }
            .map { folder.bundles + "/" + $0 }
    }

    /// Bundles in `bundles/`, by session: those with their sidecar (published, D4).
    public func published() throws -> [Published] {
        guard try LayoutFolder.check(folder.bundles) else { return [] }
        let names = (try? FileManager.default.contentsOfDirectory(atPath: folder.bundles)) ?? []
        return names.sorted().compactMap { n -> Published? in
            guard n.hasPrefix("session_"), n.hasSuffix(".tar.zst") || n.hasSuffix(".tar.zst.age"), names.contains(BundleSidecar.path(for: n)) else { return nil }
            let parts = n.dropFirst("session_".count).split(separator: "_")
            guard let id = parts.first.flatMap({ Int64($0) }) else { return nil }
            let path = folder.bundles + "/" + n
            do {
                return Published(path: path, sessionID: id, sidecar: try BundleSidecar.read(path: BundleSidecar.path(for: path)), sidecarError: nil)
            } catch {
                return Published(path: path, sessionID: id, sidecar: nil, sidecarError: "sidecar cannot be read: \(error.localizedDescription)")
            }
        }
    }

    /// Bundles every finished session that has none (or `sessionID` only). The caller
    /// holds `.maint.lock`. A session that cannot be bundled is named and the others go on.
    /// The age recipients bundles are encrypted to: those in `path` when it exists (an
    /// existing file without any is refused, 78); on an encrypted device (D14) they are
    /// required (78, nothing written: a bundle is never written in plaintext there).
    public func recipients(file path: String) throws -> [Age.Recipient] {
        let encrypted = CatalogAudit.deviceEncrypted(try folder.scanCatalog())
        guard FileManager.default.fileExists(atPath: path) else {
            if encrypted {
                throw ToolFailure(.config, "the database is encrypted and \(path) names no age recipient: a bundle is never written in plaintext; nothing was written",
                                  hint: "put the clinic's age1... recipients in \(path) (one a line), or pass --recipients FILE")
            }
            return []
        }
        let list: [Age.Recipient]
        do { list = try Age.recipients(file: path) } catch {
            throw ToolFailure(.config, "\(path): \(error)", hint: "one age1... recipient a line; # comments allowed")
        }
        // A recipients file that is there but empty says encryption was meant and its
        // set-up went wrong: never read as "plaintext is fine", on any device.
        guard !list.isEmpty else {
            throw ToolFailure(.config, "\(path) exists but holds no age recipient\(encrypted ? " and the database is encrypted" : ""): nothing was written",
                              hint: "put the clinic's age1... recipients in it (one a line), or remove it to bundle in plaintext on a plaintext device")
        }
        return list
    }

    public func run(sessionID: Int64? = nil, dryRun: Bool = false, recipients path: String = BundleJob.defaultRecipients) throws -> Outcome {
        // A bundle of an encrypted device is never written in plaintext (D18).
        let recipients = try recipients(file: path)
        // An interrupted cutover's plaintext bundles on an encrypted device: converted first.
        if !dryRun, !recipients.isEmpty, CatalogAudit.deviceEncrypted(try folder.scanCatalog()) {
            try encryptPlaintextBundles(to: recipients)
        }
        try LayoutFolder.check(folder.sessions)
        let db = try Database(path: folder.database, options: .init(readOnly: true, key: folder.liveKey))
        var outcome = Outcome()
        outcome.inProgress = try db.scalar("SELECT count(*) FROM sessions WHERE status = 'in_progress'" + (sessionID.map { " AND session_id = \($0)" } ?? ""))?.int ?? 0
        let rows = try db.rows("""
            SELECT session_id, session_folder_path, start_time, end_time FROM sessions
            WHERE status IN ('completed', 'aborted') \(sessionID == nil ? "" : "AND session_id = ?") ORDER BY session_id
            """, sessionID.map { [.integer($0)] } ?? [])
        // Leftovers of interrupted runs (we hold .maint.lock): partial files go; a bundle
        // without its sidecar was never published: it goes too, and its session is bundled
        // again from its folder below (same bytes for a plaintext one).
        if !dryRun, try LayoutFolder.check(folder.bundles) {
            for n in (try? FileManager.default.contentsOfDirectory(atPath: folder.bundles)) ?? [] where n.hasSuffix(".partial") {
                unlink(folder.bundles + "/" + n)
            }
            for p in try unpublished() {
                let id = PathName.name(p).dropFirst("session_".count).split(separator: "_").first.flatMap { Int64($0) }
                let rel = rows.first { $0[0].int64 == id }?[1].string
                // Only when its folder can give it again; else it may be the only copy: kept.
                guard let rel, !rel.hasPrefix("/"), FileManager.default.fileExists(atPath: folder.root + "/" + rel + "/session.json") else {
                    outcome.failed.append((id ?? 0, "\(PathName.name(p)) has no sidecar (an interrupted run) and its session folder is gone: kept as it is; examine it with bundle extract --file"))
                    continue
                }
                unlink(p)
                Journal.shared.log(.notice, "removed \(p), a bundle an interrupted run never published (no sidecar); its session is bundled again",
                                   id: .partialRemoved, fields: ["TOSCA_PATH": p])
            }
        }
        let published = try published()
        let done = Set(published.map(\.sessionID))
        var lastStart: UInt64? = nil, pacingSaid = false
        for r in rows {
            guard let id = r[0].int64 else { continue }
            if done.contains(id) {
                outcome.alreadyBundled += 1
                // A folder that no longer matches its bundle (by names and sizes) is
                // reported; both are kept, nothing is overwritten.
                if let rel = r[1].string, !rel.hasPrefix("/"), FileManager.default.fileExists(atPath: folder.root + "/" + rel),
                   let recorded = published.first(where: { $0.sessionID == id })?.sidecar?.listingSHA256,
                   let now = try? SessionBundle.scan(folder: folder.root + "/" + rel, hashing: false),
                   SessionBundle.listingDigest(folders: now.folders, files: now.files) != recorded {
                    outcome.failed.append((id, "session folder changed after it was bundled (files added, removed or resized); the folder and the bundle are both kept"))
                    Journal.shared.log(.err, "session \(id)'s folder changed after it was bundled", id: .bundleFailed, fields: ["TOSCA_SESSION_ID": String(id)])
                }
                continue
            }
            guard let relative = r[1].string, !relative.hasPrefix("/"), !relative.split(separator: "/").contains("..") else {
                outcome.failed.append((id, "its folder path is missing or leaves the data folder")); continue
            }
            let sessionFolder = folder.root + "/" + relative
            guard FileManager.default.fileExists(atPath: sessionFolder + "/session.json") else { continue } // not finished on disk
            if dryRun { outcome.wouldBundle.append(id); continue }
            // While a recorder holds tosca.lock (a treatment may be running), at most one
            // session a second: each publication's fsyncs are a few milliseconds in which a
            // recorder commit waits, and spread out they stay out of its p99 (measured with
            // tosca-bench bundle on 20 sessions).
            if let last = lastStart, folder.recorderRuns {
                if !pacingSaid {
                    pacingSaid = true
                    Journal.shared.log(.info, "a recorder holds tosca.lock: bundling at most one session a second")
                }
                let wait = minimumSecondsPerSessionWhileRecording - Double(monotonicNanoseconds() - last) / 1e9
                if wait > 0 { usleep(useconds_t(wait * 1e6)) }
            }
            lastStart = monotonicNanoseconds()
            do {
                try LayoutFolder.check(PathName.parent(sessionFolder))
                let path = try bundle(sessionID: id, folder: sessionFolder, start: r[2].string ?? "", end: r[3].string, recipients: recipients)
                outcome.bundled.append((id, path))
                Journal.shared.log(.info, "bundled session \(id) into \(path)", id: .bundlePublished, fields: ["TOSCA_SESSION_ID": String(id), "TOSCA_BUNDLE_PATH": path])
            } catch let f as ToolFailure where f.status == .ioError {
                throw f // a full disk stops the run: the next session would meet it too
            } catch {
                // One session that cannot be bundled is named; the others go on.
                let reason = (error as? BundleError)?.description ?? String(describing: error)
                outcome.failed.append((id, reason))
                Journal.shared.log(.err, "session \(id) was not bundled: \(reason)", id: .bundleFailed, fields: ["TOSCA_SESSION_ID": String(id)])
            }
        }
        return outcome
    }

    /// Scans, checks the streams against `session.json`, writes, reads back and checks,
    /// publishes (D4: partial, fsync, link, fsync, sidecar last). Returns the path.
    func bundle(sessionID id: Int64, folder sessionFolder: String, start: String, end: String?, recipients: [Age.Recipient]) throws -> String {
        // A recorder running: the session's files are read in small direct requests (its
        // commits would queue behind read-ahead); none: through the page cache, so the
        // second pass finds them there.
        let gently = folder.recorderRuns
        let (folders, files) = try SessionBundle.scan(folder: sessionFolder, gently: gently)
        // Each stream's SHA-256 must be the one session.json records.
        let recorded = try JSONDecoder().decode(SessionManifest.self, from: Data(contentsOf: URL(fileURLWithPath: sessionFolder + "/session.json")))
        for s in recorded.streams {
            guard let f = files.first(where: { $0.path == s.file }) else {
                throw BundleError.source(path: sessionFolder + "/" + s.file, reason: "is listed in session.json but missing")
            }
            guard f.sha256 == s.sha256 else {
                throw BundleError.source(path: sessionFolder + "/" + s.file, reason: "its SHA-256 differs from the one session.json records: the stream changed after the session ended")
            }
        }
        let manifest = BundleManifest(sessionID: id, startTime: start, endTime: end, folders: folders,
                                      files: files.map { .init(path: $0.path, size: $0.size, sha256: $0.sha256) })
        let stamp = UTCTime(sqlDateTime: end ?? start) ?? UTCTime(seconds: 0, microseconds: 0)
        let day = String(start.prefix(10)).replacingOccurrences(of: "-", with: "")
        try LayoutFolder.make(folder.bundles)
        let final = folder.bundles + "/session_\(id)_\(day.isEmpty ? "00000000" : day).tar.zst" + (recipients.isEmpty ? "" : ".age")
        let partial = final + ".partial"
        unlink(partial)
        let fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
        guard fd >= 0 else {
            let e = errno
            throw ToolFailure(e == ENOSPC ? .ioError : .cantCreate, "cannot create \(partial): \(String(cString: strerror(e)))")
        }
        var published = false
        defer { if !published { unlink(partial) } }
        var fileKey: [UInt8]? = nil
        let bar = showProgress ? Progress("bundling session \(id)") : nil
        let total = Int(manifest.plaintextBytes)
        let progress: (Int64) -> Void = { done in bar?.update(Int(done), of: total) }
        Journal.shared.status("bundling session \(id)")
        defer { bar?.finish() }
        do {
            defer { close(fd) }
            // Blocks allocated up front and direct writes, so the recorder's fsyncs never
            // wait behind our allocations or dirty pages.
            let paced = PacedWriter(fd: fd, path: partial, expectedBytes: SessionBundle.sizeBound(manifest, encrypted: !recipients.isEmpty))
            if recipients.isEmpty {
                try SessionBundle.write(folder: sessionFolder, manifest: manifest, scanned: files, manifestTime: stamp.seconds,
                                        level: level, gently: gently, progress: progress, output: { try paced.write($0) })
            } else {
                // D18: encrypted to the recipients; the file key stays in memory only for the
                // read-back below.
                let writer = try Age.Writer(recipients: recipients) { bytes in try bytes.withUnsafeBytes { try paced.write($0) } }
                try SessionBundle.write(folder: sessionFolder, manifest: manifest, scanned: files, manifestTime: stamp.seconds,
                                        level: level, gently: gently, progress: progress, output: { try writer.write($0) })
                try writer.close()
                fileKey = writer.fileKey
            }
            try paced.finish()
            guard fsync(fd) == 0 else { throw POSIXFailure(operation: "fsync \(partial)", code: errno) }
        }
        // Verified at publication: read back from the disk (decrypted with the file key still
        // in memory), every file against the manifest written (which is the folder's scan);
        // the file's SHA-256 for the sidecar is taken on the same read.
        var sha = "", size: Int64 = -1
        let readBack = try SessionBundle.read(path: partial, fileKey: fileKey, fileDigest: { sha = $0; size = $1 })
        guard readBack == manifest else { throw BundleError.damaged(reason: "the bundle read back holds another manifest than the one written") }
        guard link(partial, final) == 0 else {
            throw ToolFailure(errno == EEXIST ? .cantCreate : .ioError, "cannot publish \(final): \(String(cString: strerror(errno)))")
        }
        unlink(partial)
        try AtomicFile.syncDirectory(folder.bundles)
        let sidecar = BundleSidecar(sessionID: id, createdUTC: UTCTime.now().iso8601, sha256: sha, sizeBytes: size, fileCount: files.count,
                                    plaintextBytes: manifest.plaintextBytes,
                                    encryption: recipients.isEmpty ? "none" : "age X25519 to " + recipients.map(\.fingerprint).joined(separator: ", "),
                                    toolVersion: toscaMaintVersion,
                                    libarchiveVersion: SessionBundle.libarchiveVersion,
                                    listingSHA256: SessionBundle.listingDigest(folders: folders, files: files),
                                    checks: [ManifestCheck(level: "bundle", ok: true, problems: [])])
        do { try sidecar.write(path: BundleSidecar.path(for: final)) } catch { unlink(final); throw error }
        published = true
        return final
    }

    /// Checks a published bundle: its size and SHA-256 against the sidecar, then every
    /// entry read back against `MANIFEST.json`. The result is recorded in the sidecar.
    public func verify(_ bundle: Published, identities: [Age.Identity] = []) throws -> [String] {
        guard var sidecar = bundle.sidecar else { return [bundle.sidecarError ?? "no sidecar: not a published bundle"] }
        var problems: [String] = []
        if let (sha, size) = try? FileDigest.sha256(path: bundle.path) {
            if size != sidecar.sizeBytes { problems.append("size is \(size) bytes, the sidecar says \(sidecar.sizeBytes)") }
            if sha != sidecar.sha256 { problems.append("SHA-256 differs from the sidecar: the file changed after publication") }
        } else {
            problems.append("cannot be read")
        }
        // An encrypted bundle is read through only with an identity: the device keeps none,
        // and its ciphertext's SHA-256 above is the check it can make alone.
        if !SessionBundle.isEncrypted(path: bundle.path) || !identities.isEmpty {
            do {
                let m = try SessionBundle.read(path: bundle.path, identities: identities)
                if m.sessionID != bundle.sessionID { problems.append("holds session \(m.sessionID), its name says \(bundle.sessionID)") }
                if m.files.count != sidecar.fileCount { problems.append("holds \(m.files.count) files, the sidecar says \(sidecar.fileCount)") }
            } catch {
                problems.append(String(describing: error))
            }
        }
        sidecar.checks.append(ManifestCheck(level: "verify", ok: problems.isEmpty, problems: problems))
        try sidecar.write(path: BundleSidecar.path(for: bundle.path))
        if problems.isEmpty {
            Journal.shared.log(.info, "verified bundle \(bundle.path)", id: .verifyPassed, fields: ["TOSCA_BUNDLE_PATH": bundle.path])
        } else {
            Journal.shared.log(.err, "verification of bundle \(bundle.path) FAILED: \(problems.joined(separator: "; "))", id: .verifyFailed,
                               fields: ["TOSCA_BUNDLE_PATH": bundle.path])
        }
        return problems
    }

    /// The bundles as `status` counts them.
    public struct Census: Sendable {
        public var bundledSessions = 0
        public var bytes: Int64 = 0
        /// Published bundles whose last check failed (or whose sidecar cannot be read).
        public var failed: [String] = []
        /// Finished sessions with a `session.json` older than `unbundledAfterHours` and no
        /// bundle.
        public var unbundled: [Int64] = []
    }

    /// Counts the bundles, and the finished sessions that should have one by now.
    public func census(unbundledAfterHours: Double = 48, now: UTCTime = .now()) throws -> Census {
        var c = Census()
        let published = try published()
        c.bundledSessions = Set(published.map(\.sessionID)).count
        c.bytes = published.compactMap { $0.sidecar?.sizeBytes }.reduce(0, +)
        c.failed = published.filter { $0.sidecar?.checks.last?.ok != true }.map { PathName.name($0.path) }
        guard FileManager.default.fileExists(atPath: folder.database),
              let db = try? Database(path: folder.database, options: .init(readOnly: true, key: folder.liveKey)),
              (try? db.scalar("SELECT 1 FROM sqlite_master WHERE name = 'sessions'")) != nil else { return c }
        let done = Set(published.map(\.sessionID))
        for r in try db.rows("SELECT session_id, session_folder_path, COALESCE(end_time, start_time) FROM sessions WHERE status IN ('completed', 'aborted') ORDER BY session_id") {
            guard let id = r[0].int64, !done.contains(id), let rel = r[1].string, !rel.hasPrefix("/"),
                  let ended = r[2].string.flatMap({ UTCTime(sqlDateTime: $0) }),
                  Double(now.seconds - ended.seconds) > unbundledAfterHours * 3600,
                  FileManager.default.fileExists(atPath: folder.root + "/" + rel + "/session.json") else { continue }
            c.unbundled.append(id)
        }
        return c
    }

    // MARK: - The cutover

    /// Published bundles still in plaintext.
    public func plaintextBundles() throws -> [Published] {
        try published().filter { !SessionBundle.isEncrypted(path: $0.path) }
    }

    /// Converts every plaintext bundle into an age-encrypted one (Phase 6): the encrypted
    /// bundle is written, read back with the file key still in memory (every file checked)
    /// and published with its sidecar first; only then the plaintext bundle and its sidecar
    /// are removed. Resumable: a session whose encrypted bundle is already published only
    /// loses its plaintext one. Returns the bundles converted.
    @discardableResult
    public func encryptPlaintextBundles(to recipients: [Age.Recipient]) throws -> (converted: [String], skipped: [(String, String)]) {
        guard !recipients.isEmpty else { return ([], []) }
        var converted: [String] = []
        var skipped: [(String, String)] = []
        let all = try published()
        for plain in all where !SessionBundle.isEncrypted(path: plain.path) {
            let final = plain.path + ".age"
            if !all.contains(where: { $0.path == final && $0.sidecar != nil }) {
                // Only a bundle that is the one published, and whose last check passed, is
                // converted: a damaged one must not come out with a fresh "ok".
                guard let plainSidecar = plain.sidecar, plainSidecar.checks.last?.ok == true,
                      let (plainSHA, plainSize) = try? FileDigest.sha256(path: plain.path),
                      plainSHA == plainSidecar.sha256, plainSize == plainSidecar.sizeBytes else {
                    skipped.append((PathName.name(plain.path), "differs from its sidecar or failed its last check: not converted, kept as it is"))
                    continue
                }
                // An encrypted bundle an interrupted conversion linked but never published
                // (no sidecar): the plaintext is still here, so it is made again.
                unlink(final)
                let partial = final + ".partial"
                unlink(partial)
                let fd = open(partial, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0o600)
                guard fd >= 0 else { throw POSIXFailure(operation: "create \(partial)", code: errno) }
                var published = false
                defer { if !published { unlink(partial) } }
                var fileKey: [UInt8] = []
                do {
                    defer { close(fd) }
                    let paced = PacedWriter(fd: fd, path: partial, expectedBytes: plain.sidecar.map { Age.sizeBound(plaintext: $0.sizeBytes) } ?? 0)
                    let writer = try Age.Writer(recipients: recipients) { bytes in try bytes.withUnsafeBytes { try paced.write($0) } }
                    let inFD = open(plain.path, O_RDONLY | O_CLOEXEC)
                    guard inFD >= 0 else { throw POSIXFailure(operation: "open \(plain.path)", code: errno) }
                    defer { close(inFD) }
                    var buf = [UInt8](repeating: 0, count: 1 << 20)
                    while true {
                        let n = buf.withUnsafeMutableBytes { Glibc.read(inFD, $0.baseAddress, $0.count) }
                        if n < 0 { if errno == EINTR { continue }; throw POSIXFailure(operation: "read \(plain.path)", code: errno) }
                        if n == 0 { break }
                        try buf.withUnsafeBytes { try writer.write(UnsafeRawBufferPointer(rebasing: $0[..<n])) }
                    }
                    try writer.close()
                    try paced.finish()
                    fileKey = writer.fileKey
                    guard fsync(fd) == 0 else { throw POSIXFailure(operation: "fsync \(partial)", code: errno) }
                }
                var sha = "", size: Int64 = -1
                let manifest = try SessionBundle.read(path: partial, fileKey: fileKey, fileDigest: { sha = $0; size = $1 })
                guard manifest.sessionID == plain.sessionID else { throw BundleError.damaged(reason: "\(partial) holds another session") }
                guard link(partial, final) == 0 else { throw POSIXFailure(operation: "publish \(final)", code: errno) }
                unlink(partial)
                published = true
                try AtomicFile.syncDirectory(folder.bundles)
                var sidecar = plain.sidecar ?? BundleSidecar(sessionID: plain.sessionID, createdUTC: UTCTime.now().iso8601, sha256: "", sizeBytes: 0,
                                                             fileCount: manifest.files.count, plaintextBytes: manifest.plaintextBytes, encryption: "",
                                                             toolVersion: toscaMaintVersion, libarchiveVersion: SessionBundle.libarchiveVersion, checks: [])
                sidecar.sha256 = sha
                sidecar.sizeBytes = size
                sidecar.encryption = "age X25519 to " + recipients.map(\.fingerprint).joined(separator: ", ")
                sidecar.toolVersion = toscaMaintVersion
                sidecar.checks.append(ManifestCheck(level: "encrypt", ok: true, problems: []))
                do { try sidecar.write(path: BundleSidecar.path(for: final)) } catch { unlink(final); throw error }
                converted.append(PathName.name(final))
            }
            // The bundle first, then its sidecar: never a plaintext bundle left unpublished.
            for p in [plain.path, BundleSidecar.path(for: plain.path)] where unlink(p) != 0 && errno != ENOENT {
                throw POSIXFailure(operation: "remove \(p)", code: errno)
            }
            try AtomicFile.syncDirectory(folder.bundles)
            Journal.shared.log(.notice, "replaced plaintext bundle \(plain.path) by its encrypted version (removal does not erase it from ext4 or flash media)",
                               id: .plaintextRemoved, fields: ["TOSCA_BUNDLE_PATH": plain.path])
        }
        return (converted, skipped)
    }

    /// The folder the database names for `sessionID` (to extract a lost folder back into
    /// place): inside the data folder, its layout folders real ones (created when missing).
    /// `database`: read the folder path from this file (e.g. a copy) instead of tosca.db.
    public func originalFolder(of sessionID: Int64, database: String? = nil) throws -> String {
        let path = database ?? folder.database
        let db = try Database(path: path, options: .init(readOnly: true, key: database.map { folder.key(forFileAt: $0) } ?? folder.liveKey))
        guard let rel = try db.scalar("SELECT session_folder_path FROM sessions WHERE session_id = ?", [.integer(sessionID)])?.string else {
            throw ToolFailure(.noInput, "no session \(sessionID) in \(path)", hint: "tosca-maint inspect")
        }
        guard !rel.hasPrefix("/"), !rel.split(separator: "/").contains(".."), rel.hasPrefix("sessions/") else {
            throw ToolFailure(.dataError, "session \(sessionID)'s folder path \(rel) leaves the data folder")
        }
        try LayoutFolder.make(folder.sessions)
        try LayoutFolder.make(folder.root + "/" + PathName.parent(rel))
        return folder.root + "/" + rel
    }
}
