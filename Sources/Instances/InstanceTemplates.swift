import ClusterDB
import Images
import InstanceConfig
import Runtime

/// Image templates, as LXD applies them: creating an instance sets `volatile.apply_template`
/// to `create`; the next start renders the templates whose `when` holds that trigger, then
/// those with `start` (rendered at every start), and a successful start removes the key.
/// The rendered files travel in `ContainerSpec.files`; the runtime writes them before init.
enum InstanceTemplates {
    static let pendingKey = "volatile.apply_template"
    /// All files of one start together, held in memory until written (each is at most
    /// `TemplateRenderer.maxOutputBytes`).
    static let maxTotalBytes = 16 << 20

    /// The files a start of `row` writes, in order: the pending trigger's, then `start`'s (so a
    /// template with both ends with the `start` rendering, as in LXD). Empty for an image
    /// without templates. `read` gives a template file's text by name.
    static func files(for row: InstanceRow, layer: ImportedLayer,
                      read: (String) throws -> String) throws -> [ContainerSpec.File] {
        let templates = layer.metadata.templates
        if templates.isEmpty { return [] }
        var triggers: [ImageTemplate.Trigger] = []
        if let pending = row.config[pendingKey].flatMap(ImageTemplate.Trigger.init(rawValue:)), pending != .start {
            triggers.append(pending)
        }
        triggers.append(.start)

        let privileged = InstanceConfigSchema.isTrue(row.config["security.privileged"]) ? "true" : "false"
        let instance = TemplateValue.map([
            "name": .string(row.name), "type": .string("container"), "architecture": .string(row.architecture),
            "privileged": .string(privileged), "ephemeral": .string("false"),
        ])
        let config = TemplateValue.map(row.config.mapValues { .string($0) })

        var files: [ContainerSpec.File] = []
        var total = 0
        for trigger in triggers {
            for (path, template) in templates.sorted(by: { $0.key < $1.key }) where template.when.contains(trigger) {
                let source: String
                do {
                    source = try read(template.template)
                } catch {
                    throw InstancesError.internal("Image template \(template.template) for \(path) of instance \(row.name) cannot be read: \(error)")
                }
                let context: [String: TemplateValue] = [
                    "trigger": .string(trigger.rawValue), "path": .string(path),
                    "container": instance, "instance": instance, "config": config,
                    // Devices are not supported yet: always none.
                    "devices": .map([:]),
                    "properties": .map(template.properties.mapValues { .string($0) }),
                ]
                let text: String
                do {
                    text = try TemplateRenderer.render(source, file: template.template, context: context)
                } catch {
                    throw InstancesError.invalid("Cannot start instance \(row.name): \(error) (rendering \(path)); fix the image or use another")
                }
                total += text.utf8.count
                guard total <= maxTotalBytes else {
                    throw InstancesError.invalid("Cannot start instance \(row.name): its image's templates render more than \(maxTotalBytes) bytes; fix the image or use another")
                }
                files.append(ContainerSpec.File(path: path, content: Array(text.utf8), createOnly: template.createOnly))
            }
        }
        return files
    }
}
