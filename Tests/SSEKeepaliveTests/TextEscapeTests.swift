import XCTest
@testable import SSEKeepalive

/// Each quoting style escapes exactly its own set and passes the rest through.
final class TextEscapeTests: XCTestCase {
    let sample = "a\"b\\c\nd\re\tf\u{1}g\u{7F}h\0iü\u{85}\u{2028}\u{FEFF}"

    func testMessage() {
        XCTAssertEqual(TextEscape.message(sample), "a\\\"b\\\\c\\nd\\re\\tf\\x01g\\x7Fh\\x00iü\u{85}\u{2028}\u{FEFF}")
    }

    func testYAML() {
        XCTAssertEqual(TextEscape.yaml(sample), "a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u007Fh\\0iü\\u0085\\u2028\\uFEFF")
    }

    func testLogField() {
        XCTAssertEqual(TextEscape.logField(sample), "a\\\"b\\\\c\\x0ad\\x0de\\x09f\\x01g\\x7fh\\x00iü\u{85}\u{2028}\u{FEFF}")
    }

    func testJSON() {
        XCTAssertEqual(TextEscape.json(sample), "a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u007fh\\u0000iü\u{85}\u{2028}\u{FEFF}")
    }

    func testPrometheus() {
        XCTAssertEqual(TextEscape.prometheusLabel(sample), "a\\\"b\\\\c\\nd\re\tf\u{1}g\u{7F}h\0iü\u{85}\u{2028}\u{FEFF}")
        XCTAssertEqual(TextEscape.prometheusHelp(sample), "a\"b\\\\c\\nd\re\tf\u{1}g\u{7F}h\0iü\u{85}\u{2028}\u{FEFF}")
    }

    func testPlainTextPassesThroughAndAppendAppends() {
        for style in [TextEscape.message, .yaml, .logField, .json, .prometheusLabel, .prometheusHelp] {
            XCTAssertEqual(style("/events?x=ü ♥"), "/events?x=ü ♥")
            var out = "<"
            style.append("x\\", to: &out)
            XCTAssertEqual(out, "<x\\\\")
        }
    }
}
