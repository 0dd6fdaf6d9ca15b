import APITypes
import Foundation
import Testing

/// The wire vocabulary against JSON as LXD 5.0 sends it (decode, encode, compare keys) and as
/// this server sends it (decode, encode, compare bytes: clients and older members must not see
/// a difference).
@Suite struct WireTypesTests {
    static func decode<T: Decodable>(_ type: T.Type, _ json: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(json.utf8))
    }

    /// As Gateway and LXDClient encode: sorted keys, slashes unescaped.
    static func encode<T: Encodable>(_ value: T) throws -> String {
        let e = JSONEncoder()
        e.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: try e.encode(value), as: UTF8.self)
    }

    static func keys(_ json: String) throws -> Set<String> {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
        return Set(object.keys)
    }

    /// Decodes `json` as `T`, encodes it again and returns (keys sent, keys encoded).
    static func keysThrough<T: Codable>(_ type: T.Type, _ json: String) throws -> (sent: Set<String>, encoded: Set<String>) {
        (try keys(json), try keys(try encode(try decode(T.self, json))))
    }

    // MARK: Member status

    @Test func memberStatusReadsEverySpellingAndWritesThisServersNames() throws {
        #expect(try Self.decode([MemberStatus].self, #"["ONLINE","Online","online","OFFLINE","Offline","EVACUATED","Evacuated"]"#)
            == [.online, .online, .online, .offline, .offline, .evacuated, .evacuated])
        #expect(try Self.encode([MemberStatus.online, .offline, .evacuated]) == #"["ONLINE","OFFLINE","EVACUATED"]"#)
    }

    @Test func anUnknownMemberStatusFromAPeerIsKeptAsSent() throws {
        let status = try Self.decode(MemberStatus.self, #""Blocked""#)
        #expect(status == .unknown("Blocked"))
        #expect(try Self.encode(status) == #""Blocked""#)
        #expect(MemberStatus("Blocked") != .offline)
    }

    // MARK: Cluster

    /// `GET /1.0/cluster/members/lxd01` on LXD 5.0.
    static let lxdMember = """
        {"server_name":"lxd01","url":"https://10.0.0.1:8443","database":true,"status":"Online","message":"Fully operational",
         "architecture":"x86_64","failure_domain":"default","description":"","config":{},"groups":["default"],
         "roles":["database-leader","database"]}
        """

    @Test func clusterMemberFromLXDDecodesAndKeepsLXDsFieldNames() throws {
        let m = try Self.decode(ClusterMemberInfo.self, Self.lxdMember)
        #expect(m.serverName == "lxd01" && m.status == .online && m.database == "voter")
        #expect(m.roles == ["database-leader", "database"] && m.failureDomain == "default" && m.fingerprint == "")
        let (sent, encoded) = try Self.keysThrough(ClusterMemberInfo.self, Self.lxdMember)
        // Every key this server writes is LXD's, but `fingerprint` (an extension lxdctl pins members
        // with) and `database_role` (dqlite's role; LXD's `database` is a strict boolean).
        #expect(encoded.subtracting(sent) == ["fingerprint", "database_role"])
        #expect(sent.subtracting(encoded) == ["architecture", "description", "groups"])
    }

    @Test func clusterMemberAsThisServerSendsItIsByteForByteTheSame() throws {
        let json = #"{"config":{"scheduler.instance":"manual"},"database":false,"database_role":"stand-by","failure_domain":"rack1","fingerprint":"ab12","message":"No heartbeat answered for 5.0 seconds","roles":["database-standby"],"server_name":"m2","status":"OFFLINE","url":"https://127.0.0.1:8444"}"#
        #expect(try Self.encode(try Self.decode(ClusterMemberInfo.self, json)) == json)
    }

    @Test func clusterInfoFromLXDKeepsItsMemberConfigKeys() throws {
        let json = """
            {"server_name":"lxd01","enabled":true,"member_config":[{"entity":"storage-pool","name":"local","key":"source",
             "value":"","description":"\\"source\\" property for storage pool \\"local\\""}]}
            """
        let info = try Self.decode(ClusterInfo.self, json)
        #expect(info.memberConfig == [ClusterMemberConfigKey(entity: "storage-pool", name: "local", key: "source", value: "",
                                                             description: "\"source\" property for storage pool \"local\"")])
        let (sent, encoded) = try Self.keysThrough(ClusterInfo.self, json)
        #expect(sent == encoded)
        // LXD sends null when a member needs no keys; this server sends [].
        #expect(try Self.decode(ClusterInfo.self, #"{"server_name":"a","enabled":false,"member_config":null}"#).memberConfig == [])
        #expect(try Self.encode(ClusterInfo(serverName: "m1", enabled: true)) == #"{"enabled":true,"member_config":[],"server_name":"m1"}"#)
    }

    @Test func clusterPutAsLXDsClientSendsItDecodes() throws {
        let json = """
            {"server_name":"node2","enabled":true,"member_config":[],"cluster_address":"10.0.0.1:8443",
             "cluster_certificate":"","server_address":"10.0.0.2:8443","cluster_token":"eyJzZXJ2ZXJfbmFtZSI6Im5vZGUyIn0="}
            """
        let put = try Self.decode(ClusterPut.self, json)
        #expect(put.clusterToken == "eyJzZXJ2ZXJfbmFtZSI6Im5vZGUyIn0=" && put.serverName == "node2" && put.enabled == true)
        let (sent, encoded) = try Self.keysThrough(ClusterPut.self, json)
        #expect(sent == encoded)
        // What lxdctl sends: only the fields it sets.
        #expect(try Self.encode(ClusterPut(clusterToken: "t")) == #"{"cluster_token":"t"}"#)
        #expect(try Self.encode(ClusterPut(serverName: "m1", enabled: true)) == #"{"enabled":true,"server_name":"m1"}"#)
    }

    @Test func clusterMemberPutFromLXDRoundTripsEveryKey() throws {
        let json = #"{"roles":["database"],"failure_domain":"rack1","description":"","config":{"scheduler.instance":"all"},"groups":["default"]}"#
        let put = try Self.decode(ClusterMemberPut.self, json)
        #expect(put.failureDomain == "rack1" && put.config == ["scheduler.instance": "all"] && put.groups == ["default"])
        let (sent, encoded) = try Self.keysThrough(ClusterMemberPut.self, json)
        #expect(sent == encoded)
    }

    @Test func joinTokenRequestKeepsItsKeys() throws {
        #expect(try Self.encode(ClusterMembersPost(serverName: "m4")) == #"{"server_name":"m4"}"#)
    }

    @Test func memberToMemberBodiesAreByteForByteTheSame() throws {
        let accept = #"{"address":"127.0.0.1:8444","api_extensions":6,"certificate":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n","schema_version":7,"secret":"s3","server_name":"m2"}"#
        #expect(try Self.encode(try Self.decode(ClusterAcceptRequest.self, accept)) == accept)
        let answer = #"{"dqlite_id":2,"members":[{"address":"127.0.0.1:8443","dqlite_id":1,"fingerprint":"aa","name":"m1"},{"address":"127.0.0.1:8444","dqlite_id":2,"fingerprint":"bb","name":"m2"}]}"#
        #expect(try Self.encode(try Self.decode(ClusterAcceptResponse.self, answer)) == answer)
        let beat = #"{"members":[{"address":"127.0.0.1:8443","dqlite_id":1,"fingerprint":"aa","name":"m1"}]}"#
        #expect(try Self.encode(try Self.decode(ClusterHeartbeat.self, beat)) == beat)
    }

    // MARK: Certificates

    @Test func certificateFromLXDDecodesItsNullProjects() throws {
        let json = #"{"name":"laptop","type":"client","restricted":false,"projects":null,"certificate":"MIIBzTCCAVOgAwIBAgIRAP","fingerprint":"8e3c1b"}"#
        let c = try Self.decode(CertificateInfo.self, json)
        #expect(c == CertificateInfo(name: "laptop", type: "client", restricted: false, certificate: "MIIBzTCCAVOgAwIBAgIRAP", fingerprint: "8e3c1b"))
        let (sent, encoded) = try Self.keysThrough(CertificateInfo.self, json)
        #expect(sent == encoded)
        #expect(try Self.encode(c) == #"{"certificate":"MIIBzTCCAVOgAwIBAgIRAP","fingerprint":"8e3c1b","name":"laptop","projects":[],"restricted":false,"type":"client"}"#)
    }

    @Test func certificatesPostAsLXCSendsItDecodes() throws {
        let json = #"{"name":"laptop","type":"client","restricted":false,"projects":null,"certificate":"","password":"","token":true}"#
        let post = try Self.decode(CertificatesPost.self, json)
        #expect(post.token == true && post.name == "laptop" && post.password == "")
        // What lxdctl sends for a token.
        #expect(try Self.encode(CertificatesPost(name: "laptop", type: "client", token: true, expiresAt: "2030-01-01T00:00:00Z"))
            == #"{"expires_at":"2030-01-01T00:00:00Z","name":"laptop","token":true,"type":"client"}"#)
        let answer = #"{"addresses":["127.0.0.1:8443"],"client_name":"laptop","fingerprint":"8e3c1b","token":"eyJhIjoxfQ=="}"#
        #expect(try Self.encode(try Self.decode(CertificateToken.self, answer)) == answer)
    }

    // MARK: Operations, events, instances

    @Test func operationFromLXDRoundTripsEveryKey() throws {
        let json = """
            {"id":"b8d84888-1dc2-44fd-b386-7f679e171ba5","class":"task","description":"Creating instance","created_at":"2026-11-27T11:00:00.1Z",
             "updated_at":"2026-11-27T11:00:01.2Z","status":"Running","status_code":103,"resources":{"instances":["/1.0/instances/c1"]},
             "metadata":{"create_instance_from_image_unpack_progress":"Unpack: 100% (3.2GB/s)"},"may_cancel":false,"err":"","location":"lxd01"}
            """
        let op = try Self.decode(Operation.self, json)
        #expect(op.knownStatus == .running)
        let (sent, encoded) = try Self.keysThrough(Operation.self, json)
        #expect(sent == encoded)
    }

    @Test func eventFromLXDRoundTripsEveryKey() throws {
        let json = """
            {"type":"lifecycle","timestamp":"2026-11-27T11:00:00.123456789Z","metadata":{"action":"instance-started",
             "source":"/1.0/instances/c1","context":{},"requestor":{"username":"root","protocol":"unix","address":"@"}},
             "location":"lxd01","project":"default"}
            """
        let event = try Self.decode(Event.self, json)
        #expect(event.metadata["action"]?.stringValue == "instance-started")
        let (sent, encoded) = try Self.keysThrough(Event.self, json)
        #expect(sent == encoded)
    }

    @Test func instanceFromLXDRoundTripsEveryKey() throws {
        let json = """
            {"architecture":"x86_64","config":{"image.os":"busybox"},"devices":{},"ephemeral":false,"profiles":["default"],"stateful":false,
             "description":"","created_at":"2026-11-27T11:00:00Z","expanded_config":{"image.os":"busybox"},
             "expanded_devices":{"root":{"path":"/","pool":"default","type":"disk"}},"name":"c1","status":"Running","status_code":103,
             "last_used_at":"2026-11-27T11:00:01Z","location":"lxd01","type":"container","project":"default"}
            """
        let instance = try Self.decode(Instance.self, json)
        #expect(instance.knownStatus == .running && instance.location == "lxd01")
        let (sent, encoded) = try Self.keysThrough(Instance.self, json)
        #expect(sent == encoded)
    }

    @Test func instanceStateFromLXDRoundTripsEveryKey() throws {
        let json = """
            {"status":"Running","status_code":103,"disk":{},"memory":{"usage":1048576,"usage_peak":2097152,"total":0,"swap_usage":0,
             "swap_usage_peak":0},"network":{"lo":{"addresses":[],"counters":{"bytes_received":0},"hwaddr":"","host_name":"","mtu":65536,
             "state":"up","type":"loopback"}},"pid":4242,"processes":3,"cpu":{"usage":123456789}}
            """
        let state = try Self.decode(InstanceState.self, json)
        #expect(state.knownStatus == .running && state.pid == 4242 && state.memory.usagePeak == 2097152)
        let (sent, encoded) = try Self.keysThrough(InstanceState.self, json)
        #expect(sent == encoded)
    }

    @Test func anUnknownStatusCodeIsKeptAndSetStatusWritesNameAndCodeTogether() throws {
        var instance = try Self.decode(Instance.self, """
            {"architecture":"x86_64","config":{},"devices":{},"ephemeral":false,"profiles":[],"stateful":false,"description":"",
             "created_at":"","expanded_config":{},"expanded_devices":{},"name":"c1","status":"Hibernating","status_code":199,
             "last_used_at":"","location":"m1","type":"container","project":"default"}
            """)
        #expect(instance.knownStatus == nil && instance.status == "Hibernating" && instance.statusCode == 199)
        instance.setStatus(.error)
        #expect(instance.status == "Error" && instance.statusCode == 112 && instance.knownStatus == .error)
    }

    // MARK: Migration modes

    @Test func aMembersMigrationIsAnExtraFieldWithSnakeCaseKeys() throws {
        let json = #"{"config":{},"database":true,"database_role":"voter","failure_domain":"default","fingerprint":"ab","message":"Fully operational","migration":{"criu_version":"4.2.1","live_moves":{"m2":{"mode":"stop-and-copy","possible":true},"m3":{"possible":false,"reason":"member m3 is offline"}},"modes":{"post-copy":{"available":false,"reason":"fs.pipe-max-size is 1048576"},"pre-copy":{"available":false,"reason":"the kernel has no soft-dirty memory tracking (mem_dirty_track)"},"stop-and-copy":{"available":true}}},"roles":[],"server_name":"m1","status":"ONLINE","url":"https://127.0.0.1:8443"}"#
        let m = try Self.decode(ClusterMemberInfo.self, json)
        #expect(m.migration?.criuVersion == "4.2.1")
        #expect(m.migration?.modes["stop-and-copy"] == MigrationModeAvailability(available: true))
        #expect(m.migration?.modes["pre-copy"]?.reason == "the kernel has no soft-dirty memory tracking (mem_dirty_track)")
        #expect(m.migration?.liveMoves["m2"] == LiveMoveAvailability(possible: true, mode: "stop-and-copy"))
        #expect(m.migration?.liveMoves["m3"] == LiveMoveAvailability(possible: false, reason: "member m3 is offline"))
        #expect(try Self.encode(m) == json)
        // A member without CRIU sends no version; a partial object still decodes.
        let bare = try Self.decode(MemberMigration.self, #"{"modes":{}}"#)
        #expect(bare.criuVersion == nil && bare.liveMoves.isEmpty)
    }

    @Test func aMoveNamesItsModeInMigrationMode() throws {
        let post = InstancePost(name: "c1", migration: true, live: true, migrationMode: "pre-copy")
        #expect(try Self.encode(post) == #"{"live":true,"migration":true,"migration_mode":"pre-copy","name":"c1"}"#)
        // lxc's body has none.
        let lxc = try Self.decode(InstancePost.self, #"{"name":"c1","migration":true,"live":true,"instance_only":false}"#)
        #expect(lxc.migrationMode == nil && lxc.live == true)
        #expect(try Self.decode(InstancePost.self, #"{"migration":true,"migration_mode":"post-copy"}"#).migrationMode == "post-copy")
    }

    @Test func theMoveCallsCarryTheModeOnlyWhenThereIsOne() throws {
        let prepare = MovePrepareRequest(token: String(repeating: "a", count: 32), project: "default", name: "c1", source: "m1",
                                         method: "live", mode: "stop-and-copy")
        #expect(try Self.encode(prepare).contains(#""mode":"stop-and-copy""#))
        #expect(try Self.decode(MovePrepareRequest.self, try Self.encode(prepare)) == prepare)
        let cold = MovePrepareRequest(token: prepare.token, project: "default", name: "c1", source: "m1", method: "cold")
        #expect(!(try Self.encode(cold)).contains("mode"))
        // An older source sends none.
        let old = try Self.decode(MoveHandOverRequest.self, #"{"token":"t","project":"default","name":"c1","method":"live"}"#)
        #expect(old.mode == nil)
        let handOver = MoveHandOverRequest(token: "t", project: "default", name: "c1", method: "live", mode: "post-copy")
        #expect(try Self.decode(MoveHandOverRequest.self, try Self.encode(handOver)) == handOver)
    }
}
