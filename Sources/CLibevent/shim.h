#ifndef SSE_KEEPALIVE_CLIBEVENT_SHIM_H
#define SSE_KEEPALIVE_CLIBEVENT_SHIM_H

// sys/types.h must come first: without it clean builds fail on fd_set's
// __fds_bits while incremental builds pass (see DESIGN.md).
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <sys/inotify.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <event2/event.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <event2/util.h>

static inline int sse_errno(void) { return errno; }
static inline void sse_ignore_sigpipe(void) { signal(SIGPIPE, SIG_IGN); }

#endif
