import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

/// `tosca-sim`: records realistic simulated sessions through ToscaCore's recorder.
struct ToscaSim: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tosca-sim",
        abstract: "Record simulated TOSCA treatment sessions through the real recorder.",
        discussion: """
            Creates <data>/tosca.db when absent (marked data_origin=simulated, ARCHITECTURE D16) \
            and records sessions with treatment events, occasional safety events and the JSONL \
            streams photodiode, interlocks and camera_meta. It refuses a database it did not make \
            unless --allow-real is given.

            Policy: \(RecorderOptions().summary).

            Examples:
              tosca-sim --data-dir ./data --sessions 3 --duration 5
              tosca-sim --data-dir ./data --until-signal      # stop with SIGTERM or Ctrl-C

            Exit codes: 0 ok, 64 usage, 66 no database, 74 I/O error, 75 the data folder is in \
            use by another recorder or a maintenance run, 77 key problem or not a simulated \
            database, 78 schema behind (run `tosca-maint migrate up`) or SQLCipher too old.
            """)

    @Option(name: .long, help: "Data folder (default: $TOSCA_DATA_DIR, else ./data).")
    var dataDir: String?

    @Option(name: .long, help: "Number of sessions to record one after another.")
    var sessions: Int = 3

    @Option(name: .long, help: "Length of each session in seconds.")
    var duration: Double = 5

    @Option(name: .long, help: "Photodiode samples per second (interlocks at up to 50 Hz, camera at up to 30 Hz).")
    var sampleRate: Double = 200

    @Option(name: .long, help: "Treatment events per second.")
    var eventRate: Double = 20

    @Option(name: .long, help: "Key file of an encrypted database (64 hex characters, mode 0400); a new database is created encrypted with it.")
    var keyFile: String?

    @Flag(name: .long, help: "Record one session until SIGTERM or SIGINT, then end it cleanly and exit 0.")
    var untilSignal = false

    @Flag(name: .long, help: "Record into a database that tosca-sim did not create (never on a device).")
    var allowReal = false

    @Option(name: .long, help: "Seed of the random generator (same seed, same choices).")
    var seed: UInt64?

    @Option(name: .long, help: "MiB of camera video per session in media/ (incompressible, like real video), with two snapshots, registered in session_recordings (default 0: none).")
    var mediaMib: Double = 0

    @Flag(name: .long, help: "Print the summary as JSON.")
    var json = false

    @Option(name: .long, help: ArgumentHelp("Write commit latencies (p50, p99, max and every sample; JSON) to this file at exit (benchmarks).", visibility: .hidden))
    var latencyReport: String?

    func validate() throws {
        guard sessions >= 1 else { throw ValidationError("--sessions must be at least 1") }
        guard duration > 0, duration.isFinite else { throw ValidationError("--duration must be a positive number of seconds") }
        guard sampleRate > 0, sampleRate <= 100_000 else { throw ValidationError("--sample-rate must be in (0, 100000]") }
        guard eventRate > 0, eventRate <= 10_000 else { throw ValidationError("--event-rate must be in (0, 10000]") }
        guard mediaMib >= 0, mediaMib <= 100_000 else { throw ValidationError("--media-mib must be in [0, 100000]") }
    }

    func run() throws {
        setPrivateUmask()
        let stop = StopSignal()
        stop.install()
        let dataDirectory = DataFolder.resolve(dataDir)
        do {
            let key = try KeySource.resolve(keyFile: keyFile)
            let allowReal = self.allowReal
            var options = RecorderOptions(key: key)
            // D16: the mark goes in with the schema, in the transaction that creates the file.
            options.initialConfig = ["data_origin": "simulated"]
            let latencies = LatencyLog()
            if latencyReport != nil { options.commitObserver = { ns, _ in latencies.add(ns) } }
            let recorder = try Recorder(dataDirectory: dataDirectory, options: options) { db, isNew in
                if isNew { return }
                let origin = try db.scalar("SELECT config_value FROM system_config WHERE config_key = 'data_origin'")?.string
                if origin != "simulated" && !allowReal {
                    throw RecorderError.refused("\(dataDirectory)/tosca.db was not made by tosca-sim (data_origin is \(origin.map { "'\($0)'" } ?? "not set")): refusing to record simulated sessions into it. Pass --allow-real only for a scratch copy, never on a device")
                }
            }
            defer { try? recorder.close(abortOpenSessionsWith: "simulator exited") }
            if !recorder.recovery.abortedSessions.isEmpty {
                FileHandle.standardError.write(Data("tosca-sim: recovered interrupted session(s) \(recorder.recovery.abortedSessions.map(String.init).joined(separator: ", ")) as aborted\n".utf8))
            }
            var sim = Simulator(recorder: recorder, sampleRate: sampleRate, eventRate: eventRate, stop: stop,
                                rng: SplitMix64(state: seed ?? UInt64(UTCTime.now().seconds) ^ UInt64(getpid())))
            sim.mediaMiB = mediaMib
            let ref = try sim.ensureReferenceData()
            var done: [SimulatedSession] = []
            let count = untilSignal ? 1 : sessions
            for _ in 0..<count {
                if stop.isSet { break }
                let s = try sim.runSession(duration: untilSignal ? nil : duration, techs: ref.techs, subjects: ref.subjects, protocols: ref.protocols)
                done.append(s)
                if !json {
                    print("session \(s.sessionID) \(s.subjectCode) tech \(s.techID) \"\(s.protocolName ?? "-")\": \(s.status), \(s.treatmentEvents) treatment events, \(s.safetyEvents) safety events, samples \(s.samples.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")) -> \(s.folder)")
                }
            }
            try recorder.close()
            for f in recorder.markerFailures {
                FileHandle.standardError.write(Data("tosca-sim: warning: session \(f.session) ended, but its spool/ended marker was not written (\(f.reason)); the nightly run takes it\n".utf8))
            }
            if let latencyReport { try latencies.write(to: latencyReport) }
            if json {
                let enc = JSONEncoder()
                enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
                print(String(decoding: try enc.encode(done), as: UTF8.self))
            }
        } catch {
            throw ExitCode(report(error, program: "tosca-sim"))
        }
    }
}

/// Commit durations, for `--latency-report`.
final class LatencyLog: @unchecked Sendable {
    private let lock = NSLock()
    private var values: [UInt64] = []
    func add(_ ns: UInt64) { lock.withLock { values.append(ns) } }
    func write(to path: String) throws {
        let sorted = lock.withLock { values.sorted() }
        func pct(_ p: Double) -> Double { sorted.isEmpty ? 0 : Double(sorted[min(sorted.count - 1, Int(Double(sorted.count) * p))]) / 1e6 }
        // Every sample too, so a benchmark can pool several windows before it takes a p99.
        let samples = sorted.map { String(format: "%.4f", Double($0) / 1e6) }.joined(separator: ",")
        let text = "{\"commits\":\(sorted.count),\"p50_ms\":\(pct(0.5)),\"p99_ms\":\(pct(0.99)),\"max_ms\":\(Double(sorted.last ?? 0) / 1e6),\"samples_ms\":[\(samples)]}\n"
        try AtomicFile.write(Array(text.utf8), to: path)
    }
}

ToscaSim.main()
