import Yams

/// The fields of an image's metadata.yaml that we use.
public struct ImageMetadata: Sendable, Equatable {
    public var architecture: String
    /// Unix seconds, when the file has `creation_date`.
    public var creationDate: Int64?
    public var properties: [String: String]
    /// Files rendered into an instance's root filesystem, by absolute target path.
    public var templates: [String: ImageTemplate]

    public init(architecture: String, creationDate: Int64? = nil, properties: [String: String] = [:],
                templates: [String: ImageTemplate] = [:]) {
        self.architecture = architecture
        self.creationDate = creationDate
        self.properties = properties
        self.templates = templates
    }

    /// Bounds on what one image may ask for; real images have a handful of templates.
    public static let maxTemplates = 256
    public static let maxTemplateProperties = 64
    public static let maxPathBytes = 4096
    /// Yams composes recursively: 10,000 levels (`[[[…` or `- - - …`) overflow a thread's stack.
    public static let maxNesting = 100

    /// An upper bound on the YAML's nesting found without parsing it: the deepest open flow
    /// brackets plus, on the worst line, the indentation and the block markers (`- `, `: `, `? `).
    /// Quotes are not understood, so text inside them counts too; legitimate metadata stays far below.
    static func nestingBound(_ text: String) -> Int {
        var flow = 0, maxFlow = 0, maxLine = 0
        for line in text.utf8.split(whereSeparator: { $0 == UInt8(ascii: "\n") || $0 == UInt8(ascii: "\r") }) {
            let indent = line.prefix { $0 == UInt8(ascii: " ") }.count
            var markers = 0
            var previous = UInt8(ascii: " ")
            for c in line.dropFirst(indent) {
                switch c {
                case UInt8(ascii: "["), UInt8(ascii: "{"):
                    flow += 1
                    maxFlow = max(maxFlow, flow)
                case UInt8(ascii: "]"), UInt8(ascii: "}"):
                    flow = max(0, flow - 1)
                case UInt8(ascii: " ") where previous == UInt8(ascii: "-") || previous == UInt8(ascii: ":") || previous == UInt8(ascii: "?"):
                    markers += 1
                default:
                    break
                }
                previous = c
            }
            if previous == UInt8(ascii: "-") || previous == UInt8(ascii: ":") || previous == UInt8(ascii: "?") { markers += 1 }
            maxLine = max(maxLine, indent + markers)
        }
        return maxFlow + maxLine
    }

    /// Reads LXD's metadata.yaml:
    ///
    ///     architecture: x86_64
    ///     creation_date: 1700000000
    ///     properties:
    ///       description: Busybox x86_64
    ///     templates:
    ///       /etc/hostname:
    ///         when: [create, copy]
    ///         create_only: false
    ///         template: hostname.tpl
    ///         properties: {}
    ///
    /// Properties keep their scalar values; nested ones are skipped. Other top-level keys are
    /// ignored. Templates are checked here (pure): an absolute, normalised target; a template
    /// name below templates/ without `..`. `ImageStore` checks that the file exists at import.
    /// Throws `invalidImage` naming the key at fault.
    public static func parse(_ text: String) throws -> ImageMetadata {
        guard nestingBound(text) <= maxNesting else {
            throw ImageError.invalidImage("image metadata.yaml nests deeper than \(maxNesting) levels; LXD's metadata needs a handful")
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            throw ImageError.invalidImage("image metadata.yaml is not valid YAML: \(error)")
        }
        // Only mappings are read; anything else at the top leaves no architecture.
        let top = root?.mapping

        guard let architecture = top?["architecture"]?.scalar?.string, !architecture.isEmpty else {
            throw ImageError.invalidImage("image metadata.yaml has no architecture; add a line such as `architecture: x86_64`")
        }
        let creationDate = top?["creation_date"]?.scalar.flatMap { Int64($0.string) }
        var properties: [String: String] = [:]
        if let map = top?["properties"]?.mapping {
            for (key, value) in map {
                guard let k = key.scalar?.string, let v = value.scalar?.string else { continue }
                properties[k] = v
            }
        }
        var templates: [String: ImageTemplate] = [:]
        if let node = top?["templates"] {
            guard let map = node.mapping else {
                throw ImageError.invalidImage("image metadata.yaml: templates must be a map of target paths to templates")
            }
            guard map.count <= maxTemplates else {
                throw ImageError.invalidImage("image metadata.yaml has \(map.count) templates, more than the \(maxTemplates) allowed")
            }
            for (key, value) in map {
                guard let target = key.scalar?.string else {
                    throw ImageError.invalidImage("image metadata.yaml: every key under templates must be a target path")
                }
                templates[target] = try ImageTemplate.parse(target: target, value)
            }
        }
        return ImageMetadata(architecture: architecture, creationDate: creationDate, properties: properties, templates: templates)
    }
}

/// One entry of metadata.yaml's `templates:` (LXD's shape): a file of the image's templates/
/// directory rendered to `target` inside the instance when one of `when` happens.
public struct ImageTemplate: Sendable, Equatable {
    /// Events that render the file: `create` (first start after creation), `copy` (first start
    /// after a copy) and `start` (every start). Unknown events in the image are dropped.
    public enum Trigger: String, Sendable, CaseIterable {
        case create, copy, start
    }

    public var when: [Trigger]
    /// Leave the target alone when it already exists.
    public var createOnly: Bool
    /// File name below the image's templates/ directory.
    public var template: String
    /// Free values the template reads as `properties.NAME`.
    public var properties: [String: String]

    public init(when: [Trigger], createOnly: Bool = false, template: String, properties: [String: String] = [:]) {
        self.when = when
        self.createOnly = createOnly
        self.template = template
        self.properties = properties
    }

    static func parse(target: String, _ node: Node) throws -> ImageTemplate {
        func refuse(_ why: String) -> ImageError {
            .invalidImage("image metadata.yaml: template for \(target) \(why)")
        }
        try Self.checkTarget(target)
        guard let map = node.mapping else { throw refuse("must be a map with when and template") }

        var when: [Trigger] = []
        switch map["when"] {
        case nil:
            break
        case .sequence(let items)?:
            guard items.count <= 16 else { throw refuse("lists \(items.count) events under when; at most 16") }
            for item in items {
                guard let name = item.scalar?.string else { throw refuse("has a when entry that is not a word") }
                // LXD ignores events it does not know; so do we.
                if let trigger = Trigger(rawValue: name), !when.contains(trigger) { when.append(trigger) }
            }
        default:
            throw refuse("needs when as a list, such as [create, copy]")
        }

        var createOnly = false
        if let value = map["create_only"] {
            guard let flag = value.scalar.flatMap({ Bool.construct(from: $0) }) else {
                throw refuse("has create_only that is not true or false")
            }
            createOnly = flag
        }

        guard let template = map["template"]?.scalar?.string else { throw refuse("has no template file name") }
        try Self.checkTemplateName(template, target: target)

        var properties: [String: String] = [:]
        if let value = map["properties"] {
            guard let props = value.mapping else { throw refuse("has properties that are not a map") }
            guard props.count <= ImageMetadata.maxTemplateProperties else {
                throw refuse("has \(props.count) properties, more than the \(ImageMetadata.maxTemplateProperties) allowed")
            }
            for (k, v) in props {
                guard let key = k.scalar?.string, let text = v.scalar?.string else { throw refuse("has a property that is not text") }
                properties[key] = text
            }
        }
        return ImageTemplate(when: when, createOnly: createOnly, template: template, properties: properties)
    }

    /// A target is where the file goes in the instance: absolute, normalised (no empty, `.` or
    /// `..` component, no trailing slash), not the root itself.
    static func checkTarget(_ target: String) throws {
        func refuse(_ why: String) -> ImageError {
            .invalidImage("image metadata.yaml: template target \(target) \(why)")
        }
        guard target.hasPrefix("/") else { throw refuse("is not an absolute path") }
        guard target.utf8.count <= ImageMetadata.maxPathBytes else { throw refuse("is longer than \(ImageMetadata.maxPathBytes) bytes") }
        guard !target.utf8.contains(0) else { throw refuse("contains a NUL byte") }
        let parts = target.dropFirst().split(separator: "/", omittingEmptySubsequences: false)
        guard target != "/" else { throw refuse("is the root directory") }
        for part in parts {
            if part == ".." { throw refuse("contains '..'; targets must stay inside the instance") }
            if part.isEmpty || part == "." { throw refuse("is not normalised (empty or '.' component); write it as a plain absolute path") }
            if part.utf8.count > 255 { throw refuse("has a name longer than 255 bytes") }
        }
    }

    /// A template name is a relative path below templates/ without `.`/`..` components.
    static func checkTemplateName(_ name: String, target: String) throws {
        func refuse(_ why: String) -> ImageError {
            .invalidImage("image metadata.yaml: template file \(name) (for \(target)) \(why)")
        }
        guard !name.isEmpty, !name.hasPrefix("/") else { throw refuse("must be a relative path below templates/") }
        guard name.utf8.count <= ImageMetadata.maxPathBytes, !name.utf8.contains(0) else { throw refuse("is too long or contains a NUL byte") }
        for part in name.split(separator: "/", omittingEmptySubsequences: false) {
            if part == ".." { throw refuse("contains '..'; template files must be below templates/") }
            if part.isEmpty || part == "." { throw refuse("is not normalised (empty or '.' component)") }
            if part.utf8.count > 255 { throw refuse("has a name longer than 255 bytes") }
        }
    }
}
