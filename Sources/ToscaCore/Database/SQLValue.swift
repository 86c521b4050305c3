/// A value as SQLite stores it: one of its five storage classes.
/// See <https://www.sqlite.org/datatype3.html>.
public enum SQLValue: Sendable, Hashable, CustomStringConvertible {
    case null
    case integer(Int64)
    case real(Double)
    case text(String)
    case blob([UInt8])

    public var description: String {
        switch self {
        case .null: return "NULL"
        case .integer(let v): return String(v)
        case .real(let v): return String(v)
        case .text(let v): return v
        case .blob(let v): return "x'" + v.map { String(format2: $0) }.joined() + "'"
        }
    }

    public var int64: Int64? {
        switch self {
        case .integer(let v): return v
        case .real(let v): return Int64(exactly: v)
        default: return nil
        }
    }
    public var int: Int? { int64.map { Int($0) } }
    public var double: Double? {
        switch self {
        case .integer(let v): return Double(v)
        case .real(let v): return v
        default: return nil
        }
    }
    public var string: String? {
        if case .text(let v) = self { return v }
        return nil
    }
    public var bytes: [UInt8]? {
        if case .blob(let v) = self { return v }
        return nil
    }
    public var isNull: Bool { if case .null = self { return true } else { return false } }
}

/// Types that bind to a statement parameter.
public protocol SQLBindable: Sendable {
    var sqlValue: SQLValue { get }
}
extension SQLValue: SQLBindable { public var sqlValue: SQLValue { self } }
extension Int: SQLBindable { public var sqlValue: SQLValue { .integer(Int64(self)) } }
extension Int64: SQLBindable { public var sqlValue: SQLValue { .integer(self) } }
extension Int32: SQLBindable { public var sqlValue: SQLValue { .integer(Int64(self)) } }
extension Double: SQLBindable { public var sqlValue: SQLValue { .real(self) } }
extension String: SQLBindable { public var sqlValue: SQLValue { .text(self) } }
extension Bool: SQLBindable { public var sqlValue: SQLValue { .integer(self ? 1 : 0) } }
extension Array: SQLBindable where Element == UInt8 { public var sqlValue: SQLValue { .blob(self) } }
extension Optional: SQLBindable where Wrapped: SQLBindable {
    public var sqlValue: SQLValue { self?.sqlValue ?? .null }
}

/// One result row: values by position and by column name.
public struct Row: Sendable {
    public let columns: [String]
    public let values: [SQLValue]

    public subscript(_ index: Int) -> SQLValue { values[index] }
    public subscript(_ name: String) -> SQLValue {
        guard let i = columns.firstIndex(of: name) else { return .null }
        return values[i]
    }
}

extension String {
    /// Two lowercase hex digits.
    public init(format2 byte: UInt8) {
        let digits: [Character] = Array("0123456789abcdef")
        self.init([digits[Int(byte >> 4)], digits[Int(byte & 0xF)]])
    }
}

/// Lowercase hex of bytes.
public func hexString<S: Sequence>(_ bytes: S) -> String where S.Element == UInt8 {
    var out = ""
    for b in bytes { out += String(format2: b) }
    return out
}
