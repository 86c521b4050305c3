import Foundation
import Testing
import TestSupport

/// A datagram socket standing in for journald or systemd's notify socket.
final class DatagramSink {
    let path: String
    let fd: Int32
    init(path: String) throws {
        self.path = path
        fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { raw in
            let bytes = Array(path.utf8)
            for (i, b) in bytes.enumerated() where i < raw.count - 1 { raw[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { throw OracleError(message: "bind \(path): \(String(cString: strerror(errno)))") }
        var big: Int32 = 8 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, socklen_t(MemoryLayout<Int32>.size))
    }
    /// Every datagram received so far.
    func drain() -> [String] {
        var out: [String] = []
        var buf = [UInt8](repeating: 0, count: 1 << 20)
        while true {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            if n <= 0 { break }
            out.append(String(decoding: buf[0..<n], as: UTF8.self))
        }
        return out
    }
    deinit { close(fd); unlink(path) }
}

@Suite(.serialized) struct SystemdTests {
    /// Under systemd the tool logs to the journal (MESSAGE_ID per outcome) and reports
    /// STATUS= through sd_notify; stderr stays free of the human lines.
    @Test func underSystemdEntriesGoToTheJournalWithMessageIDs() throws {
        let socketPath = "/run/systemd/journal/socket"
        try #require(!FileManager.default.fileExists(atPath: socketPath), "a real journald runs here; this test needs its socket path free")
        try FileManager.default.createDirectory(atPath: "/run/systemd/journal", withIntermediateDirectories: true)
        let journal = try DatagramSink(path: socketPath)
        let dir = TempDir()
        let notify = try DatagramSink(path: dir.sub("notify"))
        let data = dir.sub("data")
        try simulatedData(data)
        let r = try maint(["backup", "--data-dir", data], environment: ["INVOCATION_ID": "0123456789abcdef", "NOTIFY_SOCKET": notify.path])
        #expect(r.status == 0, "\(r.output)")
        #expect(!r.stderr.contains("tosca-maint: published"), "human lines under systemd: \(r.stderr)")
        let entries = journal.drain()
        let published = entries.first { $0.contains("MESSAGE_ID=3d8c0492583d453a93621d333cac843f") }
        #expect(published != nil, "\(entries)")
        #expect(published?.contains("SYSLOG_IDENTIFIER=tosca-maint") == true)
        #expect(published?.contains("TOSCA_BACKUP_PATH=\(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines))") == true)
        let head = entries.first { $0.contains("MESSAGE_ID=ad9dea7ed302449fb541b3c9db435ccf") }
        #expect(head?.contains("TOSCA_CHAIN_SEQ=") == true && head?.contains("TOSCA_CHAIN_HASH=") == true)
        let statuses = notify.drain()
        #expect(statuses.contains { $0.hasPrefix("STATUS=") }, "\(statuses)")
        // A failure is logged with its own MESSAGE_ID and priority 3.
        let failed = try maint(["verify", "--data-dir", data, dir.sub("nothing.db")], environment: ["INVOCATION_ID": "x"])
        #expect(failed.status == 66)
        // A command's error is one structured entry (not a bare stderr line) with its status.
        let commandFailed = journal.drain().first { $0.contains("MESSAGE_ID=239921ebec3c44a7b8fb04161df9e444") }
        #expect(commandFailed?.contains("TOSCA_EXIT_STATUS=66") == true && commandFailed?.contains("TOSCA_HINT=tosca-maint list") == true,
                "\(String(describing: commandFailed))")
        #expect(!failed.stderr.contains("Error:"), "\(failed.stderr)")
        let copy = data + "/backups/" + listing(data + "/backups").first { $0.hasSuffix(".db") }!
        try flipByte(copy, at: 4200)
        let bad = try maint(["verify", "--latest", "--data-dir", data], environment: ["INVOCATION_ID": "x"])
        #expect(bad.status == 65)
        let failure = journal.drain().first { $0.contains("MESSAGE_ID=929757e87b744bfe8f54e280e5395032") }
        #expect(failure?.contains("PRIORITY=3") == true, "\(String(describing: failure))")
    }

    /// tosca-maint-failure@.service's command: one crit entry with its own MESSAGE_ID naming
    /// the failed unit and its result, from the MONITOR_* variables systemd passes.
    @Test func alertNamesTheFailedUnitAndItsResult() throws {
        let socketPath = "/run/systemd/journal/socket"
        try #require(!FileManager.default.fileExists(atPath: socketPath), "a real journald runs here; this test needs its socket path free")
        try FileManager.default.createDirectory(atPath: "/run/systemd/journal", withIntermediateDirectories: true)
        let journal = try DatagramSink(path: socketPath)
        let r = try maint(["alert", "--unit", "tosca-maint-backup.service"], environment: [
            "INVOCATION_ID": "1", "MONITOR_UNIT": "tosca-maint-backup.service", "MONITOR_SERVICE_RESULT": "exit-code",
            "MONITOR_EXIT_CODE": "exited", "MONITOR_EXIT_STATUS": "74", "MONITOR_INVOCATION_ID": "5f0c0de1"])
        #expect(r.status == 0, "\(r.output)")
        let entry = try #require(journal.drain().first { $0.contains("MESSAGE_ID=fa6ae65e826447c581e91da6298e5e56") })
        for field in ["PRIORITY=2", "TOSCA_FAILED_UNIT=tosca-maint-backup.service", "TOSCA_SERVICE_RESULT=exit-code",
                      "TOSCA_EXIT_STATUS=74", "TOSCA_FAILED_INVOCATION_ID=5f0c0de1", "I/O error, disk full included",
                      "journalctl _SYSTEMD_INVOCATION_ID=5f0c0de1"] {
            #expect(entry.contains(field), "\(field) missing from \(entry)")
        }
        // Outside systemd the same alert is a line on stderr; a missing --unit is a usage error.
        let plain = try maint(["alert", "--unit", "tosca-maint-verify.service"], environment: ["MONITOR_SERVICE_RESULT": "signal", "MONITOR_EXIT_CODE": "killed", "MONITOR_EXIT_STATUS": "KILL"])
        #expect(plain.status == 0 && plain.stderr.contains("tosca-maint-verify.service failed (result signal, killed KILL): killed by SIGKILL"), "\(plain.output)")
        #expect(try maint(["alert"]).status == 64)
    }
}
