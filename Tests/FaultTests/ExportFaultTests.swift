import Foundation
import Testing
import TestSupport
import ToscaCore
import ToscaMaint

/// `export` killed with SIGKILL at random moments: nothing is recorded as exported unless
/// the export finished, restic dies with it, and a re-run completes with a sound repository.
@Suite struct ExportFaultTests {
    @Test func sigkillDuringExportRecordsNothingAndTheNextRunCompletes() throws {
        let s = try ExportSetup.make()
        defer { s.cleanup() }
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        // How long one export takes here, so the kills land inside one.
        let t0 = Date()
        #expect(try maint(["export", "--data-dir", s.data] + s.repoArgs).status == 0)
        let duration = max(Date().timeIntervalSince(t0), 0.2)
        func records() -> [String] { listing(s.data + "/exports").filter { $0.hasSuffix(".manifest.json") } }
        for trial in 0..<6 {
            let before = records().count
            let p = try Spawned(executable("tosca-maint"), ["export", "--data-dir", s.data] + s.repoArgs)
            Thread.sleep(forTimeInterval: Double.random(in: 0.02...(duration * 0.9)))
            let children = Self.children(of: p.pid)
            p.signal(SIGKILL)
            let r = p.wait()
            // restic dies with it (pdeathsig) and is reaped by init: until then its lock
            // looks held (a zombie answers kill(pid, 0)), as restic sees it; the service
            // manager reaps at once on a device.
            for child in children {
                #expect(waitUntil(timeout: 30) { !FileManager.default.fileExists(atPath: "/proc/\(child)") }, "trial \(trial): restic \(child) outlived its export")
            }
            let after = records().count
            if r.status == 137 {
                // Killed: at most the one record of an export that had already finished.
                #expect(after - before <= 1, "trial \(trial)")
            } else {
                #expect(r.status == 0 && after == before + 1, "trial \(trial): \(r.output)")
            }
        }
        // A re-run completes (a stale lock is removed), and restic finds the repository sound.
        let again = try maint(["export", "--data-dir", s.data] + s.repoArgs)
        #expect(again.status == 0, "\(again.output)")
        let check = try s.restic(["check", "--read-data"])
        #expect(check.status == 0, "\(check.output)")
        // Every recorded export names a snapshot restic has.
        let snaps = try s.restic(["snapshots", "--json"]).stdout
        for name in records() {
            let text = try String(contentsOfFile: s.data + "/exports/" + name, encoding: .utf8)
            let id = try #require(text.range(of: "\"snapshot_id\" : \"").map { String(text[$0.upperBound...].prefix(64)) })
            #expect(snaps.contains(id), "\(name) names \(id), which restic does not list")
        }
    }

    /// `import --extract-sessions` killed at random moments: no tosca.db until the import
    /// is complete, and a re-run into the same folder finishes it.
    @Test func sigkillDuringImportLeavesNoDatabaseAndTheRerunFinishes() throws {
        let s = try ExportSetup.make()
        defer { s.cleanup() }
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        #expect(try maint(["export", "--data-dir", s.data] + s.repoArgs).status == 0)
        let t0 = Date()
        let probe = s.dir.sub("probe")
        #expect(try maint(["import", "--extract-sessions", "--data-dir", probe] + s.repoArgs).status == 0)
        let duration = max(Date().timeIntervalSince(t0), 0.2)
        for trial in 0..<4 {
            let new = s.dir.sub("new-\(trial)")
            let p = try Spawned(executable("tosca-maint"), ["import", "--extract-sessions", "--data-dir", new] + s.repoArgs)
            Thread.sleep(forTimeInterval: Double.random(in: 0.02...(duration * 0.9)))
            let children = Self.children(of: p.pid)
            p.signal(SIGKILL)
            let r = p.wait()
            for child in children { _ = waitUntil(timeout: 30) { !FileManager.default.fileExists(atPath: "/proc/\(child)") } }
            if r.status == 137 {
                // Killed before the restore finished: no database, and the re-run finishes;
                // killed after it: a whole database, with every session folder already back
                // (they come first).
                if FileManager.default.fileExists(atPath: new + "/tosca.db") {
                    #expect(try sqlite3Value(new + "/tosca.db", "PRAGMA integrity_check") == "ok", "trial \(trial)")
                } else {
                    let again = try maint(["import", "--extract-sessions", "--data-dir", new] + s.repoArgs)
                    #expect(again.status == 0, "trial \(trial): \(again.output)")
                }
            } else {
                #expect(r.status == 0, "trial \(trial): \(r.output)")
            }
            // Every session file back, whichever run finished it.
            for rel in filesUnder(s.data + "/sessions") {
                #expect(fileSHA256(new + "/sessions/" + rel) == fileSHA256(s.data + "/sessions/" + rel), "trial \(trial): \(rel)")
            }
        }
    }

    /// Bad input to export, import and verify --repo: exit codes, nothing changed, never a
    /// signal.
    @Test func badInputGivesExitCodesAndChangesNothing() throws {
        let s = try ExportSetup.make()
        defer { s.cleanup() }
        #expect(try maint(["export", "init", "--data-dir", s.data] + s.repoArgs).status == 0)
        let fifo = s.dir.sub("fifo")
        mkfifo(fifo, 0o600)
        let empty = s.dir.sub("empty-pass"), two = s.dir.sub("two-lines")
        FileManager.default.createFile(atPath: empty, contents: Data())
        FileManager.default.createFile(atPath: two, contents: Data("one\ntwo\n".utf8))
        chmod(empty, 0o600); chmod(two, 0o600)
        symlink(s.password, s.dir.sub("pass-link"))
        func repo(_ pass: String) -> [String] { ["--repo", s.repo, "--password-file", pass, "--cache-dir", s.cache] + (s.sameDevice ? ["--allow-same-device"] : []) }
        let before = listing(s.data + "/exports") + listing(s.data + "/backups") + listing(s.data + "/bundles")
        let cases: [([String], Int32)] = [
            (["export", "--subsets", "0"] + s.repoArgs, 64),
            (["export", "--forget", "--keep-within", "soon"] + s.repoArgs, 64),
            (["export", "--forget", "--release-sessions-older-than", "3"] + s.repoArgs, 64),
            (["export", "--release-sessions-older-than", "-1"] + s.repoArgs, 64),
            (["export", "--password-file", s.password], 64),                 // no repository
            (["verify", "--repo", s.repo, "--password-file", s.password], 64), // --repo without --live
            (["export"] + repo(fifo), 77),
            (["export"] + repo(empty), 77),
            (["export"] + repo(two), 77),
            (["export"] + repo(s.dir.sub("pass-link")), 77),
            (["export"] + repo(s.dir.sub("no-such-file")), 77),
            (["import", "--snapshot", "ffffffff"] + s.repoArgs, 66),
            (["import"] + s.repoArgs, 73),                                    // into a folder with a database
            (["export", "check"] + repo(s.dir.sub("no-such-file")), 77),
        ]
        for (args, code) in cases {
            let dataArgs = args.first == "import" && args.contains("--snapshot") ? ["--data-dir", s.dir.sub("import-new")] : ["--data-dir", s.data]
            let r = try maint(args + dataArgs)
            #expect(r.status == code, "\(args): \(r.status) \(r.output)")
            #expect(!r.stderr.contains("Fatal error") && r.status < 128, "\(args)")
        }
        #expect(listing(s.data + "/exports") + listing(s.data + "/backups") + listing(s.data + "/bundles") == before)
        #expect(!FileManager.default.fileExists(atPath: s.dir.sub("import-new/tosca.db")))
        #expect(try s.restic(["snapshots", "--json"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[]")
    }

    /// The processes whose parent is `pid` (from /proc/<pid>/stat).
    /// The drive unplugged mid-export: the repository's filesystem (a loop-mounted ext4
    /// image) lazily unmounted at a random moment of an export, as when a USB drive goes.
    /// Nothing is recorded unless the export had finished, the failure says the drive went
    /// away (restic stopped at once); with the drive back, a re-run completes and
    /// `restic check --read-data` finds the repository sound.
    @Test(.enabled(if: LoopDrive.available, "needs root and loop devices (mount -o loop)"))
    func theDriveUnmountedMidExportRecordsNothingAndTheNextRunCompletes() throws {
        let s = try ExportSetup.make()
        defer { s.cleanup() }
        let drive = try LoopDrive(image: s.dir.sub("drive.img"), mountPoint: s.dir.sub("drive"))
        defer { drive.detach() }
        let repo = drive.mountPoint + "/repo"
        let args = ["--repo", repo, "--password-file", s.password, "--cache-dir", s.cache]
        #expect(try maint(["export", "init", "--data-dir", s.data] + args).status == 0)
        let t0 = Date()
        #expect(try maint(["export", "--data-dir", s.data] + args).status == 0)
        let duration = max(Date().timeIntervalSince(t0), 0.2)
        func records() -> [String] { listing(s.data + "/exports").filter { $0.hasSuffix(".manifest.json") } }
        for trial in 0..<5 {
            let before = records().count
            let p = try Spawned(executable("tosca-maint"), ["export", "--data-dir", s.data] + args)
            Thread.sleep(forTimeInterval: Double.random(in: 0.02...(duration * 0.9)))
            try drive.unplug()
            let r = p.wait()
            let after = records().count
            if r.status == 0 {
                #expect(after == before + 1, "trial \(trial)")
            } else {
                #expect(after == before, "trial \(trial): recorded although it failed: \(r.output)")
                // Said as such, at once: restic is stopped, not left to retry for a minute.
                #expect(r.status == 74 && r.stderr.contains("went away") || r.status == 66 && r.stderr.contains("mounted"), "trial \(trial): \(r.output)")
            }
            // What restic may have written beneath the mount point once the drive was gone
            // goes before the drive comes back (it would be hidden under it).
            try? FileManager.default.removeItem(atPath: repo)
            try drive.plug()
        }
        let again = try maint(["export", "--data-dir", s.data] + args)
        #expect(again.status == 0, "\(again.output)")
        let resticExe = try #require(which("restic"))
        func restic(_ a: [String]) throws -> ProcessResult { try run(resticExe, ["-r", repo, "--password-file", s.password, "--cache-dir", s.cache] + a) }
        let check = try restic(["check", "--read-data"])
        #expect(check.status == 0, "\(check.output)")
        // Every recorded export names a snapshot restic has.
        let snaps = try restic(["snapshots", "--json"]).stdout
        for name in records() {
            let record = try JSONDecoder().decode(ExportManifest.self, from: Data(contentsOf: URL(fileURLWithPath: s.data + "/exports/" + name)))
            #expect(snaps.contains(record.snapshotID ?? "-"), "\(name) names a snapshot restic does not list")
        }
    }

    /// A drive that is almost full or mounted read-only: 74, nothing recorded, restic not
    /// even started; with room again, the export runs.
    @Test(.enabled(if: LoopDrive.available, "needs root and loop devices (mount -o loop)"))
    func aFullOrReadOnlyDriveIsRefusedAndNothingIsRecorded() throws {
        let s = try ExportSetup.make()
        defer { s.cleanup() }
        let drive = try LoopDrive(image: s.dir.sub("drive.img"), mountPoint: s.dir.sub("drive"), sizeMiB: 128)
        defer { drive.detach() }
        let args = ["--repo", drive.mountPoint + "/repo", "--password-file", s.password, "--cache-dir", s.cache]
        #expect(try maint(["export", "init", "--data-dir", s.data] + args).status == 0)
        func records() -> Int { listing(s.data + "/exports").filter { $0.hasSuffix(".manifest.json") }.count }
        // Filled to within 32 MiB: less than an export's margin.
        var vfs = statvfs()
        statvfs(drive.mountPoint, &vfs)
        let fill = Int64(vfs.f_bavail) * Int64(vfs.f_frsize) - (32 << 20)
        let filler = drive.mountPoint + "/filler"
        #expect(try run("/usr/bin/fallocate", ["-l", String(fill), filler]).status == 0)
        let full = try maint(["export", "--data-dir", s.data] + args)
        #expect(full.status == 74 && full.stderr.contains("MiB free"), "\(full.output)")
        #expect(records() == 0)
        try FileManager.default.removeItem(atPath: filler)
        #expect(try maint(["export", "--data-dir", s.data] + args).status == 0)
        #expect(records() == 1)
        // Read-only (as a drive with errors is remounted).
        #expect(try run("/usr/bin/mount", ["-o", "remount,ro", drive.mountPoint]).status == 0)
        let ro = try maint(["export", "--data-dir", s.data] + args)
        #expect(ro.status == 74 && ro.stderr.contains("read-only"), "\(ro.output)")
        #expect(records() == 1)
        #expect(try run("/usr/bin/mount", ["-o", "remount,rw", drive.mountPoint]).status == 0)
    }

    static func children(of pid: Int32) -> [Int32] {
        listing("/proc").compactMap { Int32($0) }.filter { p in
            guard let stat = try? String(contentsOfFile: "/proc/\(p)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == pid
        }
    }
}
