import SSEKeepalive
print("sse-keepalive")
