import Crypto

/// SHA-256 of `bytes`, lowercase hex.
public func sha256Hex(_ bytes: some Sequence<UInt8>) -> String {
    var hasher = SHA256()
    hasher.update(data: Array(bytes))
    return hexString(hasher.finalize())
}

/// SHA-256 of `bytes`, 32 raw bytes.
public func sha256(_ bytes: [UInt8]) -> [UInt8] {
    Array(SHA256.hash(data: bytes))
}

/// Parses lowercase or uppercase hex; `nil` when malformed.
public func bytesFromHex(_ text: String) -> [UInt8]? {
    let chars = Array(text.utf8)
    guard chars.count % 2 == 0 else { return nil }
    var out: [UInt8] = []
    out.reserveCapacity(chars.count / 2)
    var i = 0
    while i < chars.count {
        guard DatabaseKey.isHex(chars[i]), DatabaseKey.isHex(chars[i + 1]) else { return nil }
        out.append(DatabaseKey.nibble(DatabaseKey.lower(chars[i])) << 4 | DatabaseKey.nibble(DatabaseKey.lower(chars[i + 1])))
        i += 2
    }
    return out
}
