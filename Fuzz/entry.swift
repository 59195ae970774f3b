// The libFuzzer entry of every target: one binary, the target named by
// SSE_FUZZ_TARGET (scripts/fuzz sets it). The properties are in
// Tests/SSEKeepaliveTests/FuzzRegressionTests.swift (`FuzzTarget`).
// Only libc is imported here, for the environment.

#if canImport(Glibc)
import Glibc
#endif

nonisolated(unsafe) private var selectedTarget: FuzzTarget?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    if selectedTarget == nil {
        let name = getenv("SSE_FUZZ_TARGET").map { String(cString: $0) } ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            fatalError("SSE_FUZZ_TARGET=\(name): not one of \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        selectedTarget = target
    }
    return fuzzRun(selectedTarget!, data, size)
}
