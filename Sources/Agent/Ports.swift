import APITypes
import Cluster
import Gateway

// Gateway declares the narrow ports its routes call; Cluster implements the use cases without
// knowing Gateway. The agent, which wires the two, says which implements which.

extension ClusterController: ClusterService {}
extension ClusterTrust: TrustService {}
extension MemberWebSocket: ForwardedWebSocket {}

extension MemberClient: MemberForwarder {
    public func openWebSocket(target: String, to member: MemberReference) async throws -> any ForwardedWebSocket {
        try await webSocket(target, on: member)
    }
}
