import Foundation
import Testing
import TestSupport
@testable import ToscaCore

@Suite struct DatabaseTests {
    @Test func valuesRoundTripThroughEveryStorageClass() throws {
        let dir = TempDir()
        let db = try Database(path: dir.sub("t.db"), options: .init(create: true))
        try db.execute("CREATE TABLE t (a, b, c, d, e)")
        let values: [SQLValue] = [.null, .integer(-9_007_199_254_740_993), .real(-0.1), .text("ünï\"code'\n"), .blob([0, 1, 255])]
        try db.execute("INSERT INTO t VALUES (?, ?, ?, ?, ?)", values)
        let row = try #require(try db.rows("SELECT a, b, c, d, e FROM t").first)
        #expect(row.values == values)
        #expect(row["d"] == .text("ünï\"code'\n"))
        // The stock CLI sees the same bytes.
        #expect(try sqlite3Value(dir.sub("t.db"), "SELECT hex(d), hex(e), b FROM t") == "C3BC6EC3AF22636F6465270A|0001FF|-9007199254740993")
    }

    /// `oneThread` reaches SQLite (no per-call mutex), and such a connection reads what a
    /// serialized one reads.
    @Test func oneThreadConnectionsHaveNoMutexOfTheirOwn() throws {
        let dir = TempDir()
        let path = dir.sub("t.db")
        let db = try Database(path: path, options: .init(create: true))
        try db.execute("CREATE TABLE t (a, b)")
        try db.execute("INSERT INTO t VALUES (1, 'x'), (2, X'00FF')")
        #expect(db.isSerialized)
        let alone = try Database(path: path, options: .init(readOnly: true, oneThread: true))
        #expect(!alone.isSerialized)
        #expect(try alone.rows("SELECT a, b FROM t ORDER BY a").map(\.values) == db.rows("SELECT a, b FROM t ORDER BY a").map(\.values))
    }

    /// The foreign-key violation count D12 records equals the rows `PRAGMA foreign_key_check`
    /// reports (the stock CLI as oracle), for keys of every shape and values of every
    /// storage class: the counted shortcut for rowid parents and the pragma for the rest.
    @Test func foreignKeyViolationCountIsThePragmasCount() throws {
        let dir = TempDir()
        let path = dir.sub("fk.db")
        let db = try Database(path: path, options: .init(create: true))
        try db.execute("PRAGMA foreign_keys = OFF")
        for sql in [
            "CREATE TABLE parent (id INTEGER PRIMARY KEY, code TEXT UNIQUE, a INT, b INT, UNIQUE (a, b))",
            "CREATE TABLE desc_parent (id INTEGER PRIMARY KEY DESC)",
            "CREATE TABLE wr_parent (id INTEGER PRIMARY KEY) WITHOUT ROWID",
            "CREATE TABLE by_rowid (k INTEGER REFERENCES parent (id), note TEXT)",
            "CREATE INDEX by_rowid_k ON by_rowid (k)",
            "CREATE TABLE implicit (k INT REFERENCES parent)",
            "CREATE TABLE untyped (k REFERENCES parent (id))",
            "CREATE TABLE by_text (c TEXT REFERENCES parent (code))",
            "CREATE TABLE composite (a INT, b INT, FOREIGN KEY (a, b) REFERENCES parent (a, b))",
            "CREATE TABLE nowhere (k INTEGER REFERENCES gone (id))",
            "CREATE TABLE to_desc (k INTEGER REFERENCES desc_parent (id))",
            "CREATE TABLE to_wr (k INTEGER REFERENCES wr_parent (id))",
            "CREATE TABLE mixed (k INTEGER REFERENCES parent (id), c TEXT REFERENCES parent (code))",
            "INSERT INTO parent VALUES (1, 'one', 1, 1), (2, 'two', 2, 2), (7, 'seven', 7, 7)",
            "INSERT INTO desc_parent VALUES (1)",
            "INSERT INTO wr_parent VALUES (1)",
        ] { try db.execute(sql) }
        let values = ["1", "3", "NULL", "'abc'", "5.5", "7.0", "' 7 '", "X'07'", "'2'", "-1"]
        for v in values {
            for t in ["by_rowid", "implicit", "untyped", "nowhere", "to_desc", "to_wr"] {
                try db.execute("INSERT INTO \(t) (k) VALUES (\(v))")
            }
            try db.execute("INSERT INTO mixed VALUES (\(v), 'one')")
            try db.execute("INSERT INTO mixed VALUES (1, \(v))")
            try db.execute("INSERT INTO by_text VALUES (\(v))")
            try db.execute("INSERT INTO composite VALUES (\(v), 1)")
        }
        let oracle = Int(try sqlite3Value(path, "SELECT count(*) FROM pragma_foreign_key_check;"))!
        #expect(oracle > 50)
        #expect(try db.foreignKeyViolationCount() == oracle)
        #expect(try db.rows("PRAGMA foreign_key_check").count == oracle)
        // The shortcut is taken where it applies, and the pragma everywhere else.
        #expect(try db.rowidKey(of: "parent") == "id")
        #expect(try db.rowidKey(of: "desc_parent") == nil)
        #expect(try db.rowidKey(of: "wr_parent") == nil)
        #expect(try db.rowidKey(of: "gone") == nil)
    }

    @Test func errorsCarryCodesAndMatchPrimaryCode() throws {
        let db = try Database(path: ":memory:", options: .init(create: true))
        try db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v NOT NULL)")
        var matched = false
        do {
            try db.execute("INSERT INTO t (v) VALUES (?)", [.null])
        } catch SQLiteError.constraint {
            matched = true
        }
        #expect(matched)
        do {
            try db.execute("INSERT INTO t (v) VALUES (?)", [.null])
            Issue.record("no error")
        } catch let e as SQLiteError {
            #expect(e.primaryCode == 19)
            #expect(e.extendedCode == 1299) // SQLITE_CONSTRAINT_NOTNULL
            #expect(e.sql?.contains("INSERT INTO t") == true)
        }
        #expect(throws: SQLiteError.self) { try db.execute("SELEC nonsense") }
    }

    @Test func transactionRollsBackWhenBodyThrows() throws {
        let db = try Database(path: ":memory:", options: .init(create: true))
        try db.execute("CREATE TABLE t (v)")
        struct Boom: Error {}
        #expect(throws: Boom.self) {
            try db.transaction {
                try db.execute("INSERT INTO t VALUES (1)", [])
                throw Boom()
            }
        }
        #expect(try db.scalar("SELECT count(*) FROM t") == .integer(0))
        #expect(!db.inTransaction)
        try db.transaction { try db.execute("INSERT INTO t VALUES (2)", []) }
        #expect(try db.scalar("SELECT count(*) FROM t") == .integer(1))
    }

    @Test func everyConnectionGetsTheLivePragmas() throws {
        let dir = TempDir()
        let db = try Database(path: dir.sub("p.db"), options: .init(create: true, walMode: true))
        #expect(try db.scalar("PRAGMA foreign_keys") == .integer(1))
        #expect(try db.scalar("PRAGMA temp_store") == .integer(2))
        #expect(try db.scalar("PRAGMA synchronous") == .integer(2))
        #expect(try db.scalar("PRAGMA journal_mode") == .text("wal"))
        #expect(try db.scalar("PRAGMA busy_timeout")?.int ?? 0 > 0)
        let version = try SQLCipherLibrary.checkVersion()
        #expect(version.hasPrefix("4."))
        #expect(SQLCipherLibrary.sqliteVersion.hasPrefix("3.46"))
    }

    @Test func openRefusesWhatD14Refuses() throws {
        let dir = TempDir()
        #expect(throws: DatabaseOpenError.missing(path: dir.sub("none.db"))) {
            _ = try Database(path: dir.sub("none.db"))
        }
        // Not plaintext SQLite, no key → "give the key".
        _ = FileManager.default.createFile(atPath: dir.sub("junk.db"), contents: Data((0..<4096).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) }))
        #expect(throws: DatabaseOpenError.notPlaintext(path: dir.sub("junk.db"))) {
            _ = try Database(path: dir.sub("junk.db"))
        }
        // Encrypted with one key, opened with another → wrong key.
        let k1 = try DatabaseKey(hex: Array(String(repeating: "ab", count: 32).utf8))
        let k2 = try DatabaseKey(hex: Array(String(repeating: "cd", count: 32).utf8))
        do {
            let db = try Database(path: dir.sub("enc.db"), options: .init(create: true, key: k1))
            try db.execute("CREATE TABLE t (v); INSERT INTO t VALUES (42);")
        }
        #expect(throws: DatabaseOpenError.wrongKey(path: dir.sub("enc.db"))) {
            _ = try Database(path: dir.sub("enc.db"), options: .init(key: k2))
        }
        #expect(try Database(path: dir.sub("enc.db"), options: .init(key: k1)).scalar("SELECT v FROM t") == .integer(42))
        // Plaintext with a key → refused, never silently opened.
        _ = try Database(path: dir.sub("plain.db"), options: .init(create: true)).execute("CREATE TABLE t (v)")
        #expect(throws: DatabaseOpenError.keyGivenForPlaintext(path: dir.sub("plain.db"))) {
            _ = try Database(path: dir.sub("plain.db"), options: .init(key: k1))
        }
        // The stock sqlite3 CLI cannot read the encrypted file; the sqlcipher CLI can.
        #expect(try sqlite3(dir.sub("enc.db"), "SELECT v FROM t").status != 0)
        let r = try sqlcipher(dir.sub("enc.db"), keyHex: String(repeating: "ab", count: 32), "SELECT v FROM t;")
        #expect(r.stdout.contains("42"))
    }

    @Test func foreignKeyViolationsNameTableRowAndKey() throws {
        let db = try Database(path: ":memory:", options: .init(create: true))
        try db.execute("PRAGMA foreign_keys = OFF")
        try db.execute("CREATE TABLE p (id INTEGER PRIMARY KEY); CREATE TABLE c (id INTEGER PRIMARY KEY, pid INTEGER REFERENCES p (id)); INSERT INTO c VALUES (7, 0);")
        let v = try db.foreignKeyViolations()
        #expect(v == [ForeignKeyViolation(table: "c", rowid: 7, parent: "p", columns: ["pid=0"])])
        #expect(v[0].description == "c rowid 7: pid=0 has no row in p")
    }
}
