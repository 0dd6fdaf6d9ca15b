import Foundation
import Testing

/// A static program pushed into containers to report the errno of calls a container must not
/// be able to make. Busybox alone cannot tell init_module from finit_module, nor print errno
/// names; this kernel has no module support, so only the errno tells the seccomp filter
/// (EPERM) from the kernel (ENOSYS).
enum SyscallProbe {
    static let source = #"""
    #define _GNU_SOURCE
    #include <errno.h>
    #include <fcntl.h>
    #include <stdio.h>
    #include <string.h>
    #include <sys/syscall.h>
    #include <unistd.h>

    static const char *result(long r) { return r == 0 ? "OK" : strerrorname_np(errno); }

    int main(int argc, char **argv) {
        if (argc == 2 && strcmp(argv[1], "modules") == 0) {
            static char image[64];  /* not a module: a kernel that loads modules says ENOEXEC */
            printf("init_module %s\n", result(syscall(SYS_init_module, image, sizeof image, "")));
            int fd = open("/dev/null", O_RDONLY);
            printf("finit_module %s\n", result(syscall(SYS_finit_module, fd, "", 0)));
            printf("delete_module %s\n", result(syscall(SYS_delete_module, "lxd_swift_probe", O_NONBLOCK)));
            return 0;
        }
        if (argc == 4 && strcmp(argv[1], "write") == 0) {
            int fd = open(argv[2], O_WRONLY);
            if (fd < 0) { printf("open %s\n", strerrorname_np(errno)); return 0; }
            ssize_t n = write(fd, argv[3], strlen(argv[3]));
            printf("write %s\n", n < 0 ? strerrorname_np(errno) : "OK");
            return 0;
        }
        fprintf(stderr, "usage: probe modules | probe write PATH VALUE\n");
        return 2;
    }
    """#

    /// Why the probe cannot be built here, or nil.
    static let missing: String? = {
        for tool in ["/usr/bin/gcc", "/usr/lib/x86_64-linux-gnu/libc.a"] where !FileManager.default.fileExists(atPath: tool) {
            return "\(tool) is missing: the syscall probe is a static C program built at test time (apt-get install gcc libc6-dev)"
        }
        return nil
    }()

    /// Builds the probe in `directory` (a test's scratch directory, removed with it); returns its path.
    static func build(in directory: String) throws -> String {
        try source.write(toFile: "\(directory)/probe.c", atomically: true, encoding: .utf8)
        let r = try run("/usr/bin/gcc", ["-static", "-O2", "-o", "\(directory)/probe", "\(directory)/probe.c"])
        guard r.status == 0 else { throw HarnessError("gcc -static of the syscall probe failed: \(r.stderr)") }
        return "\(directory)/probe"
    }

    /// `probe write PATH VALUE` output parsed: "open EACCES" -> ("open", "EACCES").
    static func parse(_ line: String) -> (step: String, result: String) {
        let parts = line.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ", maxSplits: 1).map(String.init)
        return (parts.first ?? "", parts.count > 1 ? parts[1] : "")
    }
}

/// OpenSSL's command-line client, used to offer the agent protocol versions NIOSSL's client
/// never would.
enum OpenSSLClient {
    static let openssl = "/usr/bin/openssl"

    /// The protocol a handshake with `address` settled on ("TLSv1.2"), or nil when it failed;
    /// plus openssl's output, to quote. `flags` pick the version, e.g. ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"].
    static func handshake(_ address: String, _ flags: [String]) throws -> (version: String?, output: String) {
        let (r, timedOut) = try run(openssl, ["s_client", "-connect", address] + flags, timeout: 15)
        let output = r.stdout + r.stderr
        // A failed handshake still prints a session block, with "Cipher is (NONE)".
        guard !timedOut, r.status == 0, output.contains("Cipher is "), !output.contains("Cipher is (NONE)") else { return (nil, output) }
        // "Protocol  : TLSv1.2" in the session block; a TLS 1.3 session has no block then, but
        // its "New, TLSv1.3, Cipher is ..." line names the protocol (for older versions that
        // line names the cipher's own version, hence the session block first).
        let lines = output.split(separator: "\n").map { $0.trimmingCharacters(in: .whitespaces) }
        if let line = lines.first(where: { $0.hasPrefix("Protocol") }), let value = line.split(separator: ":").last {
            return (value.trimmingCharacters(in: .whitespaces), output)
        }
        let new = lines.first { $0.hasPrefix("New, ") }?.dropFirst(5).split(separator: ",").first.map(String.init)
        return (new, output)
    }

    /// True when this openssl completes a TLS 1.1 handshake (with `@SECLEVEL=0`) against its own
    /// server: only then does a refusal by the agent prove anything. Prints why not otherwise.
    static var canSpeakTLS11: Bool {
        if let why = cannotSpeakTLS11 { print("SKIP onlyTLS12AndLaterAreAccepted: \(why)") }
        return cannotSpeakTLS11 == nil
    }

    /// Why a TLS 1.1 refusal would prove nothing here, or nil.
    static let cannotSpeakTLS11: String? = {
        guard FileManager.default.isExecutableFile(atPath: openssl) else { return "\(openssl) is not installed" }
        let dir = "/tmp/lxd-swift-it-tls11-\(getpid())"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        do {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            let req = try run(openssl, ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "\(dir)/k.pem", "-out", "\(dir)/c.pem",
                                        "-days", "1", "-subj", "/CN=tls11-check"])
            guard req.status == 0 else { return "openssl req failed: \(req.stderr)" }
            let port = TestAgent.freePort()
            let server = Process()
            server.executableURL = URL(fileURLWithPath: openssl)
            server.arguments = ["s_server", "-accept", "127.0.0.1:\(port)", "-cert", "\(dir)/c.pem", "-key", "\(dir)/k.pem",
                                "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0", "-quiet"]
            // s_server quits at the end of its stdin: keep a pipe open until the check is done.
            let stdin = Pipe()
            server.standardInput = stdin
            server.standardOutput = FileHandle.nullDevice
            server.standardError = FileHandle.nullDevice
            try server.run()
            defer {
                kill(server.processIdentifier, SIGKILL)
                server.waitUntilExit()
                try? stdin.fileHandleForWriting.close()
            }
            var last = ""
            for _ in 0..<50 {
                let (version, output) = try handshake("127.0.0.1:\(port)", ["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
                if version == "TLSv1.1" { return nil }
                last = output
                usleep(100_000)
            }
            return "this openssl cannot complete a TLS 1.1 handshake even with its own server: \(last.suffix(600))"
        } catch {
            return "cannot check openssl's TLS 1.1 support: \(error)"
        }
    }()
}
