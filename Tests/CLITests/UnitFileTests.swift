import Foundation
import Testing
import TestSupport
import ToscaCore
import ToscaMaint

/// The systemd units in Timers/, installed with a scratch PREFIX so that their ExecStart=
/// binaries exist: systemd-analyze accepts them, their exposure is at most 2.0, their
/// calendars parse, and the commands they run work on a real data folder.
@Suite struct UnitFileTests {
    /// Installs into `dir/prefix` (no DESTDIR), so the units name real files.
    static func installed(_ dir: TempDir) throws -> String {
        let prefix = dir.sub("prefix")
        let r = try runMake(["stage", "install"], stage: dir.sub("stage"), variables: ["PREFIX": prefix])
        guard r.status == 0 else { throw OracleError(message: "make install failed: \(r.output)") }
        return prefix
    }

    static func analyze() throws -> String { try #require(which("systemd-analyze"), "systemd-analyze is installed by scripts/install-deps.sh") }

    /// `Key=value` lines of a unit file, in order (comments and sections left out).
    static func settings(_ path: String) throws -> [(String, String)] {
        try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n").compactMap { line in
            let l = line.trimmingCharacters(in: .whitespaces)
            guard !l.hasPrefix("#"), !l.hasPrefix("["), let eq = l.firstIndex(of: "=") else { return nil }
            return (String(l[..<eq]), String(l[l.index(after: eq)...]))
        }
    }

    @Test func systemdAnalyzeVerifyPrintsNothing() throws {
        let dir = TempDir()
        let prefix = try Self.installed(dir)
        let unitDir = prefix + "/lib/systemd/system"
        for unit in InstallTests.units {
            // MANPATH lets the man:tosca-maint(1) link be checked against the installed page.
            let r = try run(try Self.analyze(), ["verify", unitDir + "/" + unit], environment: ["MANPATH": prefix + "/share/man", "SYSTEMD_PAGER": ""])
            #expect(r.status == 0 && r.output.isEmpty, "\(unit): \(r.output)")
        }
        // The check is real: a unit with a misspelt setting is reported.
        let bad = dir.sub("bad/tosca-maint-backup.service")
        try FileManager.default.createDirectory(atPath: dir.sub("bad"), withIntermediateDirectories: true)
        try (try String(contentsOfFile: unitDir + "/tosca-maint-backup.service", encoding: .utf8)).replacingOccurrences(of: "ProtectClock=", with: "ProtectClok=")
            .write(toFile: bad, atomically: true, encoding: .utf8)
        let r = try run(try Self.analyze(), ["verify", bad], environment: ["MANPATH": prefix + "/share/man"])
        #expect(r.output.contains("ProtectClok"), "\(r.output)")
    }

    @Test func exposureIsAtMostTwo() throws {
        let dir = TempDir()
        let prefix = try Self.installed(dir)
        for unit in InstallTests.units where unit.hasSuffix(".service") {
            let r = try run(try Self.analyze(), ["security", "--offline=true", "--threshold=20", "--no-pager", prefix + "/lib/systemd/system/" + unit])
            #expect(r.status == 0, "\(unit): \(r.output)")
            let line = try #require(r.stdout.split(separator: "\n").first { $0.contains("Overall exposure level") }, "\(r.output)")
            let value = line.split(separator: ":").last!.split(separator: " ").first.flatMap { Double($0) }
            let exposure = try #require(value, "\(line)")
            #expect(exposure <= 2.0, "\(unit): \(line)")
        }
    }

    @Test func everyOnCalendarParses() throws {
        var calendars: [String] = []
        for unit in InstallTests.units where unit.hasSuffix(".timer") {
            let s = try Self.settings(packageRoot() + "/Timers/" + unit)
            let onCalendar = s.filter { $0.0 == "OnCalendar" }.map(\.1)
            #expect(!onCalendar.isEmpty, "\(unit) has no OnCalendar")
            #expect(s.contains { $0 == ("Persistent", "true") } && s.contains { $0.0 == "RandomizedDelaySec" }, "\(unit)")
            calendars += onCalendar
        }
        for c in calendars {
            let r = try run(try Self.analyze(), ["calendar", c])
            #expect(r.status == 0 && r.stdout.contains("Next elapse:"), "\(c): \(r.output)")
        }
        // The check is real: a bad calendar is refused.
        #expect(try run(try Self.analyze(), ["calendar", "Sun *-*-* 25:00:00"]).status != 0)
    }

    /// What the issue asks of every service, read from the files themselves.
    @Test func everyServiceHasTheRequiredSettings() throws {
        for unit in InstallTests.units where unit.hasSuffix(".service") {
            let s = try Self.settings(packageRoot() + "/Timers/" + unit)
            func has(_ k: String, _ v: String? = nil) -> Bool { s.contains { $0.0 == k && (v == nil || $0.1 == v) } }
            for (k, v) in [("Type", "oneshot"), ("NotifyAccess", "main"), ("Nice", "19"), ("IOSchedulingClass", "idle"),
                           ("UMask", "0077"), ("User", "tosca")] {
                #expect(has(k, v), "\(unit) lacks \(k)=\(v)")
            }
            #expect(has("TimeoutStartSec"), "\(unit) lacks TimeoutStartSec")
            if unit == "tosca-maint-failure@.service" {
                // The alert reads no data and no key: no state folder, no credential.
                #expect(!has("StateDirectory") && !has("LoadCredentialEncrypted"), "\(unit)")
            } else {
                #expect(has("StateDirectory", "tosca") && has("StateDirectoryMode", "0700"), "\(unit)")
                #expect(has("OnFailure", "tosca-maint-failure@%N.service"), "\(unit)")
                #expect(has("SuccessExitStatus", "75"), "\(unit)")
                #expect(has("LoadCredentialEncrypted", "tosca-db-key:/etc/credstore.encrypted/tosca-db-key.cred"), "\(unit)")
                // The fallback that lets the unit run with no sealed key (a plaintext device).
                #expect(has("SetCredential", "\(KeySource.credentialName):\(KeySource.noCredentialMarker)"), "\(unit)")
            }
            if unit == "tosca-maint-verify.service" { #expect(has("After", "tosca-maint-backup.service")) }
        }
    }

    /// The ExecStart= (then ExecStopPost=) lines of the session, backup and verify units, run as systemd would run them
    /// (TOSCA_DATA_DIR from the unit, the credential folder holding the fallback marker or
    /// the sealed key), on a simulated data folder: plaintext, then encrypted.
    @Test(arguments: [false, true]) func theUnitsCommandsRunOnARealDataFolder(encrypted: Bool) throws {
        let dir = TempDir()
        let data = dir.sub("state/tosca")
        let creds = dir.sub("credentials")
        try FileManager.default.createDirectory(atPath: creds, withIntermediateDirectories: true)
        let credential = creds + "/" + KeySource.credentialName
        if encrypted {
            try writeKeyFile(dir.sub("key"))
            try simulatedData(data, keyFile: dir.sub("key"))
            try FileManager.default.copyItem(atPath: dir.sub("key"), toPath: credential)
        } else {
            try simulatedData(data)
            _ = FileManager.default.createFile(atPath: credential, contents: Data(KeySource.noCredentialMarker.utf8))
        }
        chmod(credential, 0o400)
        let metrics = dir.sub("node-exporter/tosca.prom")
        try FileManager.default.createDirectory(atPath: dir.sub("node-exporter"), withIntermediateDirectories: true)
        var environment = ["CREDENTIALS_DIRECTORY": creds, "TOSCA_METRICS_FILE": metrics]
        if encrypted {
            // An encrypted device bundles only to age recipients (the unit's default file
            // lives in /etc; the drop-in here points at a test one).
            environment["TOSCA_BUNDLE_RECIPIENTS"] = try ageKeypair(in: dir, name: "age-identity").recipients
        }
        // The simulated sessions left their markers: the session unit protects them (no
        // export configured: bundle and backup), whichever unit runs first.
        #expect(listing(data + "/spool/ended").count == 2)
        for unit in ["tosca-maint-session.service", "tosca-maint-backup.service", "tosca-maint-verify.service"] {
            let s = try Self.settings(packageRoot() + "/Timers/" + unit)
            var env: [String: String] = [:]
            for (k, v) in s where k == "Environment" {
                let parts = v.split(separator: "=", maxSplits: 1).map(String.init)
                env[parts[0]] = parts[1].replacingOccurrences(of: "%S", with: dir.sub("state"))
            }
            // What systemd adds, and the metrics folder as a drop-in would move it.
            env.merge(environment) { $1 }
            for (k, v) in s where k == "ExecStart" || k == "ExecStopPost" {
                let ignoreFailure = v.hasPrefix("-")
                var words = v.drop { $0 == "-" }.split(separator: " ").map(String.init)
                #expect(words.removeFirst() == "/usr/local/bin/tosca-maint")
                words = words.map { w in w.hasPrefix("${") ? env[String(w.dropFirst(2).dropLast())] ?? w : w }
                let r = try maint(words, environment: env)
                #expect(r.status == 0 || (ignoreFailure && r.status == 1), "\(unit): \(v) exited \(r.status): \(r.output)")
            }
        }
        #expect(listing(data + "/spool/ended").isEmpty)
        // The backup unit's metrics went where the unit says; the drill made status healthy.
        let prom = try String(contentsOfFile: metrics, encoding: .utf8)
        #expect(prom.contains("tosca_"), "\(prom)")
        let status = try maint(["status", "--data-dir", data], environment: ["CREDENTIALS_DIRECTORY": creds])
        #expect(status.status == 0, "\(status.output)")
        if encrypted {
            // The copy the units made is encrypted: the stock sqlite3 CLI cannot read it.
            let copy = try #require(listing(data + "/backups").first { $0.hasSuffix(".db") })
            #expect(try sqlite3(data + "/backups/" + copy, "SELECT count(*) FROM sqlite_master;").status != 0)
        }
    }
}
