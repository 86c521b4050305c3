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

    var dataDirectory: String { resolveDataDirectory(dataDir) }
    func key() throws -> DatabaseKey? { try KeySource.resolve(keyFile: keyFile) }
}

/// Runs a command body, turning errors into `Error:`/`Try:` and the exit codes of D10.
func runReporting(_ body: () throws -> Int32) throws {
    setPrivateUmask()
    let status: Int32
    do { status = try body() } catch { throw ExitCode(report(error, program: "tosca-maint")) }
    if status != 0 { throw ExitCode(status) }
}

func printJSON<T: Encodable>(_ value: T) throws {
    let enc = JSONEncoder()
    enc.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try enc.encode(value), as: UTF8.self))
}
