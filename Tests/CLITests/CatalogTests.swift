import Foundation
import Testing
import ToscaCore
import TestSupport
import ToscaMaint

/// Timers/tosca-maint.catalog explains every MESSAGE_ID the tool emits, and only those.
@Suite struct CatalogTests {
    struct Entry { let id: String; let header: [String: String]; let body: String }

    static func entries() throws -> [Entry] {
        let text = try String(contentsOfFile: packageRoot() + "/Timers/tosca-maint.catalog", encoding: .utf8)
        var out: [Entry] = []
        let blocks = text.components(separatedBy: "\n-- ").dropFirst()
        for block in blocks {
            var lines = block.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            let id = lines.removeFirst().trimmingCharacters(in: .whitespaces)
            var header: [String: String] = [:]
            while let first = lines.first, !first.isEmpty, let colon = first.firstIndex(of: ":") {
                header[String(first[..<colon])] = first[first.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                lines.removeFirst()
            }
            out.append(Entry(id: id, header: header, body: lines.joined(separator: "\n").trimmingCharacters(in: .whitespacesAndNewlines)))
        }
        return out
    }

    @Test func everyMessageIDHasExactlyOneEntry() throws {
        let ids = try Self.entries().map(\.id)
        #expect(ids.count == Set(ids).count, "duplicate entries")
        #expect(Set(ids) == Set(MessageID.allCases.map(\.rawValue)))
        for e in try Self.entries() {
            #expect(e.id.count == 32 && e.id.allSatisfy(\.isHexDigit) && e.id == e.id.lowercased(), "\(e.id)")
            #expect(e.header["Subject"]?.isEmpty == false && e.header["Defined-By"] == "tosca-maint", "\(e.id)")
            #expect(e.header["Documentation"]?.isEmpty == false, "\(e.id) points nowhere")
            #expect(e.body.count > 80, "\(e.id): say what happened and what to do")
        }
    }

    /// Every MessageID case is logged somewhere in Sources/ (so every entry is used).
    @Test func everyMessageIDIsEmitted() throws {
        let sources = packageRoot() + "/Sources"
        var code = ""
        let e = FileManager.default.enumerator(atPath: sources)!
        while let rel = e.nextObject() as? String {
            guard rel.hasSuffix(".swift"), !rel.hasSuffix("Journal.swift") else { continue }
            code += try String(contentsOfFile: sources + "/" + rel, encoding: .utf8)
        }
        for id in MessageID.allCases {
            let name = String(describing: id)
            #expect(code.contains("id: .\(name)"), "MessageID.\(name) is never logged")
        }
    }

    /// Runbooks named by the catalog exist.
    @Test func documentationLinksPointAtRunbooks() throws {
        let runbooks = Set(listing(packageRoot() + "/Runbooks"))
        for e in try Self.entries() {
            for link in (e.header["Documentation"] ?? "").split(separator: " ") where link.hasPrefix("file:") {
                let name = PathName.name(String(link))
                #expect(link.hasPrefix("file:/usr/local/share/doc/tosca-maint/runbooks/") && runbooks.contains(name), "\(e.id): \(link)")
            }
        }
        for unit in listing(packageRoot() + "/Timers") where unit.hasSuffix(".service") {
            let s = try UnitFileTests.settings(packageRoot() + "/Timers/" + unit)
            for (k, v) in s where k == "Documentation" {
                for link in v.split(separator: " ") where link.hasPrefix("file:") {
                    #expect(runbooks.contains(PathName.name(String(link))), "\(unit): \(link)")
                }
            }
        }
    }
}
