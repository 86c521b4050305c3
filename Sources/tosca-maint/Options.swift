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

    /// The data folder, which must exist (66 otherwise; 64 for an empty `--data-dir`), with
    /// its key: `--key-file`, else the `tosca-db-key` credential. A credential handed to a
    /// unit on a device whose database is still plaintext (before the cutover) is set
    /// aside with a notice; an explicit `--key-file` for a plaintext database is an error.
    func folder() throws -> DataFolder {
        let folder = try DataFolder.existing(dataDir)
        if keyFile == nil, let key = try KeySource.resolve(keyFile: nil) {
            if (try? FileHeader.classify(path: folder.database)) == .plaintext {
                Journal.shared.log(.notice, "\(folder.database) is plaintext: the \(KeySource.credentialName) credential is not used")
                return folder
            }
            return folder.with(key: key)
        }
        return folder.with(key: try KeySource.resolve(keyFile: keyFile))
    }

    /// ``folder()`` for a command that writes: the key is read first (a key file may be
    /// root's, mode 0400), then a root run continues as the data folder's owner.
    func writableFolder() throws -> DataFolder {
        let folder = try folder()
        try folder.continueAsOwnerIfRoot()
        return folder
    }

    /// ``writableFolder()``, then `.maint.lock`; copies an interrupted encrypt or rekey
    /// replaced in place get their manifest before anything reads them, and rows other
    /// programs inserted are sealed when the recorder is not running.
    func beginMaintenance() throws -> (folder: DataFolder, lock: FileLock) {
        let folder = try writableFolder()
        let lock = try folder.takeMaintenanceLock()
        do {
            try finishPendingReplacements(in: try folder.scanCatalog())
        } catch { lock.unlock(); throw error }
        Sealing.sealBestEffort(folder)
        return (folder, lock)
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

/// The typed confirmation of a change: nothing is asked with `--yes`; without a terminal,
/// 64 with `refusal`; on a terminal the admin types `word`. Returns whether they did.
func confirmTyped(_ word: String, yes: Bool, refusal: String, hint: String? = nil) throws -> Bool {
    if yes { return true }
    guard isatty(0) == 1 else { throw ToolFailure(.usage, refusal, hint: hint) }
    print("Type '\(word)' to go on: ", terminator: "")
    return readLine()?.trimmingCharacters(in: .whitespaces) == word
}
