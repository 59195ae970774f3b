"""Server-Sent Events helpers.

- `parse`: the event-stream interpretation of the HTML standard (section
  9.2.6), as a browser's EventSource does it, on a complete byte stream.
- `strip_heartbeats`: removes the comments the proxy injects, and only those.
- `align`: explains a proxied payload as "upstream bytes + heartbeats inserted
  at offsets" and reports every place where that is not true or where a
  heartbeat sits somewhere docs/behaviour.md ("Heartbeats") forbids. This is the strict check.
"""
from __future__ import annotations

import codecs
from dataclasses import dataclass, field

BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Event:
    type: str
    data: str
    last_event_id: str


@dataclass
class ParseResult:
    events: list[Event] = field(default_factory=list)
    last_event_id: str = ""  # the "last event ID string" after the stream ends
    retry: int | None = None  # reconnection time set by `retry:` fields

    def as_tuple(self):
        return (self.events, self.last_event_id, self.retry)


def split_lines(text: str):
    """Yield (line, terminated) for each line; CRLF, LF and lone CR end lines.
    The last item is the unterminated remainder (possibly empty)."""
    i, start, n = 0, 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n" or c == "\r":
            yield text[start:i], True
            if c == "\r" and i + 1 < n and text[i + 1] == "\n":
                i += 1
            start = i + 1
        i += 1
    yield text[start:], False


def parse(payload: bytes) -> ParseResult:
    """Parse a whole event stream. Incomplete trailing events are discarded."""
    # UTF-8 decode strips exactly one leading BOM; invalid bytes become U+FFFD.
    text = codecs.decode(payload, "utf-8-sig", errors="replace") if payload.startswith(BOM) \
        else payload.decode("utf-8", errors="replace")
    result = ParseResult()
    data_buf, type_buf, id_buf = "", "", ""
    for line, terminated in split_lines(text):
        if not terminated:
            break  # a line cut by the end of the stream is never processed
        if line == "":
            result.last_event_id = id_buf
            if data_buf == "":
                type_buf = ""
                continue
            if data_buf.endswith("\n"):
                data_buf = data_buf[:-1]
            result.events.append(Event(type_buf or "message", data_buf, result.last_event_id))
            data_buf, type_buf = "", ""
            continue
        if line.startswith(":"):
            continue
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "event":
            type_buf = value
        elif name == "data":
            data_buf += value + "\n"
        elif name == "id":
            if "\0" not in value:
                id_buf = value
        elif name == "retry":
            if value and all("0" <= ch <= "9" for ch in value):
                result.retry = int(value)
    return result


class LineCursor:
    """Tracks, byte by byte, where an event stream is: the proxy's view of
    "safe points". Mirrors the states of docs/behaviour.md, "Heartbeats"."""

    def __init__(self):
        self.at_start = True
        self.last_line_blank = True  # start of stream counts as a boundary
        self.line_len = 0  # bytes in the current, unterminated line
        self.after_cr = False

    def feed(self, data: bytes):
        for b in data:
            self.at_start = False
            if b == 0x0A and self.after_cr:  # LF of a CRLF: no new line
                self.after_cr = False
                continue
            self.after_cr = b == 0x0D
            if b in (0x0A, 0x0D):
                self.last_line_blank = self.line_len == 0
                self.line_len = 0
            else:
                self.line_len += 1

    @property
    def safe(self) -> bool:
        """A heartbeat may go here: start of stream or right after an LF."""
        return self.at_start or (self.line_len == 0 and not self.after_cr)

    @property
    def at_boundary(self) -> bool:
        return self.safe and self.last_line_blank


def heartbeat_bytes(comment: str = "heartbeat", boundary: bool = True, blank_line: bool = True) -> bytes:
    line = b":" + comment.encode() + b"\n"
    return line + b"\n" if (boundary and blank_line) else line


def strip_heartbeats(payload: bytes, comment: str = "heartbeat", blank_line: bool = True) -> bytes:
    """Remove injected heartbeats: whole lines equal to `:comment` found at the
    only places the proxy may put them (start of stream, or after an LF).
    At an event boundary the boundary form (with its blank line) is removed;
    inside an event only the comment line, so an upstream blank line that
    follows is kept. A heartbeat after a lone CR is left in place on purpose,
    so that the byte comparison fails."""
    out = bytearray()
    cursor = LineCursor()
    i = 0
    while i < len(payload):
        if cursor.safe:
            hb = heartbeat_bytes(comment, cursor.at_boundary, blank_line)
            if payload.startswith(hb, i):
                i += len(hb)
                continue
        # Copy up to and including the next LF (or to the end).
        nl = payload.find(b"\n", i)
        end = len(payload) if nl < 0 else nl + 1
        chunk = payload[i:end]
        out += chunk
        cursor.feed(chunk)
        i = end
    return bytes(out)


@dataclass(frozen=True)
class Insertion:
    offset: int  # upstream payload offset the heartbeat was inserted at
    data: bytes
    client_offset: int  # where it starts in the client's payload


@dataclass
class Alignment:
    ok: bool
    insertions: list[Insertion]
    bom_dropped: bool
    problems: list[str]


def align(client: bytes, upstream: bytes, comment: str = "heartbeat", blank_line: bool = True) -> Alignment:
    """Check that `client` is `upstream` with heartbeats inserted only at safe
    points, in the right form, and with the leading BOM dropped if and only
    if a heartbeat came before the first upstream byte (docs/behaviour.md, "Heartbeats", "The leading BOM")."""
    problems: list[str] = []
    insertions: list[Insertion] = []
    cursor = LineCursor()
    i = j = 0
    bom_dropped = False
    any_line = heartbeat_bytes(comment, False)

    def upstream_matches_here():
        return j < len(upstream) and i < len(client) and client[i] == upstream[j]

    while i < len(client):
        hb_here = client.startswith(any_line, i)
        # Prefer the upstream's own bytes when both readings are possible.
        if upstream_matches_here() and (not hb_here or upstream.startswith(any_line, j)):
            cursor.feed(upstream[j:j + 1])
            i += 1
            j += 1
            continue
        if not hb_here:
            problems.append(f"client byte {i} ({client[i:i+20]!r}) differs from upstream byte {j} "
                            f"({upstream[j:j+20]!r})")
            break
        expected = heartbeat_bytes(comment, cursor.at_boundary, blank_line)
        if not cursor.safe:
            problems.append(f"heartbeat at upstream offset {j} after {upstream[max(0, j-12):j]!r}: "
                            "not at a line boundary")
        if not client.startswith(expected, i):
            problems.append(f"heartbeat at upstream offset {j}: expected {expected!r}, "
                            f"got {client[i:i+len(expected)]!r}")
            expected = any_line
        insertions.append(Insertion(j, expected, i))
        i += len(expected)
        # After a leading heartbeat the upstream's BOM must be gone (expected,
        # not guessed: with two BOMs the client still shows one). The
        # heartbeat already ended a line, so the cursor needs no update.
        if j == 0 and upstream.startswith(BOM) and not client.startswith(any_line, i):
            bom_dropped = True
            j = len(BOM)
    if not problems and j != len(upstream):
        problems.append(f"client payload ends at upstream byte {j} of {len(upstream)}: "
                        f"missing {upstream[j:j+40]!r}")
    if problems and bom_dropped:
        problems.append("(the leading BOM was expected to be dropped after the leading heartbeat)")
    return Alignment(not problems, insertions, bom_dropped, problems)


def offsets(alignment: Alignment) -> list[int]:
    return [ins.offset for ins in alignment.insertions]


def describe(client: bytes, upstream: bytes, alignment: Alignment) -> str:
    """Failure message with both payloads (truncated) and the problems."""
    return (f"problems: {alignment.problems}\n  insertions: {offsets(alignment)}\n"
            f"  upstream: {upstream[:300]!r}\n  client:   {client[:400]!r}")
