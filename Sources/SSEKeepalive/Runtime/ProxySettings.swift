/// A loaded config as the workers use it: the pure route table plus the
/// resolved address of every upstream it names. Computed once per (re)load,
/// and again when the resolver thread finds that a host name moved.
final class ProxySettings: @unchecked Sendable {
    let table: RouteTable
    /// Every upstream address in use, by spec (what the resolver thread looks up again).
    let upstreams: [SocketAddressSpec: ResolvedAddress]

    var config: Config { table.config }

    /// `known`: addresses already looked up (by the resolver thread); the rest
    /// are resolved now. `onConnectFailure`: told when a connect to a host
    /// name's address fails.
    init(config: Config, known: [SocketAddressSpec: ResolvedAddress] = [:],
         onConnectFailure: (@Sendable () -> Void)? = nil) throws(ResolvedAddress.Failure) {
        table = RouteTable(config: config)
        var resolved: [SocketAddressSpec: ResolvedAddress] = [:]
        for spec in table.upstreams {
            if let address = known[spec] {
                resolved[spec] = address
            } else {
                resolved[spec] = try ResolvedAddress(spec, onConnectFailure: onConnectFailure)
            }
        }
        upstreams = resolved
    }

    /// The resolved address of an upstream named by this settings' table.
    func address(of spec: SocketAddressSpec) -> ResolvedAddress? { upstreams[spec] }
}
