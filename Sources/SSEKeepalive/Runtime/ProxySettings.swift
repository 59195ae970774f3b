/// A loaded config as the workers use it: the pure route table plus the
/// resolved address of every upstream it names. Computed once per (re)load.
final class ProxySettings: @unchecked Sendable {
    let table: RouteTable
    private let addresses: [SocketAddressSpec: ResolvedAddress]

    var config: Config { table.config }

    init(config: Config) throws(ResolvedAddress.Failure) {
        table = RouteTable(config: config)
        var addresses: [SocketAddressSpec: ResolvedAddress] = [:]
        for spec in table.upstreams {
            addresses[spec] = try ResolvedAddress(spec)
        }
        self.addresses = addresses
    }

    /// The resolved address of an upstream named by this settings' table.
    func address(of spec: SocketAddressSpec) -> ResolvedAddress? { addresses[spec] }
}
