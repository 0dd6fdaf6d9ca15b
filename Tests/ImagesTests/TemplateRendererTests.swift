import Testing
@testable import Images

@Suite struct TemplateRendererTests {
    let context: [String: TemplateValue] = [
        "trigger": .string("create"),
        "path": .string("/etc/hosts"),
        "container": .map(["name": .string("web1"), "type": .string("container"), "privileged": .string("false")]),
        "config": .map(["user.greeting": .string("hello"), "user.empty": .string(""), "user.data": .string("#cloud-config\n\r\n")]),
        "devices": .map([:]),
        "properties": .map(["default": .string("fallback")]),
    ]

    func render(_ source: String) throws(TemplateError) -> String {
        try TemplateRenderer.render(source, file: "t.tpl", context: context)
    }

    func failure(_ source: String, maxOutputBytes: Int = TemplateRenderer.maxOutputBytes) -> TemplateError? {
        do {
            _ = try TemplateRenderer.render(source, file: "t.tpl", context: context, maxOutputBytes: maxOutputBytes)
            return nil
        } catch {
            return error
        }
    }

    /// distrobuilder's hostname and hosts templates.
    @Test func hostnameAndHosts() throws {
        #expect(try render("{{ container.name }}\n") == "web1\n")
        #expect(try render("127.0.1.1\t{{ container.name }}\n127.0.0.1\tlocalhost\n") == "127.0.1.1\tweb1\n127.0.0.1\tlocalhost\n")
        #expect(try render("{{trigger}} {{ path }} {{ container.type }}") == "create /etc/hosts container")
    }

    @Test func lookupsOfMissingNamesAreEmpty() throws {
        #expect(try render("[{{ container.nothing }}][{{ nothing.at.all }}][{{ container.name.deeper }}]") == "[][][]")
    }

    @Test func literalsConfigGetAndDefault() throws {
        #expect(try render(#"{{ "a \"b\"" }} {{ 'c' }}"#) == #"a "b" c"#)
        #expect(try render(#"{{ config_get("user.greeting", "none") }}"#) == "hello")
        #expect(try render(#"{{ config_get("user.missing", "none") }}"#) == "none")
        #expect(try render(#"{{ config_get("user.data", "") }}|"#) == "#cloud-config|")
        #expect(try render(#"{{ config_get("user.missing", properties.default) }}"#) == "fallback")
        #expect(try render(#"{{ container.nothing|default:"x" }} {{ container.name | default:"x" }}"#) == "x web1")
        #expect(try render(#"{{ config_get("user.empty", "")|default:properties.default }}"#) == "fallback")
    }

    @Test func conditionals() throws {
        #expect(try render("{% if container.name %}yes{% else %}no{% endif %}") == "yes")
        #expect(try render("{% if container.nothing %}yes{% else %}no{% endif %}") == "no")
        #expect(try render(#"{% if config_get("user.empty", "") %}yes{% endif %}."#) == ".")
        #expect(try render(#"{% if config_get("user.greeting", "") == "hello" %}eq{% endif %}"#) == "eq")
        #expect(try render(#"{% if not container.nothing and (trigger != "copy" or path) %}ok{% endif %}"#) == "ok")
        // distrobuilder's cloud-init network-config shape: nested ifs with else.
        let nested = #"{% if config_get("cloud-init.network-config", "") == "" %}{% if config_get("user.greeting", "") == "" %}default{% else %}{{ config_get("user.greeting", "") }}{% endif %}{% else %}given{% endif %}"#
        #expect(try render(nested) == "hello")
    }

    @Test func commentsAndPlainBraces() throws {
        #expect(try render("a{# a comment {{ container.name }} #}b { } %} }}") == "ab { } %} }}")
        #expect(try render("line1\n{# multi\nline #}line2") == "line1\nline2")
    }

    @Test func unsupportedConstructsNameTheTagAndFile() {
        let forLoop = failure("x\n{% for d in devices %}{% endfor %}")
        #expect(forLoop?.file == "t.tpl" && forLoop?.line == 2)
        #expect(forLoop?.description.contains("unsupported tag {% for d in devices %}") == true)
        #expect(failure("{{ container.name|upper }}")?.message.contains("unsupported filter 'upper'") == true)
        #expect(failure("{{ now() }}")?.message.contains("unsupported function 'now'") == true)
        #expect(failure("{{ 1 + 2 }}")?.message.contains("unsupported character '1'") == true)
        #expect(failure("{% elif x %}")?.message.contains("unsupported tag") == true)
        #expect(failure("{{ container }}")?.message.contains("cannot print a map") == true)
        #expect(failure("{{ 'open }}")?.message.contains("unterminated string") == true)
        #expect(failure("{{ }}")?.message.contains("empty expression") == true)
    }

    @Test func unbalancedTagsAreErrors() {
        #expect(failure("{% if trigger %}never closed")?.message.contains("never closed with {% endif %}") == true)
        #expect(failure("{% endif %}")?.message.contains("without a matching {% if %}") == true)
        #expect(failure("{% else %}")?.message.contains("without a matching {% if %}") == true)
        #expect(failure("{{ container.name ")?.message.contains("never closed with }}") == true)
        #expect(failure("{# open")?.message.contains("never closed with #}") == true)
        #expect(failure("{% if trigger %}{% else %}{% else %}{% endif %}") != nil)
    }

    @Test func boundsOnNestingAndOutput() throws {
        let depth = TemplateRenderer.maxNesting
        let ok = String(repeating: "{% if trigger %}", count: depth) + "x" + String(repeating: "{% endif %}", count: depth)
        #expect(try render(ok) == "x")
        let deep = String(repeating: "{% if trigger %}", count: depth + 1) + "x" + String(repeating: "{% endif %}", count: depth + 1)
        #expect(failure(deep)?.message.contains("nested deeper than \(depth)") == true)
        let parens = "{{ " + String(repeating: "(", count: 100) + "trigger" + String(repeating: ")", count: 100) + " }}"
        #expect(failure(parens)?.message.contains("nested too deeply") == true)
        #expect(failure(String(repeating: "{{ container.name }}", count: 10), maxOutputBytes: 20)?.message.contains("larger than 20 bytes") == true)
    }
}
