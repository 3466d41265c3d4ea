/* failalloc — allocation failures on purpose, for the tests.
 *
 * build/…/tools/legate-failalloc is legate linked with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup: every
 * allocation legate's own code makes (not the C library's internal ones)
 * comes here first. With LEGATE_FAILALLOC="permille:seed:path" in the
 * environment, an allocation fails (returns NULL, as under memory
 * exhaustion) with probability permille/1000 while the file `path` exists;
 * each thread looks for the file at most every 5 ms. The draws come from a
 * per-thread generator seeded by `seed` and the thread. Without the
 * variable nothing fails. LEGATE_FAILALLOC_COUNT names a file that holds
 * the number of failures made so far, in decimal, so a test can tell that
 * some were.
 *
 * The global state below is this test harness's own: it is set once
 * (pthread_once) and only read after; the counter is atomic, the rest is
 * per thread. */

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

void *__real_malloc(size_t n);
void *__real_calloc(size_t k, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t k, size_t n);
void *__wrap_realloc(void *p, size_t n);
char *__wrap_strdup(const char *s);

struct failalloc {
    bool on;
    uint32_t permille;
    uint64_t seed;
    char path[256];          /* failures happen while this file exists */
    int count_fd;            /* -1 when nobody asked for the count */
    atomic_uint_fast64_t failed;
};

static struct failalloc fa = { .count_fd = -1 };
static pthread_once_t fa_once = PTHREAD_ONCE_INIT;
static _Thread_local uint64_t fa_rng;
static _Thread_local uint64_t fa_looked_ns; /* when this thread last looked */
static _Thread_local bool fa_armed;         /* what it saw then */

enum { FA_LOOK_NS = 5000000 };

static uint64_t fa_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void fa_setup(void)
{
    const char *spec = getenv("LEGATE_FAILALLOC");
    unsigned long permille;
    unsigned long long seed;
    int at = 0;
    if (spec == NULL || sscanf(spec, "%lu:%llu:%n", &permille, &seed, &at) != 2 || at == 0 ||
        strlen(spec + at) >= sizeof(fa.path))
        return;
    fa.permille = permille > 1000 ? 1000 : (uint32_t)permille;
    fa.seed = seed;
    memcpy(fa.path, spec + at, strlen(spec + at) + 1);
    const char *count = getenv("LEGATE_FAILALLOC_COUNT");
    if (count != NULL)
        fa.count_fd = open(count, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    fa.on = true;
}

/* Whether the trigger file is there, looked up at most every 5 ms. */
static bool fa_window(void)
{
    uint64_t t = fa_now_ns();
    if (fa_looked_ns == 0 || t - fa_looked_ns >= FA_LOOK_NS) {
        int saved = errno;
        fa_armed = access(fa.path, F_OK) == 0;
        errno = saved;
        fa_looked_ns = t;
    }
    return fa_armed;
}

/* xorshift64*, seeded once per thread from the seed and the thread's
 * stack address (threads differ, runs with one seed start alike). */
static uint32_t fa_draw(void)
{
    if (fa_rng == 0) {
        int here;
        fa_rng = (fa.seed * 0x9e3779b97f4a7c15u) ^ ((uintptr_t)&here >> 12) ^ 1u;
    }
    fa_rng ^= fa_rng >> 12;
    fa_rng ^= fa_rng << 25;
    fa_rng ^= fa_rng >> 27;
    return (uint32_t)((fa_rng * 0x2545f4914f6cdd1du) >> 32);
}

/* True when this allocation is to fail; counts it. */
static bool fa_fail(void)
{
    pthread_once(&fa_once, fa_setup);
    if (!fa.on || !fa_window() || fa_draw() % 1000 >= fa.permille)
        return false;
    uint64_t n = atomic_fetch_add(&fa.failed, 1) + 1;
    if (fa.count_fd >= 0) {
        char text[24];
        int len = snprintf(text, sizeof(text), "%-20" PRIu64 "\n", n);
        int saved = errno;
        if (pwrite(fa.count_fd, text, (size_t)len, 0) < 0)
            (void)0; /* the count is a courtesy; the failure still happens */
        errno = saved;
    }
    errno = ENOMEM;
    return true;
}

void *__wrap_malloc(size_t n)
{
    return fa_fail() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t k, size_t n)
{
    return fa_fail() ? NULL : __real_calloc(k, n);
}

void *__wrap_realloc(void *p, size_t n)
{
    return n > 0 && fa_fail() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return fa_fail() ? NULL : __real_strdup(s);
}
