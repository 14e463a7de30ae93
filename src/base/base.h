/* base.h — status codes, error messages, checked allocation and small helpers shared by
 * every part of longcat.c. Holds no model, file-format or kernel knowledge. */
#ifndef LC_BASE_H
#define LC_BASE_H

#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>

/* Every public function returns an lc_status; on failure the message that says what was
 * wrong and where is available from lc_last_error() (thread-local, like errno). */
typedef enum {
    LC_OK = 0,
    LC_ERR_IO,      /* open/read/write/mmap failed */
    LC_ERR_FORMAT,  /* a file is malformed (safetensors header, JSON, ...) */
    LC_ERR_CONFIG,  /* config.json missing a key or holding an invalid value */
    LC_ERR_SHAPE,   /* a tensor is missing or has the wrong shape or dtype */
    LC_ERR_NOMEM,   /* allocation failed */
    LC_ERR_ARG,     /* bad argument from the caller (token id out of range, ...) */
    LC_ERR_UNSUPPORTED,
} lc_status;

/* Sets the thread's error message (printf-style) and returns `code`. */
lc_status lc_error(lc_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Prepends context ("loading model.layers.3: ") to the current message; returns `code`. */
lc_status lc_error_context(lc_status code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
const char *lc_last_error(void);
const char *lc_status_name(lc_status s);

/* Allocation that records an error message on failure. Sizes are checked for overflow. */
void *lc_malloc(size_t n, const char *what);
void *lc_calloc(size_t count, size_t size, const char *what);
void *lc_aligned_alloc(size_t n, const char *what); /* 64-byte aligned; free with lc_free */
void lc_free(void *p);
char *lc_strdup(const char *s);

/* Scratch memory for the short-lived buffers of one call (a decode step allocates ~500 per
 * token, each ~100-200 ns through malloc/free): a stack per thread, in chunks it keeps. Take a
 * mark, allocate (64-byte aligned; NULL with an error message when out of memory), and release
 * the mark before returning: every block allocated since is gone at once (blocks are never
 * freed one by one). Marks are released innermost first. Under AddressSanitizer released
 * memory and a redzone after each block are poisoned. */
typedef struct {
    void *chunk;
    size_t used;
} lc_scratch_mark;
#if defined(__SANITIZE_ADDRESS__) /* LC_ASAN: built with AddressSanitizer (gcc, clang) */
#define LC_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LC_ASAN 1
#endif
#endif
lc_scratch_mark lc_scratch_mark_get(void);
void *lc_scratch_alloc(size_t n, const char *what);
void lc_scratch_release(lc_scratch_mark m);

/* Paths: join dir and name into a new string. */
char *lc_path_join(const char *dir, const char *name);
int lc_is_dir(const char *path);
int lc_file_exists(const char *path);
/* mkdir -p */
lc_status lc_mkdirs(const char *path);

/* Writes text to path through a temporary file and a rename, so a failure never leaves a
 * half-written file in place. */
lc_status lc_write_text(const char *path, const char *text);

/* Copies a (small) text file; with `optional`, a missing source is not an error. */
lc_status lc_copy_text_file(const char *from, const char *to, int optional);

/* Reads a whole (small) file into a NUL-terminated buffer. */
lc_status lc_read_file(const char *path, char **data, size_t *size);

/* A read-only memory map of a whole file (at a 2 MiB-aligned address). Pages are read only
 * when touched. */
typedef struct {
    char *path;
    const uint8_t *data;
    size_t size;
    int resident; /* lc_mmap_make_resident done: anonymous memory, no longer the file's pages */
} lc_mmap;
lc_status lc_mmap_open(lc_mmap *m, const char *path);
/* Replaces the mapped file pages by an anonymous copy at the same addresses (pointers into the
 * map stay valid), 64 MiB at a time (at most one chunk is held twice; the file's page cache
 * stays reclaimable), advised for transparent huge pages — like llama.cpp's --no-mmap: the
 * weights stay in RAM instead of being paged in and out with the file. */
lc_status lc_mmap_make_resident(lc_mmap *m);
/* n bytes of anonymous memory at a 2 MiB boundary, advised for transparent huge pages (as the
 * resident weights are); lc_huge_free with the same n. */
void *lc_huge_alloc(size_t n, const char *what);
void lc_huge_free(void *p, size_t n);
void lc_mmap_close(lc_mmap *m);

/* Deterministic random numbers (splitmix64 seeding xoshiro256**), identical on every
 * platform, so `init --seed S` writes the same bytes everywhere. */
typedef struct { uint64_t s[4]; } lc_rng;
void lc_rng_seed(lc_rng *r, uint64_t seed);
uint64_t lc_rng_u64(lc_rng *r);
float lc_rng_uniform(lc_rng *r); /* [0, 1) */
float lc_rng_normal(lc_rng *r);  /* N(0, 1) */

double lc_time_sec(void); /* monotonic clock */

#define LC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define LC_MAX(a, b) ((a) > (b) ? (a) : (b))

/* for (i = 0; i < n; i++) { body }: on the thread team (static schedule) when `par`, else as a
 * plain loop with no OpenMP region at all — an `if(0)` region still costs 1-3 us, and decode
 * makes hundreds of small calls per token, some inside other regions. Callers put
 * `&& !lc_in_parallel()` into par. */
#define LC_FOR(par, i, n, ...)                                                                     \
    do {                                                                                           \
        const int64_t lc_for_n_ = (n);                                                             \
        if (par) {                                                                                 \
            _Pragma("omp parallel for schedule(static)") for (int64_t i = 0; i < lc_for_n_; i++) { \
                __VA_ARGS__                                                                        \
            }                                                                                      \
        } else                                                                                     \
            for (int64_t i = 0; i < lc_for_n_; i++) {                                              \
                __VA_ARGS__                                                                        \
            }                                                                                      \
    } while (0)

/* body(i, arg) for every i in [0, n) on the thread team when `par` (else a plain loop): each
 * thread runs its own contiguous share in order; a thread that runs out takes the upper half
 * of what is left of another's share and runs that in order, and so on. Each thread still
 * streams through contiguous ranges (a static schedule's locality), but one slowed down by a
 * neighbour on a shared machine no longer holds the rest up. Which thread runs an item
 * changes no result. n < 2^32. */
void lc_parallel_steal(int par, int64_t n, void (*body)(int64_t i, void *arg), void *arg);

/* The same inside a region the caller runs: shares set up before it (lc_shares_init, nt =
 * the most threads the region may have), then every thread of the team calls lc_shares_run
 * with its number; a barrier after it, where the items' results are needed. */
typedef struct {
    _Alignas(64) _Atomic uint64_t range; /* [lo, hi) of the items left: lo low, hi high */
} lc_share;
void lc_shares_init(lc_share *q, int nt, int64_t n);
void lc_shares_run(lc_share *q, int nt, int id, void (*body)(int64_t i, void *arg), void *arg);

/* A barrier among the threads of a region the caller runs, for the steps between its phases:
 * each thread counts its arrivals on its own cache line and spins until every other one of the
 * team has arrived as often (this machine: 0.1-0.2 us, against ~1.5 us for `omp barrier`, which
 * all threads reach through one shared counter). Slots set up before the region (lc_team_init,
 * nt = the most threads it may have); inside, every thread of the team calls lc_team_barrier
 * with its number and the team's size, as many times as the others. A long wait yields the core. */
typedef struct {
    _Alignas(64) _Atomic int64_t arrived;
} lc_team_slot;
void lc_team_init(lc_team_slot *b, int nt);
/* Shares for `phases` phases of nt threads (phase p's at + p * nt) and, after them, a team
 * barrier's nt slots (*team, initialised): one 64-byte-aligned block from the scratch stack
 * (gone with the caller's lc_scratch_release); NULL when out of memory. */
lc_share *lc_shares_alloc(int phases, int nt, lc_team_slot **team, const char *what);
void lc_team_barrier(lc_team_slot *b, int id, int nt);
/* The same, prefetching (into L2) the n_ahead ranges `ahead` while it waits, a line of each in
 * turn. */
typedef struct {
    const uint8_t *p;
    size_t bytes;
} lc_prefetch_range;
void lc_team_barrier_ahead(lc_team_slot *b, int id, int nt, const lc_prefetch_range *ahead, int n_ahead);
/* Announces the next lc_team_run call of the scope the caller leads (no effect outside one):
 * fn(arg, id, nt, ranges) gives the byte ranges thread id of nt reads first in it (at most
 * LC_AHEAD_RANGES; returns how many), and the team's other threads, while they wait for that
 * call (the leader's serial stretch between calls), prefetch theirs into L2. arg (bytes <=
 * LC_AHEAD_ARG_BYTES) is copied; what it points to must stay valid while the scope lasts (the
 * model's weights). The first announcement before a call stands (later ones are dropped); one
 * not followed by the call it announces is harmless: only prefetches are issued. */
enum { LC_AHEAD_RANGES = 4, LC_AHEAD_ARG_BYTES = 256 };
typedef int (*lc_ahead_fn)(const void *arg, int id, int nt, lc_prefetch_range *ranges);
void lc_team_ahead(lc_ahead_fn fn, const void *arg, size_t bytes);
/* The next item a share's owner would take (its low end), -1 when empty. */
int64_t lc_share_first(const lc_share *q);

/* fn(arg) once on every thread of a team, each seeing its number and the team's size
 * (lc_thread_num, lc_num_threads), returning when all are done: handed to the standing team
 * of an lc_team_scope when the caller leads one, else a new OpenMP region (one thread, inside
 * an inactive region, when the caller already runs in a region). fn may use `omp for` and
 * `omp barrier`: the team is an OpenMP team either way. */
void lc_team_run(void (*fn)(void *arg), void *arg);
/* body(arg) on the calling thread while the other threads of one OpenMP region stand by for
 * its lc_team_run calls: one fork and join for the whole body instead of one per call (a fork
 * and join cost this machine ~5 us, a hand-over ~1 us; a decoded token makes ~40 calls).
 * Inside body the calling thread counts as outside any region (lc_in_parallel() is 0) except
 * while it runs its part of a call. Regions body opens itself would have one thread: only
 * code whose parallel work goes through lc_team_run belongs in a scope. */
void lc_team_scope(void (*body)(void *arg), void *arg);

/* Threads (OpenMP when built with it): the team size a parallel region would get, and whether
 * the caller already runs inside one, active or not (then kernels stay on the calling thread:
 * a parallel region there would start a nested team of fresh threads). */
int lc_max_threads(void);
int lc_in_parallel(void);
/* Inside a parallel region: this thread's number and the team's size (0 and 1 outside). */
int lc_thread_num(void);
int lc_num_threads(void);

/* Keeps freed working buffers (activations, scratch up to 64 MiB each) in the heap instead of
 * returning them to the kernel, so a training step or prompt does not fault the same pages in
 * again every time (glibc malloc thresholds; elsewhere a no-op). Call once at startup. */
void lc_memory_keep_freed(void);

#endif
