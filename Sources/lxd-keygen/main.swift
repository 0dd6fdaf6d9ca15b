import Foundation
import Identity
import IdentityGenerator

// lxd-keygen CERT KEY COMMON-NAME: makes a self-signed client identity for lxdctl, which does not
// link swift-crypto itself (see IdentityGenerator). Existing files are kept, never replaced.
let args = CommandLine.arguments
guard args.count == 4 else {
    FileHandle.standardError.write(Data("usage: lxd-keygen CERT KEY COMMON-NAME\n".utf8))
    exit(2)
}
do {
    let identity = try IdentityGenerator.loadOrCreate(certPath: args[1], keyPath: args[2], commonName: args[3])
    print(identity.fingerprint)
} catch {
    FileHandle.standardError.write(Data("lxd-keygen: \(error)\n".utf8))
    exit(1)
}
