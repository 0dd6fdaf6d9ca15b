/// `GET /1.0` (LXD `api.Server`, the parts we fill).
public struct Server: Codable, Sendable {
    public struct Environment: Codable, Sendable {
        public var architectures: [String]
        public var driver: String
        public var driverVersion: String
        public var kernel: String
        public var kernelVersion: String
        public var kernelArchitecture: String
        public var server: String = "lxd-swift"
        public var serverName: String
        public var serverVersion: String
        public var serverClustered: Bool
        public var serverPid: Int32
        public var storage: String = "overlay"
        public var firewall: String = ""

        enum CodingKeys: String, CodingKey {
            case architectures, driver, kernel, server, storage, firewall
            case driverVersion = "driver_version"
            case kernelVersion = "kernel_version"
            case kernelArchitecture = "kernel_architecture"
            case serverName = "server_name"
            case serverVersion = "server_version"
            case serverClustered = "server_clustered"
            case serverPid = "server_pid"
        }

        public init(architectures: [String], driver: String, driverVersion: String, kernel: String, kernelVersion: String, kernelArchitecture: String, serverName: String, serverVersion: String, serverClustered: Bool, serverPid: Int32) {
            self.architectures = architectures
            self.driver = driver
            self.driverVersion = driverVersion
            self.kernel = kernel
            self.kernelVersion = kernelVersion
            self.kernelArchitecture = kernelArchitecture
            self.serverName = serverName
            self.serverVersion = serverVersion
            self.serverClustered = serverClustered
            self.serverPid = serverPid
        }
    }

    public var apiExtensions: [String]
    public var apiStatus: String = "stable"
    public var apiVersion: String = "1.0"
    public var auth: String
    public var authMethods: [String] = ["tls"]
    public var `public`: Bool = false
    public var config: [String: String]
    public var environment: Environment

    enum CodingKeys: String, CodingKey {
        case auth, `public`, config, environment
        case apiExtensions = "api_extensions"
        case apiStatus = "api_status"
        case apiVersion = "api_version"
        case authMethods = "auth_methods"
    }

    public init(apiExtensions: [String], auth: String, config: [String: String], environment: Environment) {
        self.apiExtensions = apiExtensions
        self.auth = auth
        self.config = config
        self.environment = environment
    }
}
