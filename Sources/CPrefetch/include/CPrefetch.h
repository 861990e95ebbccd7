#ifndef ASYNCCOM_CPREFETCH_H
#define ASYNCCOM_CPREFETCH_H

// A hint to fetch the cache line holding `p` into every cache level (no fault, no effect on results). Swift has
// no way to say this; AsyncComCore's `Prefetch.forRead` is the one caller.
static inline void asynccom_prefetch(const void *p) { __builtin_prefetch(p, 0, 3); }

#endif
