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
#include <sys/syscall.h>
#include <stdint.h>

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

// sched_setattr(2)/sched_getattr(2) have no glibc wrapper (before 2.41): the calling thread's scheduler slice.
// Linux 6.12+ (EEVDF) takes a SCHED_OTHER thread's `sched_runtime` as its requested slice (0.1-100 ms): a thread
// with a shorter slice gets an earlier virtual deadline, so it waits less for a CPU when it wakes or is due.
// Returns 0 on success, else an errno value; older kernels accept and ignore the value.
struct asynccom_sched_attr {
    uint32_t size, sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime, sched_deadline, sched_period;
};
static inline int asynccom_set_thread_slice(uint64_t nanos) {
#if defined(SYS_sched_setattr) && defined(SYS_sched_getattr)
    struct asynccom_sched_attr attr;
    memset(&attr, 0, sizeof attr);
    if (syscall(SYS_sched_getattr, 0, &attr, (unsigned)sizeof attr, 0) != 0) return errno;
    if (attr.sched_policy != 0) return EPERM;  // only SCHED_OTHER threads: leave real-time or idle ones alone
    attr.size = sizeof attr;
    attr.sched_flags = 0;
    attr.sched_runtime = nanos;
    attr.sched_deadline = 0;
    attr.sched_period = 0;
    return syscall(SYS_sched_setattr, 0, &attr, 0) == 0 ? 0 : errno;
#else
    (void)nanos;
    return ENOSYS;
#endif
}
// Thread `tid`'s (0: the caller's) requested slice in ns (0: the kernel's default, or no custom slices).
static inline uint64_t asynccom_thread_slice(int tid) {
#if defined(SYS_sched_getattr)
    struct asynccom_sched_attr attr;
    memset(&attr, 0, sizeof attr);
    if (syscall(SYS_sched_getattr, tid, &attr, (unsigned)sizeof attr, 0) != 0) return 0;
    return attr.sched_runtime;
#else
    return 0;
#endif
}

// CPU affinity through the raw syscalls: glibc's cpu_set_t and CPU_SET are macros under _GNU_SOURCE, which Swift's
// Glibc module does not define. A mask of up to 1024 CPUs (glibc's CPU_SETSIZE).
#define ASYNCCOM_CPU_WORDS (1024 / (8 * sizeof(unsigned long)))
// The CPUs thread `tid` (0: the calling thread) may run on, ascending, into `cpus` (at most `max`). Returns how many,
// or -errno.
static inline int asynccom_thread_cpus(int tid, int *cpus, int max) {
    unsigned long mask[ASYNCCOM_CPU_WORDS];
    memset(mask, 0, sizeof mask);
    long got = syscall(SYS_sched_getaffinity, tid, sizeof mask, mask);
    if (got < 0) return -errno;
    int n = 0;
    for (int i = 0; i < (int)(got * 8) && n < max; i++) {
        if (mask[i / (8 * sizeof(unsigned long))] & (1UL << (i % (8 * sizeof(unsigned long))))) cpus[n++] = i;
    }
    return n;
}
// Binds the calling thread to CPU `cpu` alone. Returns 0 or an errno value.
static inline int asynccom_pin_thread(int cpu) {
    if (cpu < 0 || cpu >= 1024) return EINVAL;
    unsigned long mask[ASYNCCOM_CPU_WORDS];
    memset(mask, 0, sizeof mask);
    mask[cpu / (8 * sizeof(unsigned long))] = 1UL << (cpu % (8 * sizeof(unsigned long)));
    return syscall(SYS_sched_setaffinity, 0, sizeof mask, mask) == 0 ? 0 : errno;
}

// accept4 is declared only under _GNU_SOURCE, which Swift's Glibc module does not define: bind the symbol.
extern int asynccom_accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags) __asm__("accept4");

#endif
