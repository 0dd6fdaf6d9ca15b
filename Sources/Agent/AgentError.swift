/// What failed while the agent starts (its data directory, the preseed); failures of member.json
/// and of joining are the Cluster module's `ClusterError`.
public enum AgentError: Error, CustomStringConvertible {
    case startup(String)

    public var description: String {
        switch self {
        case .startup(let m): "startup: \(m)"
        }
    }
}
