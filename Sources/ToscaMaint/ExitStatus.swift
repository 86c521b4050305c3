import Foundation
import ToscaCore

/// Exit codes (ARCHITECTURE D10; sysexits where one fits).
public enum ExitStatus: Int32, Sendable {
    case ok = 0
    case unhealthy = 1
    case usage = 64
    case dataError = 65
    case noInput = 66
    case cantCreate = 73
    case ioError = 74
    case tempFail = 75
    case noPermission = 77
    case config = 78
}

/// An error the CLI reports as `Error: <message>` and `Try: <hint>`, exiting with `status`.
public struct ToolFailure: Error, CustomStringConvertible, Sendable {
    public let status: ExitStatus
    public let message: String
    public let hint: String?
    public init(_ status: ExitStatus, _ message: String, hint: String? = nil) {
        self.status = status
        self.message = message
        self.hint = hint
    }
    public var description: String { message }
}

/// Maps any error of ToscaCore or ToscaMaint to its exit status, message and hint.
public func classify(_ error: any Error) -> ToolFailure {
    switch error {
    case let e as ToolFailure: return e
    case let e as DatabaseOpenError:
        switch e {
        case .missing: return ToolFailure(.noInput, e.description, hint: "check --data-dir (or $TOSCA_DATA_DIR); the database is <data>/tosca.db")
        case .notPlaintext: return ToolFailure(.noPermission, e.description, hint: "pass --key-file with the database's key")
        case .wrongKey: return ToolFailure(.noPermission, e.description, hint: "check that --key-file is the key this database was encrypted with")
        case .keyGivenForPlaintext: return ToolFailure(.noPermission, e.description, hint: "leave out --key-file (and unset the tosca-db-key credential) for a plaintext database")
        case .notADatabase: return ToolFailure(.dataError, e.description, hint: "the file is damaged: restore it from a verified backup")
        }
    case let e as LayoutFolderError: return ToolFailure(.cantCreate, e.description, hint: "make it a real folder inside the data folder (a mount point is fine); move its files there by hand")
    case let e as KeyFileError: return ToolFailure(.noPermission, e.description, hint: "the key file must be 64 hex characters, owned by you or root, mode 0400 or 0600")
    case let e as SQLCipherTooOld: return ToolFailure(.config, e.description, hint: "install libsqlcipher-dev and sqlcipher from bookworm-backports (scripts/install-deps.sh)")
    case let e as MigrationError:
        switch e {
        case .checksumMismatch, .unrecognisedSchema, .foreignKeyViolations: return ToolFailure(.dataError, e.description)
        case .unknownMigration: return ToolFailure(.config, e.description, hint: "use the software version that wrote this database")
        case .unknownTarget: return ToolFailure(.usage, e.description)
        case .schemaBehind: return ToolFailure(.config, e.description, hint: "tosca-maint migrate up")
        }
    case let e as RecorderError:
        switch e {
        case .locked: return ToolFailure(.tempFail, e.description, hint: "stop the other recorder or wait for the maintenance run to finish, then retry")
        case .noDatabase: return ToolFailure(.noInput, e.description)
        case .invalidArgument, .unknownSession: return ToolFailure(.usage, e.description)
        case .refused: return ToolFailure(.noPermission, e.description)
        }
    case let e as FileLockError:
        switch e {
        case .held: return ToolFailure(.tempFail, e.description, hint: "retry later")
        case .cannotOpen: return ToolFailure(.cantCreate, e.description)
        }
    case let e as SQLiteError:
        switch e {
        case _ where e.isAny(of: .corrupt, .notadb): return ToolFailure(.dataError, "database is damaged: \(e.description)", hint: "restore it from a verified backup")
        case _ where e.isA(.constraint): return ToolFailure(.dataError, "a row was refused: \(e.description)")
        case _ where e.isAny(of: .full, .ioerr): return ToolFailure(.ioError, e.description)
        case _ where e.isAny(of: .busy, .locked): return ToolFailure(.tempFail, e.description, hint: "retry later")
        // D11: a WAL database cannot be opened without write access to its folder (-shm).
        case _ where e.isA(.cantopen): return ToolFailure(.cantCreate, e.description, hint: "maintenance needs write access to the data folder")
        case _ where e.isAny(of: .perm, .readonly, .auth): return ToolFailure(.cantCreate, e.description)
        // A failure inside an SQL function (sqlcipher_export) reaches us as SQLITE_ERROR
        // with the message of the real cause: a full disk or a failed write is I/O (74).
        case _ where e.isA(.error) && (e.message.contains("disk is full") || e.message.contains("disk I/O error")):
            return ToolFailure(.ioError, e.description, hint: "free space on the data folder's filesystem; nothing was changed")
        case _ where e.isA(.error): return ToolFailure(.dataError, e.description)
        default: return ToolFailure(.ioError, e.description)
        }
    case let e as POSIXFailure:
        switch e.code {
        case ENOENT: return ToolFailure(.noInput, e.description)
        case EACCES, EPERM, EROFS, EEXIST: return ToolFailure(.cantCreate, e.description)
        default: return ToolFailure(.ioError, e.description)
        }
    default:
        return ToolFailure(.ioError, String(describing: error))
    }
}

/// Prints `Error: ...` (and `Try: ...`) to stderr and returns the exit status.
public func report(_ error: any Error, program: String) -> Int32 {
    var f = classify(error)
    // A root run that became the data folder's owner reads and writes as that user: a path
    // only root can reach looks missing or unwritable to it.
    if let owner = DataOwner.switchedTo, [.noInput, .cantCreate, .noPermission].contains(f.status) {
        f = ToolFailure(f.status, f.message, hint: (f.hint.map { $0 + "; " } ?? "") + "this run continued as \(owner), the data folder's owner: paths it reads or writes must be reachable by \(owner)")
    }
    if Journal.shared.underSystemd {
        // One structured entry (D9): the exit status and the hint as fields, so the
        // failure@ alert, `journalctl -x` and the catalog can point at it.
        var fields = ["TOSCA_EXIT_STATUS": String(f.status.rawValue), "TOSCA_PROGRAM": program]
        if let hint = f.hint { fields["TOSCA_HINT"] = hint }
        Journal.shared.log(.err, "\(f.message)\(f.hint.map { " (try: \($0))" } ?? "")", id: .commandFailed, fields: fields)
    } else {
        var text = "Error: \(f.message)\n"
        if let hint = f.hint { text += "Try: \(hint)\n" }
        FileHandle.standardError.write(Data(text.utf8))
    }
    return f.status.rawValue
}
