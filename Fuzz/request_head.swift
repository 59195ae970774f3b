// libFuzzer entry of the `request_head` target; the properties are in
// Tests/SSEKeepaliveTests/FuzzRegressionTests.swift (FuzzTarget.requestHead).
// Built and run by scripts/fuzz.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    fuzzRun(.requestHead, data, size)
}
