/* log: leveled log lines to one file descriptor, shared read-only by all
 * threads; levels follow nutcracker's -v scale (0..11). */
#ifndef LEGATE_LOG_H
#define LEGATE_LOG_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum log_level {
    LOG_EMERG = 0,
    LOG_ALERT = 1,
    LOG_CRIT = 2,
    LOG_ERR = 3,
    LOG_WARN = 4,
    LOG_NOTICE = 5,
    LOG_INFO = 6,
    LOG_DEBUG = 7,
    LOG_VERB = 8,
    LOG_VVERB = 9,
    LOG_VVVERB = 10,
    LOG_PVERB = 11,
};

/* One log sink per process, created by main and passed to every worker.
 * The fd number never changes after log_open: a reopen dup2()s the new file
 * onto it, so threads writing concurrently never see a closed descriptor. */
struct log {
    int fd;
    int level;
    const char *path; /* NULL: stderr */
};

/* Open the sink at `path` (NULL or "-" for stderr) with `level`.
 * Returns 0, or -1 with errno set. */
int log_open(struct log *lg, const char *path, int level);

/* Reopen the file at the same path (SIGUSR1, after logrotate moved it).
 * Returns 0, or -1 with errno set; the old file stays in use on error. */
int log_reopen(struct log *lg);

void log_close(struct log *lg);

static inline int log_on(const struct log *lg, int level)
{
    return lg != NULL && level <= lg->level;
}

/* Write one line "[time] LEVEL msg\n" if `level` is enabled. One write(2)
 * per line so lines from different threads do not interleave. */
void log_write(const struct log *lg, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A rate limit for one recurring line (a server that keeps failing under
 * load would otherwise log once per request: 25,000 lines a second were
 * seen). Owned by the one thread that writes the line; zero-initialized
 * means "nothing logged yet". */
struct log_limit {
    uint64_t next_ms; /* lines before this time are counted, not written */
    uint64_t held;    /* lines held back since the last one written */
};

enum { LOG_LIMIT_MS = 1000 }; /* at most one line a second per limit */

/* Whether the caller should write its line at `now_ms` (any monotonic
 * milliseconds). When it should, *held is how many lines were held back
 * since the previous one (to be said in the line) and the count restarts;
 * when not, the line is counted. */
bool log_limit_pass(struct log_limit *l, uint64_t now_ms, uint64_t *held);

#define log_error(lg, ...)  log_write((lg), LOG_ERR, __VA_ARGS__)
#define log_warn(lg, ...)   log_write((lg), LOG_WARN, __VA_ARGS__)
#define log_notice(lg, ...) log_write((lg), LOG_NOTICE, __VA_ARGS__)
#define log_info(lg, ...)   log_write((lg), LOG_INFO, __VA_ARGS__)
#define log_debug(lg, ...)  log_write((lg), LOG_DEBUG, __VA_ARGS__)

#endif
