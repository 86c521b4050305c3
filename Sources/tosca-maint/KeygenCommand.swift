import ArgumentParser
import Foundation
import ToscaCore
import ToscaMaint

struct KeygenCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "keygen",
        abstract: "Write a new raw 256-bit SQLCipher key: 64 hex characters, mode 0400.",
        discussion: """
            32 random bytes from the kernel. Never overwrites (73). Seal it for the units with \
            systemd-creds and keep the plaintext key file offline.

            Example:
              tosca-maint keygen --out /root/tosca-db-key
            """)
    @Option(help: "The key file to create.") var out: String
    @Flag(help: "Print the result as JSON on stdout.") var json = false

    func run() throws {
        try runReporting {
            let id = try KeyGen.write(to: out)
            if json { try printJSON(["path": out, "key_id": id]); return 0 }
            print("""
                wrote \(out) (mode 0400, key id \(id))
                Seal it for the units (credential name \(KeySource.credentialName)):
                  systemd-creds encrypt --name=\(KeySource.credentialName) \(out) /etc/credstore.encrypted/\(KeySource.credentialName).cred
                then keep \(out) offline (the cutover and key rotation take --key-file).
                """)
            return 0
        }
    }
}
