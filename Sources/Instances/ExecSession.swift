import APITypes
import Foundation
import InstanceConfig
import Logging
import Operations
import Runtime

/// One `exec`: the websockets LXD's protocol opens (stdin/stdout/stderr or one terminal, plus
/// control), the process in the container, and the pumps between them.
actor ExecSession {
    let interactive: Bool
    let names: [String]
    private var attached: [String: WebSocketAttachment] = [:]
    private var allAttached: [CheckedContinuation<Void, Never>] = []
    /// Each socket's handler waits here until its stream is finished; resuming closes the socket.
    private var finished: [String: CheckedContinuation<Void, Never>] = [:]
    private var done = false
    private var terminalMaster: Int32 = -1
    private var process: ExecProcess?

    init(interactive: Bool) {
        self.interactive = interactive
        names = interactive ? ["0", "control"] : ["0", "1", "2", "control"]
    }

    /// Called by the websocket route; returns when this socket should close.
    func attach(_ fd: String, _ attachment: WebSocketAttachment) async {
        attached[fd] = attachment
        if names.allSatisfy({ attached[$0] != nil }) {
            for w in allAttached { w.resume() }
            allAttached = []
        }
        if fd == "control" {
            Task { await self.control(attachment.inbound) }
        }
        if done { return }
        await withCheckedContinuation { finished[fd] = $0 }
    }

    func waitForAll(timeout: Duration) async throws {
        if names.allSatisfy({ attached[$0] != nil }) { return }
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.timeoutWaiters()
        }
        await withCheckedContinuation { allAttached.append($0) }
        timer.cancel()
        guard names.allSatisfy({ attached[$0] != nil }) else {
            throw InstancesError.invalid("Exec websockets were not all connected within \(timeout): connect to every fd in the operation's metadata")
        }
    }

    private func timeoutWaiters() {
        for w in allAttached { w.resume() }
        allAttached = []
    }

    /// Starts the command and pumps its streams; returns its exit code once it exited and its
    /// output was delivered.
    func run(host: any ContainerHost, instance: InstanceRef, request: ExecRequest, width: Int?, height: Int?, logger: Logger) async throws -> Int32 {
        defer { finishAll() }
        let stop = StopFlag()
        var pumps: [Task<Void, Never>] = []
        let exitCode: Int32
        if interactive {
            // 0 leaves the size unset, as a client that sent none expects.
            let term = try PseudoTerminal.open(rows: UInt16(clamping: height ?? 0), columns: UInt16(clamping: width ?? 0))
            terminalMaster = term.master
            let proc: ExecProcess
            do {
                proc = try await host.exec(instance: instance, command: request.command, environment: request.environment, cwd: request.cwd, uid: request.uid, gid: request.gid, stdio: .terminal(term.slave))
            } catch {
                close(term.slave)
                close(term.master)
                throw error
            }
            close(term.slave)
            process = proc
            let link = attached["0"]!
            let writer = FDWriter(fd: dup(term.master))
            pumps.append(Task { for await chunk in link.inbound { writer.write(chunk) }; writer.close() })
            let output = readStream(fd: term.master, stop: stop)
            let sender = Task { for await chunk in output { try? await link.link.send(chunk) } }
            exitCode = await proc.wait()
            // The terminal drains until the last holder of the slave is gone (EIO), or briefly after exit.
            try? await Task.sleep(for: .milliseconds(200))
            stop.set()
            await sender.value
        } else {
            let stdin = try cloexecPipe(), stdout = try cloexecPipe(), stderr = try cloexecPipe()
            let proc: ExecProcess
            do {
                proc = try await host.exec(instance: instance, command: request.command, environment: request.environment, cwd: request.cwd, uid: request.uid, gid: request.gid, stdio: .pipes(stdin: stdin.read, stdout: stdout.write, stderr: stderr.write))
            } catch {
                for fd in [stdin.read, stdin.write, stdout.read, stdout.write, stderr.read, stderr.write] { close(fd) }
                throw error
            }
            close(stdin.read)
            close(stdout.write)
            close(stderr.write)
            process = proc
            let writer = FDWriter(fd: stdin.write)
            let input = attached["0"]!.inbound
            pumps.append(Task { for await chunk in input { writer.write(chunk) }; writer.close() })
            let outLink = attached["1"]!.link, errLink = attached["2"]!.link
            let out = readStream(fd: stdout.read, stop: stop)
            let err = readStream(fd: stderr.read, stop: stop)
            let outSender = Task { for await chunk in out { try? await outLink.send(chunk) } }
            let errSender = Task { for await chunk in err { try? await errLink.send(chunk) } }
            exitCode = await proc.wait()
            // Output ends at EOF; a daemonized child may keep the pipe open, so give up after a grace period.
            let grace = Task {
                try? await Task.sleep(for: .seconds(2))
                stop.set()
            }
            await outSender.value
            await errSender.value
            grace.cancel()
        }
        for p in pumps { p.cancel() }
        process = nil
        return exitCode
    }

    private func control(_ inbound: AsyncStream<[UInt8]>) async {
        for await message in inbound {
            guard let msg = try? JSONDecoder().decode(InstanceExecControl.self, from: Data(message)) else { continue }
            switch msg.command {
            case "window-resize":
                if terminalMaster >= 0, let w = msg.args?["width"].flatMap(Int.init), let h = msg.args?["height"].flatMap(Int.init) {
                    try? PseudoTerminal.resize(master: terminalMaster, rows: UInt16(clamping: h), columns: UInt16(clamping: w))
                }
            case "signal":
                // Any number may arrive here: only real signal numbers are sent.
                if let sig = msg.signal, let p = process, let signal = Int32(exactly: sig), (1...64).contains(signal) { p.signal(signal) }
            default:
                continue
            }
        }
    }

    private func finishAll() {
        done = true
        for (_, c) in finished { c.resume() }
        finished = [:]
    }
}
