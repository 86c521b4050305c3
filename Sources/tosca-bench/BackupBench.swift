import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

/// `tosca-bench backup`: the backup path on a large database, plaintext and encrypted,
/// against `cp` + fsync, the stock CLIs, and the same work done by hand.
struct BackupBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backup",
        abstract: "Backup on a large TOSCA database against cp+fsync, sqlite3 .backup / sqlcipher, and the by-hand work.",
        discussion: """
            Builds (once, kept in --work-dir) a database of about --size-mib MiB with TOSCA's \
            schema and indexes, and an encrypted copy of it, then times side by side: cp + fsync; \
            the stock CLI copy (sqlite3 .backup; for the encrypted file sqlcipher's ATTACH KEY + \
            sqlcipher_export, since its .backup refuses encrypted databases); our online-backup \
            copy alone; the whole `tosca-maint backup`; and the by-hand work (the CLI copy, then \
            PRAGMA integrity_check on it, then sha256sum). Then the p99 commit latency of \
            tosca-sim (1 kHz samples, 50 events/s) alone and while backups run under nice 19 and \
            the idle I/O class, as the timers run them.
            """)

    @Option(help: "Size of the benchmark database in MiB.") var sizeMib = 1024
    @Option(help: "Folder for the databases (kept between runs when given).") var workDir: String?
    @Option(help: "Seconds of recording for each latency run.") var latencySeconds = 20.0
    @Flag(help: "Skip the encrypted variant.") var plaintextOnly = false
    @Option(help: "Runs of each timing; the median is shown.") var runs = 3
    @Flag(help: "Skip the encryption cutover (tosca-bench cutover runs it alone).") var skipCutover = false
    @Flag(help: "Skip the copies and whole backups.") var skipCopies = false
    @Flag(help: "Skip the restores.") var skipRestore = false
    @Flag(help: "Skip the recorder latency windows.") var skipLatency = false

    /// Each figure of the performance goals: ours / its baseline, and the goal.
    final class Summary {
        var rows: [(String, Double, Double)] = []
        func add(_ what: String, _ ratio: Double, goal: Double) { rows.append((what, ratio, goal)) }
    }

    func run() throws {
        setPrivateUmask()
        let base = workDir ?? (NSTemporaryDirectory() + "/tosca-bench-backup-\(getpid())")
        try AtomicFile.makeDirectory(base)
        defer { if workDir == nil { try? FileManager.default.removeItem(atPath: base) } }
        guard let sqlite3 = which("sqlite3"), let sqlcipher = which("sqlcipher"), let maint = sibling("tosca-maint"), let sim = sibling("tosca-sim") else {
            throw ValidationError("needs sqlite3, sqlcipher and the tosca-maint and tosca-sim binaries beside this one")
        }
        let plain = base + "/plain"
        try makeDatabase(data: plain, sqlite3: sqlite3)
        let keyFile = base + "/key"
        let enc = base + "/enc"
        if !plaintextOnly { try makeEncrypted(from: plain + "/tosca.db", data: enc, keyFile: keyFile, sqlcipher: sqlcipher) }
        let size = fileSize(plain + "/tosca.db")
        print("tosca-bench backup: \(String(format: "%.0f", Double(size) / 1_048_576)) MiB database, scratch on \(try filesystemType(base)), SQLCipher \(try SQLCipherLibrary.checkVersion())")
        print("each time is the median of \(runs) runs after a warm-up read of the file; ratios are ours / baseline (below 1: faster)\n")
        let summary = Summary()

        for (label, data, key) in skipCopies ? [] : [("plaintext", plain, nil as String?)] + (plaintextOnly ? [] : [("encrypted", enc, keyFile)]) {
            let db = data + "/tosca.db"
            _ = try timed { _ = try shell("/bin/sh", ["-c", "cat \"$0\" > /dev/null", db]) }
            let out = base + "/out"
            try? FileManager.default.removeItem(atPath: out)
            try AtomicFile.makeDirectory(out)
            func clear(_ name: String) -> () throws -> Void { { unlink(out + "/" + name); _ = try shell("/bin/sync", []) } }
            let cp = try timed(reset: clear("cp.db")) { _ = try shell("/bin/sh", ["-c", "cp \"$0\" \"$1\" && sync \"$1\"", db, out + "/cp.db"]) }
            let keyHex = try key.map { try String(contentsOfFile: $0, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) }
            let cliCopy: Double
            if let keyHex {
                cliCopy = try timed(reset: clear("cli.db")) {
                    try runCLI(sqlcipher, [db], stdin: "PRAGMA key = \"x'\(keyHex)'\";\nATTACH DATABASE '\(out)/cli.db' AS copy KEY \"x'\(keyHex)'\";\nSELECT sqlcipher_export('copy');\nDETACH DATABASE copy;\n")
                    _ = try shell("/bin/sync", [out + "/cli.db"])
                }
            } else {
                cliCopy = try timed(reset: clear("cli.db")) { try runCLI(sqlite3, [db, ".backup '\(out)/cli.db'"]); _ = try shell("/bin/sync", [out + "/cli.db"]) }
            }
            let cliCheck = try timed {
                if let keyHex { try runCLI(sqlcipher, [out + "/cli.db"], stdin: "PRAGMA key = \"x'\(keyHex)'\";\nPRAGMA integrity_check;\n") }
                else { try runCLI(sqlite3, [out + "/cli.db", "PRAGMA integrity_check;"]) }
            }
            let cliHash = try timed { _ = try shell("/usr/bin/sha256sum", [out + "/cli.db"]) }
            let dbKey = try key.map { try KeySource.read(path: $0) }
            var method = ""
            let ours = try timed(reset: clear("ours.db")) {
                let source = try Database(path: db, options: .init(readOnly: true, key: dbKey))
                try source.execute("PRAGMA mmap_size = 4294967296") // as CopyJob does
                let pin = try PinnedSnapshot.begin(source, path: db)
                let outcome = try DatabaseCopy.copy(pin, to: out + "/ours.db", key: dbKey)
                pin.end()
                try FileDigest.fsyncFile(out + "/ours.db")
                method = outcome.method == .raw ? "raw pages" : "backup API: \(outcome.fallbackReason ?? "forced")"
            }
            let whole = try timed(reset: { try? FileManager.default.removeItem(atPath: data + "/backups"); _ = try shell("/bin/sync", []) }) { try runCLI(maint, ["backup", "--data-dir", data] + (key.map { ["--key-file", $0] } ?? [])) }
            try? FileManager.default.removeItem(atPath: data + "/backups")
            try? FileManager.default.removeItem(atPath: out)
            let byHand = cliCopy + cliCheck + cliHash
            func r(_ a: Double, _ b: Double) -> String { String(format: "%.2f", a / b) }
            print("\(label):")
            print(String(format: "  cp + fsync                          %7.2f s", cp))
            print(String(format: "  %@  %7.2f s", (key == nil ? "sqlite3 .backup" : "sqlcipher_export (CLI)").padding(toLength: 34, withPad: " ", startingAt: 0), cliCopy))
            print(String(format: "  our copy (%@ + fsync)  %7.2f s   %@x cp+fsync   %@x CLI copy", method, ours, r(ours, cp), r(ours, cliCopy)))
            print(String(format: "  by hand: copy + integrity_check + sha256sum  %.2f s (%.2f + %.2f + %.2f)", byHand, cliCopy, cliCheck, cliHash))
            print(String(format: "  tosca-maint backup (copy, verify, manifest, publish)  %.2f s   %@x by hand", whole, r(whole, byHand)))
            print("")
            summary.add("\(label) backup copy vs cp+fsync", ours / cp, goal: key == nil ? 1.5 : 2.0)
            summary.add("whole \(label) backup vs by hand", whole / byHand, goal: key == nil ? 0.8 : 0.5)
        }
        if !skipRestore { summary.add("in-place restore vs by hand", try restore(data: plain, sqlite3: sqlite3, maint: maint, base: base), goal: 1.0) }
        if !skipCutover {
            let f = try CutoverBench.measure(base: base, sizeMib: sizeMib, runs: runs)
            print("encryption cutover (fresh copy of the plaintext database each run):")
            CutoverBench.printFigures(f)
            print("")
            summary.add("encryption cutover vs by hand", f.full / f.byHand, goal: 1.2)
        }
        if !skipLatency { summary.add("recorder p99 commit latency during backups vs idle", try latency(data: plain, sim: sim, maint: maint), goal: 2.0) }
        print("\nsummary (ours / baseline in this run, medians of \(runs)):")
        for (what, ratio, goal) in summary.rows {
            print("  \(what.padding(toLength: 52, withPad: " ", startingAt: 0)) \(String(format: "%5.2fx", ratio))   goal <= \(String(format: "%.1fx", goal))  \(ratio <= goal ? "met" : "NOT MET")")
        }
    }

    /// Restore of the backup of the plaintext database against the by-hand work.
    func restore(data: String, sqlite3: String, maint: String, base: String) throws -> Double {
        try? FileManager.default.removeItem(atPath: data + "/backups")
        let made = try shell(maint, ["backup", "--data-dir", data])
        let copy = made.split(separator: "\n").last.map(String.init) ?? ""
        let out = base + "/restore-out"
        try? FileManager.default.removeItem(atPath: out)
        try AtomicFile.makeDirectory(out)
        let byHand = try timed(reset: { unlink(out + "/hand.db"); _ = try shell("/bin/sync", []) }) {
            try runCLI(sqlite3, [copy, "PRAGMA integrity_check;"])
            try runCLI(sqlite3, [out + "/hand.db", ".restore '\(copy)'"])
            try runCLI(sqlite3, [out + "/hand.db", "PRAGMA integrity_check;"])
        }
        let to = try timed(reset: { unlink(out + "/ours.db"); _ = try shell("/bin/sync", []) }) {
            try runCLI(maint, ["restore", "--backup", copy, "--to", out + "/ours.db", "--yes", "--data-dir", data])
        }
        let inPlace = try timed(reset: {
            for n in (try? FileManager.default.contentsOfDirectory(atPath: data + "/backups")) ?? [] where n.contains("pre-restore") {
                unlink(data + "/backups/" + n)
            }
            _ = try shell("/bin/sync", [])
        }) {
            try runCLI(maint, ["restore", "--backup", copy, "--yes", "--data-dir", data])
        }
        try? FileManager.default.removeItem(atPath: out)
        try? FileManager.default.removeItem(atPath: data + "/backups")
        print("restore of the plaintext backup:")
        print(String(format: "  by hand: integrity_check of the copy + .restore + integrity_check  %7.2f s", byHand))
        print(String(format: "  tosca-maint restore --to (verify copy, stage, verify result)       %7.2f s   %.2fx by hand", to, to / byHand))
        print(String(format: "  tosca-maint restore in place (also a verified pre-restore copy)    %7.2f s   %.2fx by hand", inPlace, inPlace / byHand))
        print("")
        return inPlace / byHand
    }

    func sibling(_ name: String) -> String? { siblingExecutable(name) }


    func timed(reset: () throws -> Void = {}, _ body: () throws -> Void) throws -> Double {
        try medianTime(runs: runs, reset: reset, body)
    }

    func runCLI(_ exe: String, _ args: [String], stdin: String? = nil) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        p.standardOutput = FileHandle.nullDevice
        let err = Pipe()
        p.standardError = err
        let inPipe = Pipe()
        p.standardInput = stdin == nil ? FileHandle.nullDevice : inPipe
        try p.run()
        if let stdin {
            inPipe.fileHandleForWriting.write(Data(stdin.utf8))
            try inPipe.fileHandleForWriting.close()
        }
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        guard p.terminationStatus == 0 else {
            throw ValidationError("\(PathName.name(exe)) \(args.first ?? "") failed (\(p.terminationStatus)): \(String(decoding: e, as: UTF8.self))")
        }
    }

    /// A simulated-origin database grown with treatment events to the size asked for.
    func makeDatabase(data: String, sqlite3: String) throws {
        let db = data + "/tosca.db"
        let target = Int64(sizeMib) * 1_048_576
        if fileSize(db) >= target * 95 / 100 { return }
        try? FileManager.default.removeItem(atPath: data)
        var options = RecorderOptions()
        options.initialConfig = ["data_origin": "simulated"]
        let rec = try Recorder(dataDirectory: data, options: options)
        let tech = try rec.addTechnician(username: "bench", fullName: "Bench")
        let subject = try rec.addSubject(code: "BENCH", createdByTechID: tech)
        let s = try rec.startSession(subjectID: subject, techID: tech, protocolID: nil)
        try rec.endSession(s)
        try rec.close()
        FileHandle.standardError.write(Data("building a \(sizeMib) MiB database in \(data) (once)...\n".utf8))
        var offset = 0
        let batch = max(1000, min(250_000, Int(target / 260)))
        while fileSize(db) < target {
            try runCLI(sqlite3, [db], stdin: """
                PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < \(batch))
                INSERT INTO treatment_events (session_id, timestamp, time_offset_ms, event_type, laser_power_commanded_watts,
                  laser_power_actual_watts, ring_size_mm, photodiode_voltage_v, footpedal_state, interlock_status, event_details)
                SELECT 1, strftime('%Y-%m-%d %H:%M:%f', 1790000000 + (\(offset) + i) / 1000.0, 'unixepoch') || '000', \(offset) + i,
                       CASE i % 10 WHEN 0 THEN 'actuator_move' ELSE 'power_reading' END, 1.5, 1.5 + (i % 7) / 1000.0, 3.0,
                       1.2 + (i % 5) / 1000.0, 1, '{"door":"closed","estop":"armed"}', '{"pad":"' || hex(randomblob(40)) || '"}' FROM n;
                PRAGMA wal_checkpoint(TRUNCATE);
                """)
            offset += batch
        }
        // Events added under a sealed session are what `backup` reports as tampering: this
        // change is known, so the session is sealed again on a new timeline, with a reason.
        guard let maint = sibling("tosca-maint") else { throw ValidationError("tosca-maint must be built beside tosca-bench") }
        try runCLI(maint, ["backup", "--new-timeline", "benchmark database grown with sqlite3 by tosca-bench", "--data-dir", data])
    }

    /// The same data, encrypted with a new key, through the stock sqlcipher CLI.
    func makeEncrypted(from plain: String, data: String, keyFile: String, sqlcipher: String) throws {
        let db = data + "/tosca.db"
        if fileSize(db) >= fileSize(plain) * 95 / 100 && FileManager.default.fileExists(atPath: keyFile) { return }
        try? FileManager.default.removeItem(atPath: data)
        try AtomicFile.makeDirectory(data)
        var bytes = [UInt8](repeating: 0, count: 32)
        let fd = open("/dev/urandom", O_RDONLY)
        _ = read(fd, &bytes, 32)
        close(fd)
        unlink(keyFile)
        try AtomicFile.write(Array(hexString(bytes).utf8), to: keyFile, mode: 0o400)
        let hex = hexString(bytes)
        let version = try Database(path: plain, options: .init(readOnly: true)).scalar("PRAGMA user_version")?.int ?? 0
        try runCLI(sqlcipher, [plain], stdin: """
            ATTACH DATABASE '\(db)' AS enc KEY "x'\(hex)'";
            SELECT sqlcipher_export('enc');
            PRAGMA enc.user_version = \(version);
            PRAGMA enc.application_id = \(toscaApplicationID);
            DETACH DATABASE enc;
            """)
        try runCLI(sqlcipher, [db], stdin: "PRAGMA key = \"x'\(hex)'\";\nPRAGMA journal_mode = WAL;\n")
    }

    /// p99 commit latency of the simulator alone and while backups run as the timers run them.
    func latency(data: String, sim: String, maint: String) throws -> Double {
        func simRun(_ label: String, during: (() throws -> Void)?) throws -> String {
            let report = data + "/latency-\(label).json"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: sim)
            p.arguments = ["--data-dir", data, "--until-signal", "--sample-rate", "1000", "--event-rate", "50", "--latency-report", report]
            p.standardOutput = FileHandle.nullDevice
            let err = Pipe()
            p.standardError = err
            try p.run()
            let end = Date().addingTimeInterval(latencySeconds)
            var backups = 0
            if let during {
                while Date() < end { try during(); backups += 1 }
            } else {
                Thread.sleep(until: end)
            }
            kill(p.processIdentifier, SIGTERM)
            let e = err.fileHandleForReading.readDataToEndOfFile()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw ValidationError("tosca-sim failed: \(String(decoding: e, as: UTF8.self))") }
            let text = try String(contentsOfFile: report, encoding: .utf8)
            return text.trimmingCharacters(in: .whitespacesAndNewlines) + (during == nil ? "" : " (\(backups) backups, sim stderr: \(e.isEmpty ? "empty" : String(decoding: e, as: UTF8.self)))")
        }
        func p99(_ s: String) -> Double {
            guard let r = s.range(of: "\"p99_ms\":") else { return 0 }
            return Double(s[r.upperBound...].prefix { "0123456789.".contains($0) }) ?? 0
        }
        func brief(_ s: String) -> String { s.replacingOccurrences(of: #","samples_ms":\[[^\]]*\]"#, with: "", options: .regularExpression) }
        print("tosca-sim commit latency (1 kHz samples, 50 events/s, \(Int(latencySeconds)) s each; \(runs) pairs of windows, idle then with backups):")
        func samples(_ s: String) -> [Double] {
            guard let r = s.range(of: "\"samples_ms\":[") else { return [] }
            return s[r.upperBound...].prefix { $0 != "]" }.split(separator: ",").compactMap { Double($0) }
        }
        func pooledP99(_ all: [Double]) -> Double {
            let sorted = all.sorted()
            // The same rank as tosca-sim's own p99.
            return sorted.isEmpty ? 0 : sorted[min(sorted.count - 1, Int(Double(sorted.count) * 0.99))]
        }
        var ratios: [Double] = []
        var idleAll: [Double] = [], busyAll: [Double] = []
        for _ in 0..<max(1, runs) {
            let idle = try simRun("idle", during: nil)
            // The copies are removed after the window, not between backups: deleting a 1 GiB
            // file is prune's work, and on a filesystem mounted with `discard` it stalls every
            // fsync (the recorder's too) while the blocks are trimmed.
            try? FileManager.default.removeItem(atPath: data + "/backups")
            let busy = try simRun("busy") {
                try runCLI("/usr/bin/nice", ["-n", "19", "/usr/bin/ionice", "-c", "3", maint, "backup", "--data-dir", data])
            }
            try? FileManager.default.removeItem(atPath: data + "/backups")
            let ratio = p99(busy) / max(p99(idle), 1e-9)
            ratios.append(ratio)
            idleAll += samples(idle)
            busyAll += samples(busy)
            print("  idle:                            \(brief(idle))")
            print("  with nice 19 / idle-I/O backups: \(brief(busy))")
            print(String(format: "  p99 with backups / p99 idle: %.2fx", ratio))
        }
        let median = ratios.sorted()[ratios.count / 2]
        print(String(format: "  median of the %d ratios: %.2fx", ratios.count, median))
        // One window's p99 is its second-worst commit or so: the pooled commits of all the
        // windows give the steadier figure, the one the summary takes.
        let pooled = pooledP99(busyAll) / max(pooledP99(idleAll), 1e-9)
        print(String(format: "  pooled over the windows: p99 %.3f ms with backups (%d commits), %.3f ms idle (%d commits): %.2fx (target <= 2x)",
                     pooledP99(busyAll), busyAll.count, pooledP99(idleAll), idleAll.count, pooled))
        return pooled
    }
}
