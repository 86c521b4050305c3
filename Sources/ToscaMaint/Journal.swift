import CSystemd
import Foundation
import ToscaCore

/// One `MESSAGE_ID` per outcome (D9), so `journalctl MESSAGE_ID=...` finds every instance
/// and the message catalog can explain each.
public enum MessageID: String, Sendable, CaseIterable {
    case backupPublished = "3d8c0492583d453a93621d333cac843f"
    case backupFailed = "17de17d9b97d4da7991bc39d56f3b140"
    case chainHeadRecorded = "ad9dea7ed302449fb541b3c9db435ccf"
    case verifyPassed = "e16631f3a1de495b98628d30b49e775e"
    case verifyFailed = "929757e87b744bfe8f54e280e5395032"
    case liveCheckPassed = "981b2392b9674ec89694f454fb154e7d"
    case tamperingDetected = "d029bac41bf34174b71cc4253ea98be9"
    case quarantined = "fc3f5b91c9444003a9a7232ad6e98b98"
    case partialRemoved = "5fa3728c5a31479e884b359fec2c20c0"
    case pruneRemoved = "66636794cfe94e01bdbd9e13e95a87e9"
    case statusReport = "056d45c46329465bb7d64b9150eb0a2f"
    case restored = "d6191402d04047feb9cc4bd2a94a2da5"
    case drillPassed = "5f38eaa8090d405599c23b98f29df47a"
    case migrationStep = "725df2ebe4f94be895584c90713c07d1"
    case migrationApplied = "88f0958879a141ee8ab31b5ac086098f"
    case migrationFailed = "b426e604e2f64dbfabebb6d14615f9de"
    case snapshotTaken = "e1085d7f59664a658eb0a855e61ae1d9"
    case encrypted = "4b3c3df882cd414b9b532bf205021296"
    case drillFailed = "461d110dbac44114b0fd0766a4bbbec1"
    case rekeyed = "e373c453835346608466a56f905a5d43"
    case plaintextRemoved = "0671786132d34157a92f8ca408c6e931"
    case commandFailed = "239921ebec3c44a7b8fb04161df9e444"
    case unitFailed = "fa6ae65e826447c581e91da6298e5e56"
    case newTimelineAccepted = "f38e8ac456e046efb9936f95a09700fb"
    case bundlePublished = "96df69c3a38f4ca398c4a9682e4e374c"
    case bundleFailed = "4d26cc969a0e48c5a2db010e78191e2f"
    case exportInitialized = "9608870381ff44d9b4da55d175bf737c"
    case exportVerified = "08e3cb24d401417284b246d8f5567164"
    case sessionProtected = "ee1f2022e6b641abb68178e522fdaa6d"
    case sessionNotProtected = "1e848ab5714049228848b1fb9b343ae3"
    case markerSetAside = "da6353370ec74783a5872e827c8f5b91"
}

/// syslog priorities.
public enum Priority: Int, Sendable {
    case crit = 2, err = 3, warning = 4, notice = 5, info = 6, debug = 7
}

/// Where log lines go (D9): the journal through `sd_journal_sendv` under systemd, else
/// human-readable lines on stderr. Never a key, never bound values.
public final class Journal: @unchecked Sendable {
    public static let shared = Journal()

    /// Under systemd, with no terminal to talk to: stderr is the journal stream
    /// (`JOURNAL_STREAM` names its device and inode), or a unit (`INVOCATION_ID`) runs us
    /// with stderr elsewhere but not on a terminal. `systemd-run --pty` keeps its terminal.
    public let underSystemd: Bool

    init(environment: [String: String] = ProcessInfo.processInfo.environment) {
        underSystemd = Self.stderrIsJournal(environment["JOURNAL_STREAM"]) || (environment["INVOCATION_ID"] != nil && isatty(2) == 0)
    }

    /// Whether fd 2 is the stream `JOURNAL_STREAM` ("device:inode") names.
    static func stderrIsJournal(_ stream: String?) -> Bool {
        guard let parts = stream?.split(separator: ":"), parts.count == 2,
              let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return false }
        var st = stat()
        return fstat(2, &st) == 0 && UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
    }

    /// Logs one entry; `fields` become journal fields (`TOSCA_*` upper-case names).
    public func log(_ priority: Priority, _ message: String, id: MessageID? = nil, fields: [String: String] = [:]) {
        if underSystemd {
            var items = ["MESSAGE=\(message)", "PRIORITY=\(priority.rawValue)", "SYSLOG_IDENTIFIER=tosca-maint"]
            if let id { items.append("MESSAGE_ID=\(id.rawValue)") }
            for (k, v) in fields.sorted(by: { $0.key < $1.key }) { items.append("\(k)=\(v)") }
            Self.send(items)
        } else {
            let tag: String
            switch priority {
            case .crit, .err: tag = "error: "
            case .warning: tag = "warning: "
            default: tag = ""
            }
            FileHandle.standardError.write(Data("tosca-maint: \(tag)\(message)\n".utf8))
        }
    }

    static func send(_ items: [String]) {
        var buffers = items.map { Array($0.utf8) }
        var iovecs: [iovec] = []
        iovecs.reserveCapacity(buffers.count)
        for i in buffers.indices {
            buffers[i].withUnsafeMutableBytes { iovecs.append(iovec(iov_base: $0.baseAddress, iov_len: $0.count)) }
        }
        // The buffers outlive the call: they are held in `buffers` until after it.
        _ = iovecs.withUnsafeBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) }
        withExtendedLifetime(buffers) {}
    }

    /// `sd_notify(STATUS=...)` (a no-op outside systemd).
    public func status(_ text: String) {
        guard ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil else { return }
        _ = sd_notify(0, "STATUS=\(text)")
    }

    /// Asks systemd for more time for a long step (`EXTEND_TIMEOUT_USEC`).
    public func extendTimeout(seconds: Int) {
        guard ProcessInfo.processInfo.environment["NOTIFY_SOCKET"] != nil else { return }
        _ = sd_notify(0, "EXTEND_TIMEOUT_USEC=\(seconds * 1_000_000)")
    }
}

/// A progress bar on a terminal (stderr), `STATUS=` and timeout extension under systemd,
/// nothing otherwise.
public final class Progress: @unchecked Sendable {
    let label: String
    let isTerminal = isatty(2) == 1
    var lastDraw: UInt64 = 0
    var lastNotify: UInt64 = 0
    var drawn = false

    public init(_ label: String) { self.label = label }

    /// Reports `done` of `total` units.
    public func update(_ done: Int, of total: Int) {
        let now = monotonicNanoseconds()
        let pct = total > 0 ? min(100, done * 100 / total) : 0
        if isTerminal && now &- lastDraw > 100_000_000 {
            lastDraw = now
            let width = 30, filled = width * pct / 100
            let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
            FileHandle.standardError.write(Data("\r\(label) [\(bar)] \(pct)%".utf8))
            drawn = true
        }
        if now &- lastNotify > 2_000_000_000 {
            lastNotify = now
            Journal.shared.status("\(label): \(pct)%")
            Journal.shared.extendTimeout(seconds: 60)
        }
    }

    /// Clears the bar.
    public func finish() {
        if drawn { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
    }
}
