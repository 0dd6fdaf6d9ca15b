import APITypes
import Foundation
import Hummingbird

/// Limits on request bodies: anything larger is refused with 413 before it is processed.
public struct BodyLimits: Sendable {
    public var json: Int = 4 << 20
    public var image: Int64 = 4 << 30
    public var file: Int = 256 << 20
    /// One part of a move's tree stream (the source sends 4 MiB parts).
    public var movePart: Int = 8 << 20
    public init() {}
}

extension Request {
    /// The body of a JSON request, refused with 413 past `limit` bytes.
    func collectJSON(upTo limit: Int) async throws -> Data {
        var request = self
        do {
            return Data(buffer: try await request.collectBody(upTo: limit))
        } catch {
            throw APIError.tooLarge("Request body is larger than \(limit) bytes")
        }
    }

    /// Streams an upload to a new file in `directory` and returns its path; past `limit` bytes the
    /// upload is refused with 413 and the partial file removed.
    func streamUpload(into directory: String, limit: Int64) async throws -> String {
        let path = "\(directory)/upload-\(UUID().uuidString)"
        guard FileManager.default.createFile(atPath: path, contents: nil), let handle = FileHandle(forWritingAtPath: path) else {
            throw APIError.internal("Cannot create upload file in \(directory): check the data directory is writable")
        }
        var total: Int64 = 0
        do {
            for try await chunk in body {
                total += Int64(chunk.readableBytes)
                if total > limit { throw APIError.tooLarge("Image upload is larger than \(limit) bytes") }
                try handle.write(contentsOf: Data(buffer: chunk))
            }
            try handle.close()
        } catch {
            try? handle.close()
            unlink(path)
            throw error
        }
        return path
    }
}
