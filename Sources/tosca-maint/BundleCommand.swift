import ArgumentParser
import Foundation
import ToscaBundle
import ToscaCore
import ToscaMaint

struct BundleCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bundle",
        abstract: "Seal every finished session folder into one verified bundle in bundles/.",
        discussion: """
            For each session whose row is completed or aborted and whose folder holds its \
            session.json, not yet bundled: the folder is read (folders and regular files only; \
            a symbolic link, device or FIFO stops that session), each stream checked against \
            the SHA-256 session.json records, and written with libarchive as \
            bundles/session_<id>_<YYYYMMDD>.tar.zst: POSIX pax, zstd, MANIFEST.json first \
            (every file's path, size and SHA-256), entries sorted, uid/gid 0, modes 0644/0755. \
            The bundle is read back from the disk and every file checked before it is \
            published (D4: partial, fsync, rename, its .manifest.json sidecar last). A session \
            that cannot be bundled is named (65); the others are bundled. Sessions in progress \
            are skipped and counted. When the recipients file exists (always on an encrypted \
            device, where a missing one is 78 and nothing is written) bundles are encrypted \
            in the age v1 format to the clinic's X25519 recipients (.tar.zst.age): anyone with \
            an identity reads one with `age -d -i KEY | bsdtar -x`. The device keeps no \
            identity: the bundle is read back with the file key still in memory.

            Examples:
              tosca-maint bundle
              tosca-maint bundle --session 42 --dry-run
              tosca-maint bundle verify --all
              tosca-maint bundle extract --session 42 --to /tmp/session-42

            Exit codes: 0 done, 65 a session could not be bundled (named), 66 no data folder \
            or database, 73 a layout folder is a symbolic link or bundles/ is not writable, \
            74 I/O error, 75 another maintenance run is going, 78 no recipients on an encrypted \
            device (or a recipients file that cannot be read, or that exists and holds none).
            """,
        subcommands: [Run.self, Verify.self, List.self, Extract.self],
        defaultSubcommand: Run.self)

    struct Run: ParsableCommand {
        static let configuration = CommandConfiguration(commandName: "run", abstract: "Bundle the finished sessions (the default).")
        @OptionGroup var shared: SharedOptions
        @Option(help: "Only this session.") var session: Int64?
        @Flag(help: "Say which sessions would be bundled; write nothing.") var dryRun = false
        @Option(help: "zstd level (1-19).") var level = 3
        @Option(help: "The age recipients bundles are encrypted to (default: $TOSCA_BUNDLE_RECIPIENTS, else /etc/tosca-maint/bundle-recipients).")
        var recipients: String?

        func validate() throws {
            guard (1...19).contains(level) else { throw ValidationError("--level must be 1 to 19") }
        }

        func run() throws {
            try runReporting {
                let (folder, lock) = try shared.beginMaintenance()
                defer { lock.unlock() }
                var job = BundleJob(folder: folder)
                job.level = level
                job.showProgress = !shared.json
                let o = try job.run(sessionID: session, dryRun: dryRun, recipients: bundleRecipientsFile(recipients))
                for id in o.wouldBundle { print("would bundle session \(id)") }
                for b in o.bundled { print("bundled session \(b.session): \(b.path)") }
                for f in o.failed { print("NOT bundled session \(f.session): \(f.reason)") }
                print("\(o.bundled.count) bundled, \(o.alreadyBundled) already bundled, \(o.inProgress) in progress (skipped), \(o.failed.count) failed")
                if !o.failed.isEmpty {
                    throw ToolFailure(.dataError, "\(o.failed.count) session(s) could not be bundled: \(o.failed.map { String($0.session) }.joined(separator: ", "))",
                                      hint: "see each reason above; a stream that changed after its session ended is possible tampering")
                }
                return 0
            }
        }
    }

    struct Verify: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Check published bundles: size and SHA-256 against the sidecar, every file against MANIFEST.json.",
            discussion: "Exit codes: 0 every bundle holds, 65 a bundle failed (named), 66 no such bundle or none at all.")
        @OptionGroup var shared: SharedOptions
        @Flag(help: "Every published bundle (the default).") var all = false
        @Option(help: "An age identity file: encrypted bundles are then decrypted and every file checked (without it, their SHA-256 only).") var identity: String?
        @Argument(help: "Bundles to check.") var paths: [String] = []

        func run() throws {
            try runReporting {
                let (folder, lock) = try shared.beginMaintenance()
                defer { lock.unlock() }
                let job = BundleJob(folder: folder)
                let identities = try identity.map { try readIdentities($0) } ?? []
                let published = try job.published()
                let chosen = paths.isEmpty ? published : try paths.map { p in
                    guard let b = published.first(where: { realPath($0.path) == realPath(p) }) else {
                        throw ToolFailure(.noInput, "\(p) is not a published bundle in \(folder.bundles)", hint: "tosca-maint bundle list")
                    }
                    return b
                }
                guard !chosen.isEmpty else { throw ToolFailure(.noInput, "no bundles in \(folder.bundles)", hint: "tosca-maint bundle") }
                var failed: [String] = []
                for b in chosen {
                    let problems = try job.verify(b, identities: identities)
                    print(problems.isEmpty ? "ok      \(PathName.name(b.path))" : "FAILED  \(PathName.name(b.path))")
                    for p in problems { print("        \(p)") }
                    if !problems.isEmpty { failed.append(PathName.name(b.path)) }
                }
                if !failed.isEmpty { throw ToolFailure(.dataError, "bundle verification failed for \(failed.joined(separator: ", "))") }
                return 0
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "The published bundles: session, size, files, last check.")
        @OptionGroup var shared: SharedOptions

        struct Row: Codable { let bundle: String; let session: Int64; let sizeBytes: Int64?; let files: Int?; let lastCheck: String?
            enum CodingKeys: String, CodingKey { case bundle, session, files; case sizeBytes = "size_bytes"; case lastCheck = "last_check" } }

        func run() throws {
            try runReporting {
                let published = try BundleJob(folder: try DataFolder.existing(shared.dataDir)).published()
                let rows = published.map { b in
                    Row(bundle: PathName.name(b.path), session: b.sessionID, sizeBytes: b.sidecar?.sizeBytes, files: b.sidecar?.fileCount,
                        lastCheck: b.sidecar?.checks.last.map { "\($0.result) (\($0.level) \($0.timeUTC))" } ?? b.sidecarError)
                }
                if shared.json { try printJSON(rows); return 0 }
                if rows.isEmpty { print("no bundles") }
                for r in rows {
                    print("\(r.bundle)  session \(r.session)  \(r.sizeBytes.map { String(format: "%.1f MiB", Double($0) / 1_048_576) } ?? "?")  \(r.files.map { "\($0) files" } ?? "?")  \(r.lastCheck ?? "")")
                }
                return 0
            }
        }
    }

    struct Extract: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Extract a bundle into a new folder, every file checked.",
            discussion: """
                Only folders and regular files listed in MANIFEST.json, no absolute path, no .., \
                no link or device node, no duplicate; every file's SHA-256 checked while it is \
                written. The files go into a staging folder beside --to, renamed to it only when \
                all of it checked: a damaged or hostile bundle (65) leaves neither behind; a \
                folder MANIFEST.json lists must be in the bundle too. Files and folders get the \
                bundle's modification times; modes are 0600/0700 (a session folder is patient \
                data). --session checks the bundle against its sidecar first.

                Exit codes: 0 extracted, 65 damaged or hostile, 66 no such bundle, 73 --to exists.
                """)
        @OptionGroup var shared: SharedOptions
        @Option(help: "The session whose published bundle to extract.") var session: Int64?
        @Option(help: "A bundle file fetched by hand (e.g. from an export).") var file: String?
        @Option(help: "The folder to create.") var to: String?
        @Flag(help: "With --session: back into the session's own folder (the one the database names), which must not exist.") var toOriginal = false
        @Option(help: "An age identity file, for an encrypted bundle.") var identity: String?

        func validate() throws {
            if (session == nil) == (file == nil) { throw ValidationError("give --session ID or --file PATH") }
            if (to == nil) == !toOriginal { throw ValidationError("give --to DIR or --to-original") }
            if toOriginal && session == nil { throw ValidationError("--to-original goes with --session") }
        }

        func run() throws {
            try runReporting {
                var path = file ?? ""
                var to = self.to ?? ""
                if let session {
                    let job = BundleJob(folder: toOriginal ? try shared.folder() : try DataFolder.existing(shared.dataDir))
                    if toOriginal { to = try job.originalFolder(of: session) }
                    guard let b = try job.published().first(where: { $0.sessionID == session }) else {
                        throw ToolFailure(.noInput, "no published bundle of session \(session)", hint: "tosca-maint bundle list")
                    }
                    guard let sidecar = b.sidecar, let (sha, _) = try? FileDigest.sha256(path: b.path), sha == sidecar.sha256 else {
                        throw ToolFailure(.dataError, "\(b.path) does not match its sidecar (SHA-256): not extracted", hint: "tosca-maint bundle verify --all")
                    }
                    path = b.path
                }
                guard FileManager.default.fileExists(atPath: path) else { throw ToolFailure(.noInput, "no bundle at \(path)") }
                do {
                    let m = try SessionBundle.extract(path: path, to: to, identities: try identity.map { try readIdentities($0) } ?? [])
                    print("extracted session \(m.sessionID): \(m.files.count) files, \(m.plaintextBytes) bytes, every SHA-256 checked, into \(to)")
                } catch let e as BundleError {
                    switch e {
                    case .damaged: throw ToolFailure(.dataError, "\(e); nothing was extracted")
                    case .source(let p, let r) where p == to: throw ToolFailure(.cantCreate, "\(p) \(r)", hint: "name a new folder")
                    case .needsIdentity: throw ToolFailure(.noPermission, "\(e); nothing was extracted", hint: "--identity FILE")
                    default: throw ToolFailure(.ioError, "\(e); nothing was extracted")
                    }
                }
                return 0
            }
        }
    }
}

/// The bundles' recipients file: `--recipients`, else `$TOSCA_BUNDLE_RECIPIENTS` (when not
/// empty), else /etc/tosca-maint/bundle-recipients (`bundle` and `protect`).
func bundleRecipientsFile(_ option: String?) -> String {
    option ?? ProcessInfo.processInfo.environment["TOSCA_BUNDLE_RECIPIENTS"].flatMap { $0.isEmpty ? nil : $0 } ?? BundleJob.defaultRecipients
}

/// The identities in an age identity file (77 when it cannot be read or holds none).
func readIdentities(_ path: String) throws -> [Age.Identity] {
    do { return try Age.identities(file: path) } catch {
        throw ToolFailure(.noPermission, "\(path): \(error)", hint: "an age identity file (AGE-SECRET-KEY-1... lines), as age-keygen writes it")
    }
}
