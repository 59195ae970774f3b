#ifndef SSE_KEEPALIVE_CZLIB_SHIM_H
#define SSE_KEEPALIVE_CZLIB_SHIM_H

// The probe's gzip/deflate decoder. Only Probe/ProbeInflate.swift imports this.
#include <zlib.h>

// inflateInit2 is a macro over inflateInit2_.
static inline int sse_inflate_init2(z_stream *stream, int window_bits) { return inflateInit2(stream, window_bits); }

#endif
