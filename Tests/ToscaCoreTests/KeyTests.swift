import Foundation
import Testing
import TestSupport
@testable import ToscaCore

@Suite struct KeyTests {
    @Test func aGoodKeyFileIsReadWithOrWithoutNewline() throws {
        let dir = TempDir()
        let hex = try writeKeyFile(dir.sub("k"), mode: 0o400)
        let key = try KeySource.read(path: dir.sub("k"))
        #expect(key.description == "DatabaseKey(redacted)")
        #expect(!String(describing: key).contains(hex))
        _ = FileManager.default.createFile(atPath: dir.sub("k2"), contents: Data(hex.uppercased().utf8))
        chmod(dir.sub("k2"), 0o600)
        #expect(try KeySource.read(path: dir.sub("k2")).keyID == key.keyID)
    }

    @Test func keyIDIsStableAndDiffersPerKey() throws {
        let a = try DatabaseKey(hex: Array(String(repeating: "01", count: 32).utf8))
        let b = try DatabaseKey(hex: Array(String(repeating: "02", count: 32).utf8))
        #expect(a.keyID == (try DatabaseKey(hex: Array(String(repeating: "01", count: 32).utf8))).keyID)
        #expect(a.keyID != b.keyID)
        #expect(a.keyID.count == 16)
        #expect(!a.keyID.contains("0101"))
    }

    @Test func badKeyFilesAreRefused() throws {
        let dir = TempDir()
        let hex = try writeKeyFile(dir.sub("open"), mode: 0o644)
        #expect(throws: KeyFileError.self) { _ = try KeySource.read(path: dir.sub("open")) }
        do { _ = try KeySource.read(path: dir.sub("open")) } catch let e as KeyFileError {
            guard case .tooOpen = e else { Issue.record("wrong error \(e)"); return }
        }
        try writeKeyFile(dir.sub("group"), mode: 0o440, hex: hex)
        #expect(throws: KeyFileError.self) { _ = try KeySource.read(path: dir.sub("group")) }
        try writeKeyFile(dir.sub("good"), mode: 0o400, hex: hex)
        symlink(dir.sub("good"), dir.sub("link"))
        #expect(throws: KeyFileError.notRegularFile(path: dir.sub("link"))) { _ = try KeySource.read(path: dir.sub("link")) }
        mkdir(dir.sub("folder"), 0o700)
        #expect(throws: KeyFileError.notRegularFile(path: dir.sub("folder"))) { _ = try KeySource.read(path: dir.sub("folder")) }
        for (name, content) in [("short", String(hex.dropLast())), ("long", hex + "0"), ("nonhex", String(hex.dropLast()) + "g"),
                                ("twonl", hex + "\n\n"), ("passphrase", "correct horse battery staple")] {
            _ = FileManager.default.createFile(atPath: dir.sub(name), contents: Data(content.utf8))
            chmod(dir.sub(name), 0o400)
            #expect(throws: KeyFileError.badFormat(path: dir.sub(name))) { _ = try KeySource.read(path: dir.sub(name)) }
        }
        #expect(throws: KeyFileError.self) { _ = try KeySource.read(path: dir.sub("missing")) }
    }

    @Test func keyComesFromTheSystemdCredentialWhenNoFileIsGiven() throws {
        let dir = TempDir()
        try writeKeyFile(dir.sub("tosca-db-key"), mode: 0o400)
        let viaCred = try KeySource.resolve(keyFile: nil, environment: ["CREDENTIALS_DIRECTORY": dir.path])
        #expect(viaCred?.keyID == (try KeySource.read(path: dir.sub("tosca-db-key"))).keyID)
        #expect(try KeySource.resolve(keyFile: nil, environment: [:]) == nil)
        let empty = TempDir()
        #expect(try KeySource.resolve(keyFile: nil, environment: ["CREDENTIALS_DIRECTORY": empty.path]) == nil)
    }

    /// The units' `SetCredential=tosca-db-key:none` fallback means "no key"; the marker is
    /// honoured only for the credential, never for --key-file, and nothing else is taken for it.
    @Test func theUnitsNoCredentialMarkerMeansNoKey() throws {
        for content in ["none", "none\n"] {
            let dir = TempDir()
            _ = FileManager.default.createFile(atPath: dir.sub("tosca-db-key"), contents: Data(content.utf8))
            chmod(dir.sub("tosca-db-key"), 0o400)
            #expect(try KeySource.resolve(keyFile: nil, environment: ["CREDENTIALS_DIRECTORY": dir.path]) == nil)
            #expect(throws: KeyFileError.self) { try KeySource.resolve(keyFile: dir.sub("tosca-db-key")) }
        }
        for content in ["None", "none\n\n", "nonex", ""] {
            let dir = TempDir()
            _ = FileManager.default.createFile(atPath: dir.sub("tosca-db-key"), contents: Data(content.utf8))
            chmod(dir.sub("tosca-db-key"), 0o400)
            #expect(throws: KeyFileError.self, "\(content.debugDescription)") {
                try KeySource.resolve(keyFile: nil, environment: ["CREDENTIALS_DIRECTORY": dir.path])
            }
        }
    }

    /// systemd 254 and later grant the unit's user a root-owned credential by an ACL (group
    /// read in stat): accepted from $CREDENTIALS_DIRECTORY, never from --key-file.
    @Test func aCredentialReadableThroughAnACLIsAccepted() throws {
        let dir = TempDir()
        try writeKeyFile(dir.sub("tosca-db-key"), mode: 0o440)
        #expect(try KeySource.resolve(keyFile: nil, environment: ["CREDENTIALS_DIRECTORY": dir.path]) != nil)
        #expect(throws: KeyFileError.self) { try KeySource.resolve(keyFile: dir.sub("tosca-db-key")) }
        chmod(dir.sub("tosca-db-key"), 0o460)
        #expect(throws: KeyFileError.self) { try KeySource.resolve(keyFile: nil, environment: ["CREDENTIALS_DIRECTORY": dir.path]) }
    }
}
