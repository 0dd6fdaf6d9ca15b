/// Where an archive entry of a unified image belongs. Pure rules, no I/O.
///
/// A unified image holds `metadata.yaml`, `rootfs/...` and optionally
/// `templates/...`; nothing else. Paths are relative, `.` components and
/// repeated slashes are ignored (so `./rootfs//bin` is `rootfs/bin`), and a
/// `..` component is refused anywhere, even where it would stay inside.
public enum ImagePlace: Equatable, Sendable {
    case metadata
    /// Path components below `rootfs/`; empty for `rootfs/` itself.
    case rootfs([String])
    /// Path components below `templates/`; empty for `templates/` itself.
    case templates([String])
    /// The archive root (`./`): nothing to create.
    case archiveRoot

    /// Path components relative to the layer directory.
    public var components: [String] {
        switch self {
        case .metadata: return ["metadata.yaml"]
        case .rootfs(let c): return ["rootfs"] + c
        case .templates(let c): return ["templates"] + c
        case .archiveRoot: return []
        }
    }

    public static func of(path: String) throws -> ImagePlace {
        if path.hasPrefix("/") {
            throw ImageError.invalidImage("image entry \(path) has an absolute path; image tarballs must hold relative paths")
        }
        var components: [String] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." {
                throw ImageError.invalidImage("image entry \(path) contains '..'; refusing a path that could leave the image")
            }
            guard part.utf8.count <= 255 else {
                throw ImageError.invalidImage("image entry \(path) has a name longer than 255 bytes")
            }
            components.append(String(part))
        }
        guard let first = components.first else { return .archiveRoot }
        switch first {
        case "metadata.yaml" where components.count == 1: return .metadata
        case "rootfs": return .rootfs(Array(components.dropFirst()))
        case "templates": return .templates(Array(components.dropFirst()))
        default:
            throw ImageError.invalidImage("image entry \(path) is outside rootfs/; only metadata.yaml, rootfs/ and templates/ are allowed")
        }
    }

    /// Checks an entry against the layout and returns where it goes.
    /// Hard links must be below `rootfs/` and point below `rootfs/`;
    /// `metadata.yaml` must be a regular file; the top directories must be directories.
    public static func check(_ entry: TarEntry) throws -> ImagePlace {
        let place = try of(path: entry.path)
        switch (place, entry.kind) {
        case (.metadata, .regular), (.archiveRoot, .directory):
            break
        case (.metadata, _):
            throw ImageError.invalidImage("metadata.yaml in the image must be a regular file")
        case (.archiveRoot, _):
            throw ImageError.invalidImage("image entry \(entry.path) must be a directory")
        case (.rootfs([]), let kind) where kind != .directory,
             (.templates([]), let kind) where kind != .directory:
            throw ImageError.invalidImage("image entry \(entry.path) must be a directory")
        case (.templates, .hardlink):
            throw ImageError.invalidImage("hard link \(entry.path) is outside rootfs/; hard links are only allowed inside rootfs/")
        case (.rootfs, .hardlink):
            guard case .rootfs(let target) = try? of(path: entry.linkTarget), !target.isEmpty else {
                throw ImageError.invalidImage("hard link \(entry.path) points to \(entry.linkTarget), outside rootfs/; refusing")
            }
        default:
            break
        }
        return place
    }
}
