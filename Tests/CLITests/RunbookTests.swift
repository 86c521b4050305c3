import Foundation
import Testing
import TestSupport
import ToscaCore
import ToscaMaint

/// Every fenced `sh` block of every runbook runs, in order, against a scratch data folder
/// made by tosca-sim and put in the state the runbook is for (a damaged database, a
/// tampered safety log, an empty machine with a copy of backups/, ...). A block that
/// fails fails the test, so the runbooks cannot rot.
///
/// The scratch machine has no service manager and its /etc is not ours, so two programs
/// are stand-ins on PATH, and both check what they are asked:
/// - `systemctl` accepts only known verbs and the units of Timers/ or `tosca.service`; its
///   `stop tosca.service` stops the simulated recorder the test started (so a runbook that
///   forgets to stop it meets exit 75 from restore, encrypt or migrate);
/// - `systemd-creds encrypt` accepts only `--name=tosca-db-key`, an existing key file of
///   mode 0400 or 0600, and the credential path the units load.
/// Everything else (tosca-maint, tosca-sim, journalctl, sha256sum, df, ...) is real.
@Suite struct RunbookTests {
    struct Block: CustomStringConvertible {
        let runbook: String, line: Int, code: String
        var description: String { "\(runbook):\(line)" }
    }

    /// The fenced `sh` blocks of one runbook, in order (fences may be indented in lists).
    static func blocks(_ name: String) throws -> [Block] {
        let lines = try String(contentsOfFile: packageRoot() + "/Runbooks/" + name, encoding: .utf8)
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        var out: [Block] = []
        var i = 0
        while i < lines.count {
            let open = lines[i].trimmingCharacters(in: .whitespaces)
            if open == "```sh" {
                let indent = lines[i].prefix { $0 == " " }.count
                var code: [String] = []
                var j = i + 1
                while j < lines.count && lines[j].trimmingCharacters(in: .whitespaces) != "```" {
                    code.append(String(lines[j].dropFirst(min(indent, lines[j].prefix { $0 == " " }.count))))
                    j += 1
                }
                out.append(Block(runbook: name, line: i + 1, code: code.joined(separator: "\n")))
                i = j
            }
            i += 1
        }
        return out
    }

    static let runbooks = ["restore-after-disk-fault.md", "restore-drill.md", "pre-upgrade-migration.md",
                           "encryption-cutover.md", "failed-nightly-backup.md", "moving-to-a-new-machine.md", "moving-from-a-copy-of-backups.md",
                           "tampering-reported.md", "recovering-a-session-folder.md", "device-lost-or-disk-dead.md",
                           "after-session-protection.md"]

    @Test func theRunbooksAreTheOnesTheDeviceNeeds() throws {
        #expect(Set(listing(packageRoot() + "/Runbooks").filter { $0.hasSuffix(".md") }) == Set(Self.runbooks))
        for r in Self.runbooks { #expect(try Self.blocks(r).count >= 2, "\(r) has too few commands") }
    }

    /// A scratch machine: data folder, stand-ins, the recorder when the scenario has one.
    final class Machine {
        let dir = TempDir("runbook")
        var data: String { dir.sub("data") }
        var key: String { dir.sub("key") }
        var stubs: String { dir.sub("stubs") }
        var log: String { dir.sub("stub.log") }
        var pidFile: String { dir.sub("tosca.pid") }
        /// The off-device repository and its password file, for the runbooks that use one.
        var repo: String { dir.sub("repo") }
        var pass: String { dir.sub("export-pass") }
        /// The old device's data folder, for the runbook that moves from it.
        var old: String { dir.sub("old-machine") }
        var recorder: Spawned?
        var transcript = ""

        init() throws {
            try FileManager.default.createDirectory(atPath: stubs, withIntermediateDirectories: true)
            let units = (listing(packageRoot() + "/Timers").filter { $0.hasSuffix(".service") || $0.hasSuffix(".timer") || $0.hasSuffix(".path") } + ["tosca.service"])
                .map { $0.replacingOccurrences(of: "@.service", with: "@") }.joined(separator: " ")
            try write(stubs + "/systemctl", """
                #!/bin/bash
                # Stand-in for systemctl (no service manager here): checks, records, stops the recorder.
                echo "systemctl $*" >> '\(log)'
                verb=""; units=()
                for a in "$@"; do case $a in -*) ;; *) if [[ -z $verb ]]; then verb=$a; else units+=("$a"); fi ;; esac; done
                case $verb in start|stop|restart|status|enable|disable|is-active|is-failed|list-timers|daemon-reload) ;; *) echo "systemctl stand-in: unknown verb '$verb'" >&2; exit 1 ;; esac
                for u in "${units[@]}"; do
                  ok=0
                  for k in \(units); do [[ $u == "$k" || ( $k == *@ && $u == "$k"*.service ) ]] && ok=1; done
                  [[ $ok == 1 ]] || { echo "systemctl stand-in: unknown unit '$u'" >&2; exit 1; }
                  if [[ $verb == stop && $u == tosca.service && -f '\(pidFile)' ]]; then
                    pid=$(cat '\(pidFile)'); kill -TERM "$pid" 2>/dev/null
                    for _ in $(seq 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
                    rm -f '\(pidFile)'
                  fi
                done
                # Like the real one: status exits 3 when a unit is not active (a oneshot
                # service after its run, a failed one), so a runbook must not stop on it.
                [[ $verb == status ]] && exit 3
                exit 0
                """)
            try write(stubs + "/systemd-creds", """
                #!/bin/bash
                # Stand-in for systemd-creds encrypt (the real one writes under /etc): checks, records.
                echo "systemd-creds $*" >> '\(log)'
                [[ $1 == encrypt && $2 == --name=tosca-db-key && $# == 4 ]] || { echo "systemd-creds stand-in: usage: encrypt --name=tosca-db-key KEYFILE CRED" >&2; exit 1; }
                [[ -f $3 && -r $3 ]] || { echo "systemd-creds stand-in: no key file $3" >&2; exit 1; }
                mode=$(stat -c %a "$3"); [[ $mode == 400 || $mode == 600 ]] || { echo "systemd-creds stand-in: key file mode $mode" >&2; exit 1; }
                [[ $(tr -d '\\n' < "$3" | wc -c) == 64 ]] || { echo "systemd-creds stand-in: not a 64-hex key" >&2; exit 1; }
                [[ $4 == /etc/credstore.encrypted/tosca-db-key.cred ]] || { echo "systemd-creds stand-in: the units load /etc/credstore.encrypted/tosca-db-key.cred, not $4" >&2; exit 1; }
                exit 0
                """)
        }

        func write(_ path: String, _ text: String) throws {
            try (text + "\n").write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o755)
        }

        /// The device service: tosca-sim recording until stopped, holding tosca.lock.
        func startRecorder(keyFile: String? = nil) throws {
            var args = ["--data-dir", data, "--until-signal", "--sample-rate", "100", "--event-rate", "20", "--seed", "9"]
            if let keyFile { args += ["--key-file", keyFile] }
            let p = try Spawned(executable("tosca-sim"), args)
            recorder = p
            try "\(p.pid)".write(toFile: pidFile, atomically: true, encoding: .utf8)
            // Running once tosca.lock is held, read from /proc/locks: asking with flock(1)
            // takes the lock for an instant, and a recorder starting then gives up (75).
            let held = waitUntil(timeout: 20) { FileLock.isHeld(path: data + "/tosca.lock", byOthers: true) }
            guard held else { throw OracleError(message: "the recorder did not start: \(p.currentStderr)") }
        }

        /// Runs the blocks in order and stops at the first failure; returns the failures
        /// (none or one) and records the output of every block in `transcript`.
        func runBlocks(_ runbook: String) throws -> [String] {
            var failures: [String] = []
            let blocks = try RunbookTests.blocks(runbook)
            var ran = 0
            let path = "\(stubs):\(binDirectory()):\(ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin")"
            for block in try RunbookTests.blocks(runbook) {
                let r = try run("/bin/bash", ["--noprofile", "--norc", "-e", "-u", "-o", "pipefail", "-c", "cd \"$0\" && " + block.code, dir.path],
                                environment: ["PATH": path, "DATA": data, "KEY": key, "REPO": repo, "PASS": pass, "OLD": old, "SYSTEMD_PAGER": "", "PAGER": "cat"])
                transcript += "$ \(block)\n\(r.output)"
                if r.status != 0 {
                    failures.append("\(block) exited \(r.status):\n\(block.code)\n--- output ---\n\(r.output)")
                    break
                }
                ran += 1
            }
            if failures.isEmpty && ran != blocks.count { failures.append("ran \(ran) of \(blocks.count) blocks") }
            return failures
        }

        var calls: [String] { ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }

        deinit {
            if let recorder, recorder.process.isRunning { recorder.signal(SIGKILL); _ = recorder.wait() }
        }
    }

    /// A device: simulated sessions, one verified backup, and the recorder running.
    static func recordingDevice(sessions: Int = 2) throws -> Machine {
        let m = try Machine()
        try simulatedData(m.data, sessions: sessions)
        try backup(m.data)
        try m.startRecorder()
        return m
    }

    /// Runs a runbook's blocks and records a test issue naming the block that failed.
    static func expectPasses(_ m: Machine, _ runbook: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let failures = try m.runBlocks(runbook)
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))", sourceLocation: sourceLocation)
    }

    static func backup(_ data: String, key: String? = nil) throws {
        let r = try maint(["backup", "--data-dir", data] + (key.map { ["--key-file", $0] } ?? []))
        guard r.status == 0 else { throw OracleError(message: "backup: \(r.output)") }
    }

    @Test func restoreAfterDiskFault() throws {
        let m = try Machine()
        try simulatedData(m.data, sessions: 3)
        try Self.backup(m.data)
        try simulatedData(m.data, sessions: 1)
        try sqlite3Value(m.data + "/tosca.db", "PRAGMA wal_checkpoint(TRUNCATE);")
        // The fault: three pages of the file overwritten.
        let fd = open(m.data + "/tosca.db", O_WRONLY)
        let junk = [UInt8](repeating: 0x55, count: 3 * 4096)
        _ = junk.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 4 * 4096) }
        close(fd)
        let damaged = try sqlite3(m.data + "/tosca.db", "PRAGMA quick_check;")
        #expect(damaged.status != 0 || damaged.stdout.trimmingCharacters(in: .whitespacesAndNewlines) != "ok")
        try Self.expectPasses(m, "restore-after-disk-fault.md")
        #expect(try sqlite3Value(m.data + "/tosca.db", "PRAGMA integrity_check;") == "ok")
        #expect(listing(m.data + "/backups").contains { $0.hasSuffix("_pre-restore.db") }, "the damaged database was not kept")
        #expect(m.calls.first == "systemctl stop tosca.service")
    }

    @Test func restoreDrill() throws {
        let m = try Self.recordingDevice()
        // The drill's bad night: a second backup, then damaged on its medium.
        try Self.backup(m.data)
        let copies = listing(m.data + "/backups").filter { $0.hasSuffix(".db") }
        try #require(copies.count == 2)
        let (older, damaged) = (copies[0], copies[1])
        try flipByte(m.data + "/backups/" + damaged, at: 5000)
        try Self.expectPasses(m, "restore-drill.md")
        // The drills ran while the recorder kept recording.
        #expect(m.recorder?.process.isRunning == true)
        func drills(_ copy: String, in folder: String = "backups") throws -> [String] {
            let text = try String(contentsOfFile: m.data + "/\(folder)/" + copy + ".manifest.json", encoding: .utf8)
            let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            return (json["checks"] as? [[String: Any]] ?? []).filter { $0["level"] as? String == "drill" }.compactMap { $0["result"] as? String }
        }
        // The damaged copy was drilled once, failed, and was set aside with its manifest.
        #expect(try drills(damaged, in: "backups/quarantine") == ["failed"])
        #expect(!listing(m.data + "/backups").contains(damaged))
        #expect(try drills(older) == ["ok"], "the runbook's drill after verify --all took the newest copy that holds")
        let fresh = try #require(listing(m.data + "/backups").filter { $0.hasSuffix(".db") && !copies.contains($0) }.first)
        #expect(try drills(fresh) == ["ok"])
        #expect(try maint(["status", "--data-dir", m.data]).status == 0)
    }

    @Test func preUpgradeMigration() throws {
        let m = try Machine()
        try FileManager.default.createDirectory(atPath: m.data, withIntermediateDirectories: true)
        try makeLegacyDatabase(at: m.data + "/tosca.db")
        let before = try legacyTableRows(m.data + "/tosca.db")
        try Self.expectPasses(m, "pre-upgrade-migration.md")
        // The runbook ends by undoing the migration: the v0.9.12 database is back, every row.
        #expect(try sqlite3Value(m.data + "/tosca.db", "PRAGMA user_version;") == "0")
        #expect(try legacyTableRows(m.data + "/tosca.db") == before)
        #expect(listing(m.data + "/backups").contains { $0.hasSuffix("_pre-migration.db") })
    }

    @Test func encryptionCutoverAndKeyRotation() throws {
        let m = try Self.recordingDevice()
        try Self.expectPasses(m, "encryption-cutover.md")
        // The stock sqlite3 CLI reads nothing; sqlcipher with the rotated key reads the rows.
        #expect(try sqlite3(m.data + "/tosca.db", "SELECT count(*) FROM sqlite_master;").status != 0)
        let newKey = try String(contentsOfFile: m.key + ".new", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let r = try sqlcipher(m.data + "/tosca.db", keyHex: newKey, "SELECT count(*) FROM sessions;")
        #expect(r.status == 0 && (Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last ?? "") ?? 0) > 0, "\(r.output)")
        let sealed = m.calls.filter { $0.hasPrefix("systemd-creds encrypt") }
        #expect(sealed == ["systemd-creds encrypt --name=tosca-db-key \(m.key) /etc/credstore.encrypted/tosca-db-key.cred",
                           "systemd-creds encrypt --name=tosca-db-key \(m.key).new /etc/credstore.encrypted/tosca-db-key.cred"], "\(m.calls)")
    }

    @Test func failedNightlyBackup() throws {
        let m = try Machine()
        try simulatedData(m.data)
        try m.startRecorder()
        #expect(try maint(["status", "--data-dir", m.data]).status == 1)
        try Self.expectPasses(m, "failed-nightly-backup.md")
        // The backup was taken by hand while the recorder ran, and it verifies.
        #expect(m.recorder?.process.isRunning == true)
        let v = try maint(["verify", "--latest", "--data-dir", m.data])
        #expect(v.status == 0, "\(v.output)")
    }

    @Test func movingFromACopyOfBackups() throws {
        let m = try Machine()
        let old = m.old
        try simulatedData(old, sessions: 3)
        try Self.backup(old)
        let oldRows = try sqlite3Value(old + "/tosca.db", "SELECT count(*) FROM treatment_events;")
        // The new machine: only a copy of backups/ (manifests included).
        try FileManager.default.createDirectory(atPath: m.data, withIntermediateDirectories: true)
        let cp = try run("/bin/cp", ["-a", old + "/backups", m.data + "/backups"])
        try #require(cp.status == 0)
        try? FileManager.default.removeItem(atPath: m.data + "/backups/.maint.lock")
        try Self.expectPasses(m, "moving-from-a-copy-of-backups.md")
        #expect(try sqlite3Value(m.data + "/tosca.db", "PRAGMA integrity_check;") == "ok")
        #expect(try sqlite3Value(m.data + "/tosca.db", "SELECT count(*) FROM treatment_events;") == oldRows)
        #expect(m.calls.contains("systemctl enable --now tosca-maint-backup.timer tosca-maint-verify.timer"))
    }

    /// The old device still runs: a last export from it, an import on the new machine.
    @Test func movingToANewMachine() throws {
        let m = try Machine()
        try simulatedData(m.old, sessions: 3)
        try Self.backup(m.old)
        try "the clinic's export password\n".write(toFile: m.pass, atomically: true, encoding: .utf8)
        chmod(m.pass, 0o600)
        #expect(try maint(["export", "init", "--data-dir", m.old, "--repo", m.repo, "--password-file", m.pass, "--allow-same-device"]).status == 0)
        // A session recorded after the last nightly run: only the runbook's last export has it.
        try simulatedData(m.old, sessions: 1)
        // The test's repository shares the old device's filesystem (a drive on a device).
        try FileManager.default.createDirectory(atPath: m.data, withIntermediateDirectories: true)
        let wrapper = m.stubs + "/tosca-maint"
        try m.write(wrapper, """
            #!/bin/bash
            # The test's repository is on the data folder's filesystem: allowed for the test only.
            for a in "$@"; do [[ $a == --repo ]] && exec '\(binDirectory())/tosca-maint' "$@" --allow-same-device; done
            exec '\(binDirectory())/tosca-maint' "$@"
            """)
        try Self.expectPasses(m, "moving-to-a-new-machine.md")
        let q = "SELECT count(*) FROM treatment_events;"
        #expect(try sqlite3Value(m.data + "/tosca.db", "PRAGMA integrity_check;") == "ok")
        #expect(try sqlite3Value(m.data + "/tosca.db", q) == (try sqlite3Value(m.old + "/tosca.db", q)))
        let sessionFiles = filesUnder(m.old + "/sessions")
        #expect(!sessionFiles.isEmpty)
        for rel in sessionFiles {
            #expect(try stockSHA256(m.data + "/sessions/" + rel) == (try stockSHA256(m.old + "/sessions/" + rel)), "\(rel)")
        }
        #expect(m.calls.first == "systemctl stop tosca.service")
        #expect(m.calls.contains("systemctl enable --now tosca-maint-backup.timer tosca-maint-verify.timer tosca-maint-export.timer"))
    }

    @Test func afterSessionProtection() throws {
        let m = try Machine()
        try simulatedData(m.data, sessions: 2)
        try Self.backup(m.data)
        #expect(try maint(["restore", "--drill", "--data-dir", m.data]).status == 0)
        // Sessions that ended since: their markers wait in spool/ended.
        try simulatedData(m.data, sessions: 2)
        let waiting = listing(m.data + "/spool/ended")
        #expect(waiting.count == 4, "\(waiting)")
        try "the clinic's export password\n".write(toFile: m.pass, atomically: true, encoding: .utf8)
        chmod(m.pass, 0o600)
        try m.write(m.stubs + "/tosca-maint", """
            #!/bin/bash
            # The test's repository is on the data folder's filesystem: allowed for the test only.
            for a in "$@"; do [[ $a == --repo ]] && exec '\(binDirectory())/tosca-maint' "$@" --allow-same-device; done
            exec '\(binDirectory())/tosca-maint' "$@"
            """)
        try Self.expectPasses(m, "after-session-protection.md")
        #expect(m.calls == ["systemctl enable --now tosca-maint-session.path"], "\(m.calls)")
        #expect(listing(m.data + "/spool/ended").isEmpty)
        // Every session's bundle is in the recorded export, with the session backup.
        let record = try #require(listing(m.data + "/exports").first { $0.hasSuffix(".manifest.json") })
        let export = try JSONDecoder().decode(ExportManifest.self, from: Data(contentsOf: URL(fileURLWithPath: m.data + "/exports/" + record)))
        #expect(export.databaseCopy.hasSuffix("_session.db"), "\(export.databaseCopy)")
        for id in waiting { #expect(export.files.contains { $0.path.hasPrefix("bundles/session_\(id)_") }, "session \(id)") }
    }

    @Test func deviceLostOrDiskDead() throws {
        let m = try Machine()
        let old = m.dir.sub("old-machine")
        try simulatedData(old, sessions: 3)
        try Self.backup(old)
        #expect(try maint(["bundle", "--data-dir", old]).status == 0)
        try "the clinic's export password\n".write(toFile: m.pass, atomically: true, encoding: .utf8)
        chmod(m.pass, 0o600)
        let repoArgs = ["--repo", m.repo, "--password-file", m.pass, "--allow-same-device", "--cache-dir", m.dir.sub("cache")]
        #expect(try maint(["export", "init", "--data-dir", old] + repoArgs).status == 0)
        let e = try maint(["export", "--data-dir", old] + repoArgs)
        #expect(e.status == 0, "\(e.output)")
        let oldRows = try sqlite3Value(old + "/tosca.db", "SELECT count(*) FROM treatment_events;")
        let sessionFiles = filesUnder(old + "/sessions")
        let sums = try sessionFiles.map { try stockSHA256(old + "/sessions/" + $0) }
        // The old machine is gone; the new one has an empty data folder.
        try FileManager.default.removeItem(atPath: old)
        try FileManager.default.createDirectory(atPath: m.data, withIntermediateDirectories: true)
        try Self.expectPasses(m, "device-lost-or-disk-dead.md")
        #expect(try sqlite3Value(m.data + "/tosca.db", "PRAGMA integrity_check;") == "ok")
        #expect(try sqlite3Value(m.data + "/tosca.db", "SELECT count(*) FROM treatment_events;") == oldRows)
        #expect(!sessionFiles.isEmpty)
        for (rel, sum) in zip(sessionFiles, sums) {
            #expect(try stockSHA256(m.data + "/sessions/" + rel) == sum, "\(rel)")
        }
        #expect(m.calls.contains("systemctl enable --now tosca-maint-backup.timer tosca-maint-verify.timer tosca-maint-export.timer"))
    }

    @Test func tamperingReported() throws {
        let m = try Machine()
        try simulatedData(m.data, sessions: 3)
        try Self.backup(m.data)
        let anchor = try #require(listing(m.data + "/backups").first { $0.hasSuffix(".db") })
        // The tampering: the newest safety-log entries deleted past the append-only trigger.
        // The chain left is intact on its own, so only the anchor shows the change.
        let db = m.data + "/tosca.db"
        let head = try sqlite3Value(db, "SELECT max(seq) FROM safety_log;")
        try sqlite3Value(db, """
            DROP TRIGGER safety_log_no_delete;
            DELETE FROM safety_log WHERE seq >= \(Int(head)! - 1);
            """)
        // That night's backup ran (and was kept as a suspect copy); then the recorder went on.
        #expect(try maint(["backup", "--data-dir", m.data]).status == 65)
        try m.startRecorder()
        #expect(try maint(["verify", "--live", "--data-dir", m.data]).status == 65)
        try Self.expectPasses(m, "tampering-reported.md")
        // The evidence is the tampered database, with sums that check.
        let evidence = try #require(listing(m.data + "/evidence").first)
        let folder = m.data + "/evidence/" + evidence
        let check = try run("/bin/bash", ["-c", "cd \"$0\" && sha256sum -c SHA256SUMS", folder])
        // (What journalctl wrote depends on this machine's journal; that it was saved and summed does not.)
        #expect(check.status == 0 && check.stdout.contains("chain-heads.journal.txt: OK"), "\(check.output)")
        // It holds the changed log: its entry at the first deleted seq is not the anchor's.
        let firstDeleted = "SELECT hex(row_hash) FROM safety_log WHERE seq = \(Int(head)! - 1);"
        #expect(try sqlite3Value(folder + "/tosca.db", firstDeleted) != (try sqlite3Value(m.data + "/backups/" + anchor, firstDeleted)))
        // The timers were stopped with the service, and started again at the end.
        #expect(Array(m.calls.prefix(2)) == ["systemctl stop tosca.service", "systemctl disable --now tosca-maint-backup.timer tosca-maint-verify.timer"], "\(m.calls)")
        #expect(m.calls.contains("systemctl enable --now tosca-maint-backup.timer tosca-maint-verify.timer"), "\(m.calls)")
        // The live database is the anchor's state (every entry back) plus the restore's.
        #expect(Int(try sqlite3Value(db, "SELECT max(seq) FROM safety_log;")) == Int(head)! + 1)
        let live = try maint(["verify", "--live", "--data-dir", m.data])
        #expect(live.status == 0 && live.stdout.contains("anchored on \(anchor)"), "\(live.output)")
        // The suspect copy is evidence in quarantine; status reports no tampering any more.
        #expect(listing(m.data + "/backups/quarantine").contains { $0.hasSuffix("_suspect.db") })
        #expect(try maint(["status", "--data-dir", m.data]).status != 65)
    }


    /// A session folder lost to a disk fault, its bundle in bundles/: the runbook puts it
    /// back, byte for byte.
    @Test func recoveringASessionFolder() throws {
        let m = try Machine()
        try simulatedData(m.data, sessions: 2)
        #expect(try maint(["bundle", "--data-dir", m.data]).status == 0)
        let folder = m.data + "/" + (try sqlite3Value(m.data + "/tosca.db", "SELECT session_folder_path FROM sessions WHERE session_id = 1;"))
        let before = filesUnder(folder).map { ($0, fileSHA256(folder + "/" + $0)) }
        try FileManager.default.removeItem(atPath: folder)
        try Self.expectPasses(m, "recovering-a-session-folder.md")
        #expect(filesUnder(folder).map { ($0, fileSHA256(folder + "/" + $0)) }.elementsEqual(before, by: ==))
        #expect(!before.isEmpty)
    }
}
