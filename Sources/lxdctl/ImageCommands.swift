import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials  // not Foundation: it adds ~10 ms of ICU loading to every lxdctl run
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import LXDClient

struct ImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image", abstract: "Manage images.",
        subcommands: [Import.self, ListImages.self, DeleteImage.self]
    )

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "import", abstract: "Import a unified image tarball (metadata.yaml + rootfs/).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Image tarball.") var file: String
        @Option(help: "Alias to give the image.") var alias: String?

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw CLIError("cannot read image file '\(file)'")
            }
            let client = connection.client
            let fingerprint = try await client.importImage(tarball: Array(data), filename: baseName(file))
            if let alias {
                try await client.createImageAlias(alias, target: fingerprint)
            }
            Output.stdout("Image imported with fingerprint: \(fingerprint)\n")
        }
    }

    struct ListImages: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "list", abstract: "List images.")
        @OptionGroup var connection: ConnectionOptions
        @Option(name: [.customShort("f"), .long], help: "Output format: table, csv or json.") var format: OutputFormat = .table

        func run() async throws {
            let images = try await connection.client.images()
            try Output.listing(format, headers: Views.imageColumns, rows: Views.imageRows(images), json: images)
        }
    }

    struct DeleteImage: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "delete", abstract: "Delete an image by alias or fingerprint.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: "Alias or fingerprint (prefix).") var image: String

        func run() async throws {
            let client = connection.client
            try await client.deleteImage(fingerprint: try await client.resolveImage(image))
        }
    }
}

extension OutputFormat: ExpressibleByArgument {}

/// The last path component ("dir/bb.tar.xz" → "bb.tar.xz").
func baseName(_ path: String) -> String {
    path.split(separator: "/").last.map(String.init) ?? path
}

enum JSONText {
    static func encode<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self) + "\n"
    }
}
