// libFuzzer entry of the `sse_heartbeat` target; the properties are in
// Tests/SSEKeepaliveTests/FuzzRegressionTests.swift (FuzzTarget.sseHeartbeat).
// Built and run by scripts/fuzz.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    fuzzRun(.sseHeartbeat, data, size)
}
