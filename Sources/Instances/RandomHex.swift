import Foundation

/// Unguessable identifiers (websocket secrets, move tokens): random bytes as lowercase hex.
enum RandomHex {
    static func make(bytes count: Int) -> String {
        (0..<count).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }
}
