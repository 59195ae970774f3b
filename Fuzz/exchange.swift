// libFuzzer entry of the `exchange` target; the properties are in
// Tests/SSEKeepaliveTests/FuzzExchange.swift (FuzzTarget.exchange).
// Built and run by scripts/fuzz.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    fuzzRun(.exchange, data, size)
}
