// libFuzzer entry of the `response_chunked` target; the properties are in
// Tests/SSEKeepaliveTests/FuzzRegressionTests.swift (FuzzTarget.responseChunked).
// Built and run by scripts/fuzz.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    fuzzRun(.responseChunked, data, size)
}
