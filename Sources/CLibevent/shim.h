#ifndef ASYNCCOM_CLIBEVENT_SHIM_H
#define ASYNCCOM_CLIBEVENT_SHIM_H

// libc first: Clang's module check on event2/ needs fd_set and friends already declared.
#include <sys/types.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <fcntl.h>
#include <unistd.h>
#include <signal.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <sys/uio.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <event2/util.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

// Function-like macros are not imported by Swift: tiny inline stand-ins.
static inline struct event *asynccom_evsignal_new(struct event_base *base, int signum,
                                                  event_callback_fn cb, void *arg) {
    return event_new(base, signum, EV_SIGNAL | EV_PERSIST, cb, arg);
}

static inline int asynccom_errno(void) { return errno; }

// A hint to fetch the cache line holding `p` (no fault, no effect on results). Swift has no way to say this.
static inline void asynccom_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

// recv(2) that also gives the kernel's receive time (CLOCK_REALTIME, ns) of the newest segment read, or 0 when
// there is none (SO_TIMESTAMPNS off, or nothing read). The CMSG_* accessors are macros: Swift cannot use them.
static inline ssize_t asynccom_recv_stamped(int fd, void *buf, size_t len, int64_t *stamp_ns) {
    struct iovec iov = { buf, len };
    union { char bytes[CMSG_SPACE(sizeof(struct timespec))]; struct cmsghdr align; } control;
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.bytes;
    msg.msg_controllen = sizeof control.bytes;
    ssize_t n = recvmsg(fd, &msg, 0);
    *stamp_ns = 0;
    if (n > 0) {
        for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c != NULL; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
                struct timespec ts;
                memcpy(&ts, CMSG_DATA(c), sizeof ts);
                *stamp_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
            }
        }
    }
    return n;
}

// accept4 is declared only under _GNU_SOURCE, which Swift's Glibc module does not define: bind the symbol.
extern int asynccom_accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags) __asm__("accept4");

#endif
