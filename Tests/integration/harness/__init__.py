"""Black-box test harness for sse-keepalive: a scriptable upstream, a raw
HTTP/1.x client, a WHATWG SSE parser and a process fixture for the proxy."""
