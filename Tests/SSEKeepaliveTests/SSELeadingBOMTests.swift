import XCTest
@testable import SSEKeepalive

final class SSELeadingBOMTests: XCTestCase {
    func testDecisionTable() {
        let cases: [([UInt8], Bool, LeadingBOM)] = [
            ([0xEF, 0xBB, 0xBF], false, .strip),
            ([0xEF, 0xBB, 0xBF], true, .strip),
            ([0xEF, 0xBB, 0xBF, 0x64, 0x61], false, .strip),
            ([0xEF, 0xBB, 0xBF, 0xEF, 0xBB, 0xBF], true, .strip),
            ([0xEF], false, .wait),
            ([0xEF, 0xBB], false, .wait),
            ([0xEF], true, .keep),
            ([0xEF, 0xBB], true, .keep),
            ([0xEF, 0xBB, 0xBE], false, .keep),
            ([0xEF, 0xBC], false, .keep),
            ([0xEE], false, .keep),
            ([0xBB, 0xBF], false, .keep),
            (Array("data: x\n\n".utf8), false, .keep),
            ([0x0A], false, .keep),
            ([0xFE, 0xFF], false, .keep),   // a UTF-16 BOM is not ours to drop
            ([], false, .wait),
            ([], true, .keep),
        ]
        for (bytes, eos, expected) in cases {
            XCTAssertEqual(LeadingBOM.decide(bytes, endOfStream: eos), expected, "\(bytes) eos=\(eos)")
            bytes.withUnsafeBytes {
                XCTAssertEqual(LeadingBOM.decide($0, endOfStream: eos), expected)
            }
        }
        XCTAssertEqual(LeadingBOM.bytes, [0xEF, 0xBB, 0xBF])
    }
}
