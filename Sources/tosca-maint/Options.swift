import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

/// Options every command takes.
struct SharedOptions: ParsableArguments {
    @Option(name: .long, help: "Data folder holding tosca.db (default: $TOSCA_DATA_DIR, else ./data).")
    var dataDir: String?

    @Option(name: .long, help: "Key file of an encrypted database: 64 hex characters, mode 0400 (default: the tosca-db-key systemd credential, if any).")
    var keyFile: String?

    @Flag(name: .long, help: "Print the result as JSON on stdout.")
    var json = false

    /// The data folder, which must exist (66 otherwise; 64 for an empty `--data-dir`).
    var dataDirectory: String { get throws { try existingDataFolder(dataDir) } }
    /// The key: `--key-file`, else the `tosca-db-key` credential. A credential handed to a
    /// unit on a device whose database is still plaintext (before the cutover) is set
    /// aside with a notice; an explicit `--key-file` for a plaintext database is an error.
    func key() throws -> DatabaseKey? {
        if keyFile == nil, let key = try KeySource.resolve(keyFile: nil) {
            let db = try dataDirectory + "/tosca.db"
            if (try? FileHeader.classify(path: db)) == .plaintext {
                Journal.shared.log(.notice, "\(db) is plaintext: the \(KeySource.credentialName) credential is not used")
                return nil
            }
            return key
        }
        return try KeySource.resolve(keyFile: keyFile)
    }
}

extension SharedOptions {
    /// The data folder, the key, then `.maint.lock`, in that order: the key is read before
    /// the lock, which may make a root run continue as the data folder's owner (who may not
    /// read a key file of root's).
    func beginMaintenance() throws -> (data: String, key: DatabaseKey?, lock: FileLock) {
        let data = try dataDirectory
        let key = try key()
        let lock = try takeMaintenanceLock(dataDirectory: data)
        do {
            // Copies an interrupted encrypt or rekey replaced in place get their manifest
            // before anything reads them (verify, quarantine); prune tidies the rest.
            try finishPendingReplacements(in: try Catalog.scan(dataDirectory: data))
        } catch { lock.unlock(); throw error }
        Sealing.sealBestEffort(dataDirectory: data, key: key)
        return (data, key, lock)
    }
}

/// Runs a command body, turning errors into `Error:`/`Try:` and the exit codes of D10.
func runReporting(_ body: () throws -> Int32) throws {
    setPrivateUmask()
    // A file-size limit must surface as EFBIG (exit 74), not kill us mid-write.
    signal(SIGXFSZ, SIG_IGN)
    let status: Int32
    do { status = try body() } catch { throw ExitCode(report(error, program: "tosca-maint")) }
    if status != 0 { throw ExitCode(status) }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try enc.encode(value), as: UTF8.self))
}
