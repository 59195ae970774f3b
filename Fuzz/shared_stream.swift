// libFuzzer entry of the `shared_stream` target; the properties are in
// Tests/SSEKeepaliveTests/FuzzSharedStream.swift (FuzzTarget.sharedStream).
// Built and run by scripts/fuzz.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    fuzzRun(.sharedStream, data, size)
}
