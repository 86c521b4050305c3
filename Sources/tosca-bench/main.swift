import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

/// `tosca-bench`: recorder throughput against baselines run side by side, printed as ratios.
struct ToscaBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tosca-bench",
        abstract: "Benchmarks that print ratios against baselines run side by side.",
        subcommands: [RecorderBench.self, BackupBench.self, CutoverBench.self, BundleBench.self, ExportBench.self],
        defaultSubcommand: RecorderBench.self)
}

struct RecorderBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recorder",
        abstract: "Benchmark the recorder against the stock sqlite3 CLI and raw write(2), in one run.",
        discussion: """
            Prints rates and ratios (ours / baseline, by rate: above 1 means faster than the \
            baseline), never an absolute time alone. Build with -c release:
              swift build -c release --product tosca-bench && .build/release/tosca-bench
            or run scripts/bench.sh.
            """)

    @Option(help: "Treatment events for the grouped runs.") var events = 200_000
    @Option(help: "Treatment events for the one-per-transaction runs (each commit fsyncs).") var singleEvents = 2_000
    @Option(help: "Samples for the JSONL run.") var samples = 2_000_000
    @Option(help: "Scratch folder (default: a new folder under $TMPDIR; removed afterwards).") var workDir: String?

    func run() throws {
        setPrivateUmask()
        let base = workDir ?? (NSTemporaryDirectory() + "/tosca-bench-\(getpid())")
        try AtomicFile.makeDirectory(base)
        defer { if workDir == nil { try? FileManager.default.removeItem(atPath: base) } }
        guard let sqlite3 = which("sqlite3") else { throw ValidationError("the sqlite3 CLI is needed for the baseline (apt-get install sqlite3)") }
        print("tosca-bench: SQLCipher \(try SQLCipherLibrary.checkVersion()) (SQLite \(SQLCipherLibrary.sqliteVersion)); baseline \(try shell(sqlite3, ["--version"]).prefix(18)) CLI")
        print("scratch: \(base) (\(try filesystemType(base)))\n")

        let grouped = try recorderRun(dir: base + "/grouped", count: events, groupSize: 256)
        let single = try recorderRun(dir: base + "/single", count: singleEvents, groupSize: 1)
        let cliGrouped = try cliRun(sqlite3: sqlite3, dir: base + "/cli-grouped", count: events, groupSize: 256)
        let cliSingle = try cliRun(sqlite3: sqlite3, dir: base + "/cli-single", count: singleEvents, groupSize: 1)
        let (jsonl, raw, bytes) = try streamRun(dir: base + "/streams", count: samples)

        func rate(_ n: Int, _ s: Double) -> String { String(format: "%12.0f/s", Double(n) / s) }
        func ratio(_ ours: Double, _ theirs: Double) -> String { String(format: "%6.2f", theirs / ours) }
        print("workload                                      ours            baseline          ratio (ours/baseline rate)")
        print("treatment events, groups of 256, WAL+FULL  \(rate(events, grouped.seconds))   sqlite3 CLI \(rate(events, cliGrouped))   \(ratio(grouped.seconds, cliGrouped))")
        print("treatment events, one per transaction      \(rate(singleEvents, single.seconds))   sqlite3 CLI \(rate(singleEvents, cliSingle))   \(ratio(single.seconds, cliSingle))")
        print("JSONL samples (2 fields, \(bytes / max(samples, 1)) B/line)       \(rate(samples, jsonl))   raw write() \(rate(samples, raw))   \(ratio(jsonl, raw))")
        print("")
        print(String(format: "commit latency, groups of 256:  p50 %.3f ms  p99 %.3f ms  (%d commits)", grouped.p50, grouped.p99, grouped.commits))
        print(String(format: "commit latency, one per commit: p50 %.3f ms  p99 %.3f ms  (%d commits)", single.p50, single.p99, single.commits))
        print("")
        let eventsRate = Double(events) / grouped.seconds, samplesRate = Double(samples) / jsonl
        print("floor  grouped events >= 100,000/s: \(eventsRate >= 100_000 ? "met" : "NOT MET") (\(Int(eventsRate))/s)")
        print("floor  samples >= 1,000,000/s:       \(samplesRate >= 1_000_000 ? "met" : "NOT MET") (\(Int(samplesRate))/s)")
    }

    struct RecorderResult { let seconds: Double; let p50: Double; let p99: Double; let commits: Int }

    func event(_ i: Int) -> TreatmentEvent {
        TreatmentEvent(timestamp: UTCTime(seconds: 1_790_000_000 + Int64(i / 1000), microseconds: Int32(i % 1000) * 1000),
                       timeOffsetMs: Int64(i), eventType: i % 10 == 0 ? "actuator_move" : "power_reading",
                       laserPowerCommandedWatts: 1.5, laserPowerActualWatts: 1.5 + Double(i % 7) / 1000, ringSizeMm: 3.0,
                       photodiodeVoltageV: 1.2 + Double(i % 5) / 1000, footpedalState: true, smoothingDeviceState: true,
                       interlockStatus: #"{"door":"closed","estop":"armed"}"#, videoTimestampMs: Int64(i))
    }

    final class Latencies: @unchecked Sendable {
        let lock = NSLock()
        var values: [UInt64] = []
        func add(_ v: UInt64) { lock.withLock { values.append(v) } }
    }

    func recorderRun(dir: String, count: Int, groupSize: Int) throws -> RecorderResult {
        let lat = Latencies()
        var options = RecorderOptions()
        options.eventGroupSize = groupSize
        options.eventGroupIntervalNanoseconds = .max
        options.backgroundFlush = false
        options.commitObserver = { ns, _ in lat.add(ns) }
        let rec = try Recorder(dataDirectory: dir, options: options)
        let tech = try rec.addTechnician(username: "bench", fullName: "Bench")
        let subject = try rec.addSubject(code: "BENCH", createdByTechID: tech)
        let session = try rec.startSession(subjectID: subject, techID: tech, protocolID: nil)
        let batch = (0..<count).map(event)
        let t0 = monotonicNanoseconds()
        for e in batch { try rec.record(e, in: session) }
        try rec.flush()
        let seconds = Double(monotonicNanoseconds() - t0) / 1e9
        try rec.endSession(session)
        try rec.close()
        let sorted = lat.values.sorted()
        func pct(_ p: Double) -> Double { sorted.isEmpty ? 0 : Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1e6 }
        return RecorderResult(seconds: seconds, p50: pct(0.5), p99: pct(0.99), commits: sorted.count)
    }

    func sqlLiteral(_ v: SQLValue) -> String {
        switch v {
        case .null: return "NULL"
        case .integer(let i): return String(i)
        case .real(let d): return String(d)
        case .text(let s): return "'" + s.replacingOccurrences(of: "'", with: "''") + "'"
        case .blob(let b): return "x'" + hexString(b) + "'"
        }
    }

    /// The same rows through the stock CLI into a database made by the same migrations.
    func cliRun(sqlite3: String, dir: String, count: Int, groupSize: Int) throws -> Double {
        try AtomicFile.makeDirectory(dir)
        let path = dir + "/tosca.db"
        do {
            let db = try Database(path: path, options: .init(create: true, walMode: true))
            try Migrator().migrate(db)
            try db.execute("""
                INSERT INTO tech_users VALUES (1, 'bench', 'Bench', 'technician', '2026-01-01 00:00:00.000000', NULL, 1, NULL);
                INSERT INTO subjects (subject_id, subject_code, created_date, is_active) VALUES (1, 'BENCH', '2026-01-01 00:00:00.000000', 1);
                INSERT INTO sessions (session_id, subject_id, tech_id, start_time, status, created_date) VALUES (1, 1, 1, '2026-01-01 00:00:00.000000', 'in_progress', '2026-01-01 00:00:00.000000');
                """)
        }
        var sql = "PRAGMA journal_mode = WAL;\nPRAGMA synchronous = FULL;\nPRAGMA foreign_keys = ON;\n"
        for i in 0..<count {
            if groupSize > 1 && i % groupSize == 0 { sql += "BEGIN;\n" }
            let e = event(i)
            let vals: [SQLValue] = [.integer(1), .text(e.timestamp.sqlDateTime), .integer(e.timeOffsetMs ?? 0), .text(e.eventType),
                                    e.laserPowerCommandedWatts.sqlValue, e.laserPowerActualWatts.sqlValue, e.ringSizeMm.sqlValue,
                                    e.actuatorPositionUm.sqlValue, e.photodiodeVoltageV.sqlValue, e.footpedalState.sqlValue,
                                    e.smoothingDeviceState.sqlValue, e.interlockStatus.sqlValue, e.imagePath.sqlValue,
                                    e.videoTimestampMs.sqlValue, e.eventDetails.sqlValue]
            sql += "INSERT INTO treatment_events (session_id, timestamp, time_offset_ms, event_type, laser_power_commanded_watts, laser_power_actual_watts, ring_size_mm, actuator_position_um, photodiode_voltage_v, footpedal_state, smoothing_device_state, interlock_status, image_path, video_timestamp_ms, event_details) VALUES (\(vals.map(sqlLiteral).joined(separator: ",")));\n"
            if groupSize > 1 && (i % groupSize == groupSize - 1 || i == count - 1) { sql += "COMMIT;\n" }
        }
        let input = dir + "/insert.sql"
        try Data(sql.utf8).write(to: URL(fileURLWithPath: input))
        let p = Process()
        p.executableURL = URL(fileURLWithPath: sqlite3)
        p.arguments = ["-batch", "-bail", path]
        p.standardInput = FileHandle(forReadingAtPath: input)
        p.standardOutput = FileHandle.nullDevice
        let t0 = monotonicNanoseconds()
        try p.run()
        p.waitUntilExit()
        let seconds = Double(monotonicNanoseconds() - t0) / 1e9
        guard p.terminationStatus == 0 else { throw ValidationError("sqlite3 baseline failed (\(p.terminationStatus))") }
        return seconds
    }

    /// JSONL through a recorder stream, then the same bytes through raw write(2) + fsync.
    func streamRun(dir: String, count: Int) throws -> (Double, Double, Int) {
        let rec = try Recorder(dataDirectory: dir)
        let tech = try rec.addTechnician(username: "bench", fullName: "Bench")
        let subject = try rec.addSubject(code: "BENCH", createdByTechID: tech)
        let session = try rec.startSession(subjectID: subject, techID: tech, protocolID: nil)
        let stream = try session.openStream("photodiode", fields: ["voltage_v", "power_w"])
        var t = UTCTime(seconds: 1_790_000_000, microseconds: 0)
        let t0 = monotonicNanoseconds()
        for i in 0..<count {
            t.microseconds = Int32((i % 100_000) * 10)
            if i % 100_000 == 0 { t.seconds += 1 }
            try stream.append(time: t, [.double(1.2 + Double(i % 1000) / 1e4), .double(1.5)])
        }
        let manifest = try rec.endSession(session)
        let jsonl = Double(monotonicNanoseconds() - t0) / 1e9
        try rec.close()
        let file = dir + "/" + session.relativeFolder + "/streams/photodiode.jsonl"
        let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: file)))
        precondition(bytes.count == manifest.streams[0].bytes)
        let out = dir + "/raw.jsonl"
        let r0 = monotonicNanoseconds()
        let fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw POSIXFailure(operation: "create \(out)", code: errno) }
        try bytes.withUnsafeBytes { raw in
            var off = 0
            while off < raw.count {
                let n = writeSome(fd, UnsafeRawBufferPointer(rebasing: raw[..<min(off + 64 * 1024, raw.count)]), from: off)
                if n < 0 { throw POSIXFailure(operation: "write", code: errno) }
                off += n
            }
        }
        fsync(fd)
        close(fd)
        let rawSeconds = Double(monotonicNanoseconds() - r0) / 1e9
        return (jsonl, rawSeconds, bytes.count)
    }

}

func shell(_ exe: String, _ args: [String]) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
}

/// Runs a program; its failure stops the benchmark (a baseline that failed would make a
/// ratio meaningless). Returns its standard output.
@discardableResult
func checkedShell(_ exe: String, _ args: [String]) throws -> String {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = args
    let out = Pipe(), err = Pipe()
    p.standardOutput = out
    p.standardError = err
    try p.run()
    let data = out.fileHandleForReading.readDataToEndOfFile()
    let e = err.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    guard p.terminationStatus == 0 else {
        throw ValidationError("\(PathName.name(exe)) \(args.prefix(3).joined(separator: " ")) failed (\(p.terminationStatus)): \(String(decoding: e, as: UTF8.self))")
    }
    return String(decoding: data, as: UTF8.self)
}

/// Whether the page cache can be dropped here (root), when the benchmark asks to.
func canDropPageCache(_ wanted: Bool) -> Bool {
    wanted && FileManager.default.isWritableFile(atPath: "/proc/sys/vm/drop_caches")
}

/// Writes everything back, then drops the page cache when `drop`.
func flushAndDropPageCache(_ drop: Bool) throws {
    try checkedShell("/bin/sync", [])
    if drop { try "1\n".write(toFile: "/proc/sys/vm/drop_caches", atomically: false, encoding: .utf8) }
}

func filesystemType(_ path: String) throws -> String {
    (try? shell("/usr/bin/stat", ["-f", "-c", "%T", path])) ?? "unknown filesystem"
}

func which(_ name: String) -> String? {
    for dir in (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin").split(separator: ":") where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
        return "\(dir)/\(name)"
    }
    return nil
}

/// A program built beside this one (tosca-maint, tosca-sim), or `nil`.
func siblingExecutable(_ name: String) -> String? {
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    let p = PathName.parent(exe) + "/" + name
    return FileManager.default.isExecutableFile(atPath: p) ? p : nil
}

/// The median of `runs` timings of `body` in seconds; `reset` runs before each (untimed).
func medianTime(runs: Int, reset: () throws -> Void = {}, _ body: () throws -> Void) throws -> Double {
    var times: [Double] = []
    for _ in 0..<max(1, runs) {
        try reset()
        let t0 = monotonicNanoseconds()
        try body()
        times.append(Double(monotonicNanoseconds() - t0) / 1e9)
    }
    return times.sorted()[times.count / 2]
}

ToscaBench.main()
