/* base.c — error messages, checked allocation, file helpers, mmap, RNG and clock.
 * Nothing here knows about models or file formats. */
#define _GNU_SOURCE /* mremap */
#include "base.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char g_err[2048];

lc_status lc_error(lc_status code, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    return code;
}

lc_status lc_error_context(lc_status code, const char *fmt, ...) {
    char ctx[512], old[sizeof g_err];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx, sizeof ctx, fmt, ap);
    va_end(ap);
    memcpy(old, g_err, sizeof old);
    size_t a = strlen(ctx), b = strnlen(old, sizeof old - 1);
    if (a > sizeof g_err - 1) a = sizeof g_err - 1;
    if (b > sizeof g_err - 1 - a) b = sizeof g_err - 1 - a;
    memcpy(g_err, ctx, a);
    memcpy(g_err + a, old, b);
    g_err[a + b] = 0;
    return code;
}

const char *lc_last_error(void) { return g_err[0] ? g_err : "no error"; }

const char *lc_status_name(lc_status s) {
    switch (s) {
    case LC_OK: return "ok";
    case LC_ERR_IO: return "I/O error";
    case LC_ERR_FORMAT: return "format error";
    case LC_ERR_CONFIG: return "config error";
    case LC_ERR_SHAPE: return "tensor error";
    case LC_ERR_NOMEM: return "out of memory";
    case LC_ERR_ARG: return "invalid argument";
    case LC_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown error";
}

void *lc_malloc(size_t n, const char *what) {
    void *p = malloc(n ? n : 1);
    if (!p) lc_error(LC_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
    return p;
}

void *lc_calloc(size_t count, size_t size, const char *what) {
    if (size && count > SIZE_MAX / size) {
        lc_error(LC_ERR_NOMEM, "allocation size overflow for %s (%zu x %zu)", what, count, size);
        return NULL;
    }
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) lc_error(LC_ERR_NOMEM, "out of memory allocating %zu bytes for %s", count * size, what);
    return p;
}

void *lc_aligned_alloc(size_t n, const char *what) {
    void *p = NULL;
    if (posix_memalign(&p, 64, n ? n : 64) != 0) {
        lc_error(LC_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
        return NULL;
    }
    return p;
}

void lc_free(void *p) { free(p); }

/* The scratch stack: chunks newest first; each chunk's blocks from data[0] up to used. The
 * chunk popped last is kept as the spare (up to SCRATCH_SPARE_MAX bytes), so a thread that
 * repeats the same calls stops calling malloc after the first. */
#ifdef LC_ASAN
#include <sanitizer/asan_interface.h>
#define SCRATCH_POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define SCRATCH_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
enum { SCRATCH_REDZONE = 64 };
#else
#define SCRATCH_POISON(p, n) ((void)(p), (void)(n))
#define SCRATCH_UNPOISON(p, n) ((void)(p), (void)(n))
enum { SCRATCH_REDZONE = 0 };
#endif
typedef struct scratch_chunk {
    struct scratch_chunk *prev;
    size_t size, used;
    _Alignas(64) unsigned char data[];
} scratch_chunk;
enum { SCRATCH_CHUNK_MIN = 1 << 20 };
#define SCRATCH_SPARE_MAX ((size_t)64 << 20)
static _Thread_local scratch_chunk *tl_scratch, *tl_scratch_spare;
static _Thread_local int tl_scratch_keyed; /* this thread's chunks are freed when it exits */
static pthread_key_t scratch_key;
static int scratch_key_ok; /* set once, under scratch_once */
static pthread_once_t scratch_once = PTHREAD_ONCE_INIT;

static void scratch_thread_exit(void *unused) {
    (void)unused;
    lc_scratch_release((lc_scratch_mark){NULL, 0});
    if (tl_scratch_spare) {
        SCRATCH_UNPOISON(tl_scratch_spare->data, tl_scratch_spare->size);
        lc_free(tl_scratch_spare);
        tl_scratch_spare = NULL;
    }
}
static void scratch_key_make(void) {
    scratch_key_ok = pthread_key_create(&scratch_key, scratch_thread_exit) == 0;
}

lc_scratch_mark lc_scratch_mark_get(void) { return (lc_scratch_mark){tl_scratch, tl_scratch ? tl_scratch->used : 0}; }

void *lc_scratch_alloc(size_t n, const char *what) {
    if (n > SIZE_MAX / 2) {
        lc_error(LC_ERR_NOMEM, "scratch allocation of %zu bytes for %s is too large", n, what);
        return NULL;
    }
    const size_t need = (n + 63) / 64 * 64 + SCRATCH_REDZONE;
    scratch_chunk *c = tl_scratch;
    if (!c || c->size - c->used < need) { /* a new chunk on top: the spare when it is big enough */
        scratch_chunk *f = tl_scratch_spare;
        if (f && f->size >= need) tl_scratch_spare = NULL;
        else {
            size_t size = need > SCRATCH_CHUNK_MIN ? need : SCRATCH_CHUNK_MIN;
            if (c && c->size <= SIZE_MAX / 4 && 2 * c->size > size) size = 2 * c->size; /* geometric growth */
            f = lc_aligned_alloc(sizeof *f + size, what);
            if (!f) return NULL;
            if (!tl_scratch_keyed) { /* a thread's first chunk: its exit frees them */
                pthread_once(&scratch_once, scratch_key_make); /* without a key: kept until the process ends */
                tl_scratch_keyed = scratch_key_ok && pthread_setspecific(scratch_key, &tl_scratch_keyed) == 0;
            }
            f->size = size;
            SCRATCH_POISON(f->data, size);
        }
        f->prev = c;
        f->used = 0;
        tl_scratch = c = f;
    }
    unsigned char *p = c->data + c->used;
    c->used += need;
    SCRATCH_UNPOISON(p, n);
    return p;
}

void lc_scratch_release(lc_scratch_mark m) {
    while (tl_scratch && tl_scratch != m.chunk) { /* chunks opened after the mark */
        scratch_chunk *c = tl_scratch, *keep = tl_scratch_spare, *gone = c;
        tl_scratch = c->prev;
        SCRATCH_POISON(c->data, c->size);
        if (c->size <= SCRATCH_SPARE_MAX && (!keep || keep->size < c->size)) { /* the bigger one stays */
            gone = keep;
            keep = c;
        }
        tl_scratch_spare = keep;
        if (gone) {
            SCRATCH_UNPOISON(gone->data, gone->size); /* the allocator's own again */
            lc_free(gone);
        }
    }
    if (tl_scratch) {
        SCRATCH_POISON(tl_scratch->data + m.used, tl_scratch->used - m.used);
        tl_scratch->used = m.used;
    }
}

char *lc_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = lc_malloc(n, "string");
    if (d) memcpy(d, s, n);
    return d;
}

char *lc_path_join(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = lc_malloc(a + b + 2, "path");
    if (!p) return NULL;
    memcpy(p, dir, a);
    size_t k = a;
    if (a && dir[a - 1] != '/') p[k++] = '/';
    memcpy(p + k, name, b + 1);
    return p;
}

int lc_is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int lc_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

lc_status lc_mkdirs(const char *path) {
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) return lc_error(LC_ERR_ARG, "bad folder path \"%s\"", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] != '/' && buf[i] != 0) continue;
        char c = buf[i];
        buf[i] = 0;
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return lc_error(LC_ERR_IO, "%s: cannot create folder: %s", buf, strerror(errno));
        buf[i] = c;
    }
    if (!lc_is_dir(path)) return lc_error(LC_ERR_IO, "%s: exists and is not a folder", path);
    return LC_OK;
}

lc_status lc_read_file(const char *path, char **data, size_t *size) {
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return lc_error(LC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (fseek(f, 0, SEEK_END) != 0) {
        fclose(f);
        return lc_error(LC_ERR_IO, "%s: cannot seek (not a regular file?)", path);
    }
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return lc_error(LC_ERR_IO, "%s: cannot determine size", path);
    }
    char *buf = lc_malloc((size_t)n + 1, path);
    if (!buf) {
        fclose(f);
        return LC_ERR_NOMEM;
    }
    if (n && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fclose(f);
        free(buf);
        return lc_error(LC_ERR_IO, "%s: short read", path);
    }
    fclose(f);
    buf[n] = 0;
    *data = buf;
    if (size) *size = (size_t)n;
    return LC_OK;
}

lc_status lc_write_text(const char *path, const char *text) {
    size_t n = strlen(path);
    char *tmp = lc_malloc(n + 5, "path");
    if (!tmp) return LC_ERR_NOMEM;
    memcpy(tmp, path, n);
    memcpy(tmp + n, ".tmp", 5);
    FILE *f = fopen(tmp, "w");
    lc_status s = LC_OK;
    if (!f) s = lc_error(LC_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    else {
        if (fputs(text, f) < 0) s = lc_error(LC_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        if (fclose(f) != 0 && !s) s = lc_error(LC_ERR_IO, "%s: write failed: %s", tmp, strerror(errno));
        if (!s && rename(tmp, path) != 0) s = lc_error(LC_ERR_IO, "%s: cannot rename: %s", path, strerror(errno));
        if (s) remove(tmp);
    }
    free(tmp);
    return s;
}

lc_status lc_copy_text_file(const char *from, const char *to, int optional) {
    if (optional && !lc_file_exists(from)) return LC_OK;
    char *text;
    size_t len;
    lc_status s = lc_read_file(from, &text, &len);
    if (!s) s = lc_write_text(to, text);
    free(text);
    return s;
}

#define HUGE_PAGE ((size_t)2 << 20)
static size_t page_round(size_t n) {
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return (n + pg - 1) / pg * pg;
}

/* span bytes (a page multiple) of private anonymous memory starting at a 2 MiB boundary, or NULL. */
static uint8_t *anon_aligned(size_t span, int prot) {
    uint8_t *r = mmap(NULL, span + HUGE_PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (r == MAP_FAILED) return NULL;
    uint8_t *a = (uint8_t *)(((uintptr_t)r + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1));
    if (a > r) munmap(r, (size_t)(a - r)); /* the slack before and after */
    if (r + span + HUGE_PAGE > a + span) munmap(a + span, (size_t)(r + span + HUGE_PAGE - (a + span)));
    return a;
}

void *lc_huge_alloc(size_t n, const char *what) {
    const size_t span = page_round(n ? n : 1);
    uint8_t *a = anon_aligned(span, PROT_READ | PROT_WRITE);
    if (!a) {
        lc_error(LC_ERR_NOMEM, "out of memory allocating %zu bytes for %s", n, what);
        return NULL;
    }
    madvise(a, span, MADV_HUGEPAGE); /* advice only: fine if refused */
    return a;
}

void lc_huge_free(void *p, size_t n) {
    if (p) munmap(p, page_round(n ? n : 1));
}

lc_status lc_mmap_open(lc_mmap *m, const char *path) {
    memset(m, 0, sizeof *m);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return lc_error(LC_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return lc_error(LC_ERR_IO, "%s: not a regular file", path);
    }
    m->size = (size_t)st.st_size;
    if (m->size > 0) {
        /* over a reservation at a 2 MiB boundary, so a resident copy can use huge pages from the
         * first byte */
        const size_t span = page_round(m->size);
        uint8_t *a = anon_aligned(span, PROT_NONE);
        void *p = a ? mmap(a, m->size, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0) : MAP_FAILED;
        if (p == MAP_FAILED) {
            int e = errno;
            if (a) munmap(a, span);
            close(fd);
            return lc_error(LC_ERR_IO, "%s: mmap failed: %s", path, strerror(e));
        }
        m->data = p;
    }
    close(fd);
    m->path = lc_strdup(path);
    if (!m->path) {
        lc_mmap_close(m);
        return LC_ERR_NOMEM;
    }
    return LC_OK;
}

lc_status lc_mmap_make_resident(lc_mmap *m) {
    const size_t chunk = (size_t)64 << 20; /* a multiple of HUGE_PAGE */
    for (size_t off = 0; off < m->size && !m->resident; off += chunk) {
        const size_t n = LC_MIN(chunk, m->size - off), span = page_round(n);
        /* a 2 MiB-aligned anonymous chunk, filled, made read-only, moved over the file pages */
        uint8_t *a = anon_aligned(span, PROT_READ | PROT_WRITE);
        if (!a) return lc_error(LC_ERR_NOMEM, "%s: no memory for a resident copy (byte %zu of %zu)", m->path, off, m->size);
        madvise(a, span, MADV_HUGEPAGE); /* advice only: fine if refused */
        memcpy(a, m->data + off, n);
        if (mprotect(a, span, PROT_READ) != 0 ||
            mremap(a, span, span, MREMAP_MAYMOVE | MREMAP_FIXED, (void *)(uintptr_t)(m->data + off)) == MAP_FAILED) {
            int e = errno;
            munmap(a, span);
            return lc_error(LC_ERR_IO, "%s: cannot put the resident copy in place at byte %zu: %s", m->path, off, strerror(e));
        }
    }
    m->resident = 1;
    return LC_OK;
}

void lc_mmap_close(lc_mmap *m) {
    if (m->data) munmap((void *)m->data, m->size);
    free(m->path);
    memset(m, 0, sizeof *m);
}

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

void lc_rng_seed(lc_rng *r, uint64_t seed) {
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t lc_rng_u64(lc_rng *r) {
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

float lc_rng_uniform(lc_rng *r) { return (float)(lc_rng_u64(r) >> 40) * (1.0f / 16777216.0f); }

float lc_rng_normal(lc_rng *r) {
    /* Box-Muller in double so the result does not depend on libm float paths. */
    double u1 = ((double)(lc_rng_u64(r) >> 11) + 0.5) * (1.0 / 9007199254740992.0);
    double u2 = (double)(lc_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

double lc_time_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* The standing team of an lc_team_scope: the leader (thread 0) publishes a call by setting
 * fn and arg and then bumping gen; the others wait for gen to move, run the call and meet
 * the leader at `done`. */
typedef struct {
    _Alignas(64) _Atomic uint64_t gen;
    void (*fn)(void *);
    void *arg;
    int nt, stop;
    /* lc_team_ahead: what the call gen == ahead_for reads first (fn on a copy of its arg) */
    _Atomic uint64_t ahead_for;
    lc_ahead_fn ahead_fn;
    _Alignas(16) unsigned char ahead_arg[LC_AHEAD_ARG_BYTES];
    lc_team_slot done[]; /* [nt] */
} team_scope;

static _Thread_local team_scope *tl_scope; /* the scope this thread stands in, if any */
#ifdef _OPENMP
static _Thread_local int tl_scope_level; /* omp_get_level() of its region */
#endif
static _Thread_local int tl_in_call;       /* running its part of an lc_team_run call */

/* The calling thread leads a scope and is not inside one of its calls. */
static team_scope *scope_led(void) {
#ifdef _OPENMP
    if (tl_scope && !tl_in_call && omp_get_level() == tl_scope_level && omp_get_thread_num() == 0) return tl_scope;
#endif
    return NULL;
}

int lc_max_threads(void) {
#ifdef _OPENMP
    const team_scope *sc = scope_led();
    return sc ? sc->nt : omp_get_max_threads();
#else
    return 1;
#endif
}

/* A share's owner takes lo, a thief cuts off the upper half, both by compare-and-swap, so
 * every item is taken exactly once. */
static uint64_t share_pack(uint64_t lo, uint64_t hi) { return lo | hi << 32; }

/* The owner's next item, or 0 when its share is empty. */
static int share_next(lc_share *q, int64_t *item) {
    uint64_t v = atomic_load_explicit(&q->range, memory_order_relaxed);
    for (;;) {
        const uint64_t lo = v & 0xffffffffu, hi = v >> 32;
        if (lo >= hi) return 0;
        if (atomic_compare_exchange_weak_explicit(&q->range, &v, share_pack(lo + 1, hi), memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *item = (int64_t)lo;
            return 1;
        }
    }
}

/* Cuts the upper half of the victim's remaining items (all of one) into [*lo, *hi); 0: none left. */
static int share_steal(lc_share *victim, uint64_t *lo_out, uint64_t *hi_out) {
    uint64_t v = atomic_load_explicit(&victim->range, memory_order_relaxed);
    for (;;) {
        const uint64_t lo = v & 0xffffffffu, hi = v >> 32;
        if (lo >= hi) return 0;
        const uint64_t mid = hi - lo == 1 ? lo : lo + (hi - lo) / 2;
        if (atomic_compare_exchange_weak_explicit(&victim->range, &v, share_pack(lo, mid), memory_order_relaxed,
                                                  memory_order_relaxed)) {
            *lo_out = mid;
            *hi_out = hi;
            return 1;
        }
    }
}

void lc_shares_init(lc_share *q, int nt, int64_t n) {
    for (int t = 0; t < nt; t++) /* a smaller team's missing shares get stolen */
        atomic_init(&q[t].range, share_pack((uint64_t)(n * t / nt), (uint64_t)(n * (t + 1) / nt)));
}

void lc_shares_run(lc_share *q, int nt, int id, void (*body)(int64_t i, void *arg), void *arg) {
    for (int k = 0; k < nt;) {
        int64_t i;
        while (share_next(&q[id], &i)) body(i, arg);
        uint64_t lo, hi;
        for (k = 1; k < nt; k++) /* out of work: half of the first other share that has some */
            if (share_steal(&q[(id + k) % nt], &lo, &hi)) {
                atomic_store_explicit(&q[id].range, share_pack(lo, hi), memory_order_relaxed);
                break;
            }
    }
}

void lc_team_init(lc_team_slot *b, int nt) {
    for (int t = 0; t < nt; t++) atomic_init(&b[t].arrived, 0);
}

lc_share *lc_shares_alloc(int phases, int nt, lc_team_slot **team, const char *what) {
    lc_share *q = lc_scratch_alloc((size_t)(phases * nt) * sizeof *q + (size_t)nt * sizeof **team, what);
    if (q) {
        *team = (lc_team_slot *)(void *)(q + phases * nt); /* 64-byte aligned: a share is a cache line */
        lc_team_init(*team, nt);
    }
    return q;
}

static void spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* One round of a wait for another thread: a pause, and after 65536 of them a yield (a long wait
 * — a serial stretch, or an oversubscribed machine: let the one awaited run). */
static void spin_wait(long spins) {
    if (spins < (1 << 16)) spin_pause();
    else sched_yield();
}

/* A wait's time put to use: ranges prefetched a line of each in turn, one step per spin. */
typedef struct {
    const lc_prefetch_range *r;
    int n;
    size_t off, most;
} wait_ahead;

static wait_ahead wait_ahead_of(const lc_prefetch_range *r, int n) {
    wait_ahead a = {r, n, 0, 0};
    for (int q = 0; q < n; q++) a.most = r[q].bytes > a.most ? r[q].bytes : a.most;
    return a;
}

/* One spin of a wait: the next line of each range, or (all prefetched) a pause. */
static void wait_step(wait_ahead *a, long spins) {
    if (a->off < a->most) {
        for (int q = 0; q < a->n; q++)
            if (a->off < a->r[q].bytes) __builtin_prefetch(a->r[q].p + a->off, 0, 2);
        a->off += 64;
    } else spin_wait(spins);
}

void lc_team_barrier_ahead(lc_team_slot *b, int id, int nt, const lc_prefetch_range *ahead, int n_ahead) {
    /* only this thread writes its slot: its count plus one is this arrival */
    const int64_t n = atomic_load_explicit(&b[id].arrived, memory_order_relaxed) + 1;
    atomic_store_explicit(&b[id].arrived, n, memory_order_release); /* what it wrote before, seen by the others */
    wait_ahead a = wait_ahead_of(ahead, n_ahead);
    for (int k = 0; k < nt; k++)
        for (long spins = 0; k != id && atomic_load_explicit(&b[k].arrived, memory_order_acquire) < n; spins++)
            wait_step(&a, spins);
}

void lc_team_barrier(lc_team_slot *b, int id, int nt) { lc_team_barrier_ahead(b, id, nt, NULL, 0); }

int64_t lc_share_first(const lc_share *q) {
    const uint64_t v = atomic_load_explicit(&((lc_share *)(uintptr_t)q)->range, memory_order_relaxed);
    return (v & 0xffffffffu) < (v >> 32) ? (int64_t)(v & 0xffffffffu) : -1;
}

void lc_team_ahead(lc_ahead_fn fn, const void *arg, size_t bytes) {
    team_scope *sc = scope_led();
    if (!sc || bytes > LC_AHEAD_ARG_BYTES) return;
    const uint64_t next = atomic_load_explicit(&sc->gen, memory_order_relaxed) + 1;
    /* The first announcement of a call stands: a waiting thread may be reading it. One for an
     * earlier call no one reads any more (each thread left its wait for that call before the
     * call, which this leader has seen end), so it can be overwritten. */
    if (atomic_load_explicit(&sc->ahead_for, memory_order_relaxed) == next) return;
    sc->ahead_fn = fn;
    memcpy(sc->ahead_arg, arg, bytes);
    atomic_store_explicit(&sc->ahead_for, next, memory_order_release);
}

void lc_team_run(void (*fn)(void *arg), void *arg) {
    team_scope *sc = scope_led();
    if (sc) {
        sc->fn = fn;
        sc->arg = arg;
        atomic_fetch_add_explicit(&sc->gen, 1, memory_order_release); /* fn and arg, seen by the team */
        tl_in_call = 1;
        fn(arg);
        tl_in_call = 0;
        lc_team_barrier(sc->done, 0, sc->nt);
        return;
    }
    const int inside = lc_in_parallel();
    if (!inside && lc_max_threads() == 1) { /* thread 0 of 1 already */
        fn(arg);
        return;
    }
#pragma omp parallel if (!inside)
    fn(arg);
}

#ifdef _OPENMP
/* A standing thread of a scope: each call its leader publishes, until it stops. */
static void scope_serve(team_scope *sc, int id) {
    uint64_t seen = 0;
    for (;;) {
        uint64_t g;
        lc_prefetch_range r[LC_AHEAD_RANGES];
        wait_ahead a = wait_ahead_of(r, 0);
        int known = 0; /* the next call's first reads, once the leader announces them */
        for (long spins = 0; (g = atomic_load_explicit(&sc->gen, memory_order_acquire)) == seen; spins++) {
            /* the leader may be in a long serial stretch: this thread's first reads of the
             * call it has announced, prefetched meanwhile */
            if (!known && atomic_load_explicit(&sc->ahead_for, memory_order_acquire) == seen + 1) {
                a = wait_ahead_of(r, sc->ahead_fn(sc->ahead_arg, id, sc->nt, r));
                known = 1;
            }
            wait_step(&a, spins);
        }
        seen = g;
        if (sc->stop) return;
        tl_in_call = 1;
        sc->fn(sc->arg);
        tl_in_call = 0;
        lc_team_barrier(sc->done, id, sc->nt);
    }
}
#endif

void lc_team_scope(void (*body)(void *arg), void *arg) {
    const int nt = lc_max_threads();
    team_scope *sc = nt > 1 && !lc_in_parallel() && !tl_scope
                         ? lc_aligned_alloc(sizeof *sc + (size_t)nt * sizeof *sc->done, "thread team")
                         : NULL;
    if (!sc) { /* one thread, already in a region or a scope, or no memory: as it is */
        body(arg);
        return;
    }
    atomic_init(&sc->gen, 0);
    atomic_init(&sc->ahead_for, 0);
    sc->stop = 0;
#ifdef _OPENMP
#pragma omp parallel num_threads(nt)
    {
        tl_scope = sc;
        tl_scope_level = omp_get_level();
        if (omp_get_thread_num() == 0) {
            sc->nt = omp_get_num_threads(); /* published with the first call's gen */
            lc_team_init(sc->done, sc->nt);
            body(arg);
            sc->stop = 1;
            atomic_fetch_add_explicit(&sc->gen, 1, memory_order_release);
        } else
            scope_serve(sc, omp_get_thread_num());
        tl_scope = NULL;
    }
#endif
    lc_free(sc);
}

/* lc_parallel_steal's call on each thread of the team. */
typedef struct {
    lc_share *q;
    int nt;
    void (*body)(int64_t i, void *arg);
    void *arg;
} steal_call;

static void steal_run(void *p) {
    const steal_call *c = p;
    lc_shares_run(c->q, c->nt, lc_thread_num(), c->body, c->arg);
}

void lc_parallel_steal(int par, int64_t n, void (*body)(int64_t i, void *arg), void *arg) {
    const int nt = lc_max_threads();
    const lc_scratch_mark mark = lc_scratch_mark_get();
    lc_share *q = par && nt > 1 && n > 1 ? lc_scratch_alloc((size_t)nt * sizeof *q, "work shares") : NULL;
    if (!q) { /* one thread (or no room for the shares): in order */
        for (int64_t i = 0; i < n; i++) body(i, arg);
    } else {
        lc_shares_init(q, nt, n);
        steal_call c = {q, nt, body, arg};
        lc_team_run(steal_run, &c);
    }
    lc_scratch_release(mark);
}

int lc_thread_num(void) {
#ifdef _OPENMP
    return omp_get_thread_num(); /* a scope's leader is thread 0 either way */
#else
    return 0;
#endif
}

int lc_num_threads(void) {
#ifdef _OPENMP
    return scope_led() ? 1 : omp_get_num_threads(); /* outside its calls a scope's leader is on its own */
#else
    return 1;
#endif
}

int lc_in_parallel(void) {
#ifdef _OPENMP
    /* active or not: a region inside even an inactive one would be a nested team */
    return omp_get_level() > 0 && !scope_led();
#else
    return 0;
#endif
}

void lc_memory_keep_freed(void) {
#ifdef __GLIBC__
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
}
