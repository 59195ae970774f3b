// libFuzzer entry of the `path_normalise` target; the properties are in
// Tests/SSEKeepaliveTests/FuzzRegressionTests.swift (FuzzPathNormalise).
// Built and run by scripts/fuzz.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    fuzzRun(.pathNormalise, data, size)
}
