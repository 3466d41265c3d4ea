/* log: leveled log lines to one file descriptor (see log.h). */
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static const char *const log_names[] = {
    "EMERG", "ALERT", "CRIT", "ERROR", "WARN", "NOTICE",
    "INFO", "DEBUG", "VERB", "VVERB", "VVVERB", "PVERB",
};

static int log_open_file(const char *path)
{
    return open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

int log_open(struct log *lg, const char *path, int level)
{
    lg->level = level;
    lg->path = NULL;
    lg->fd = STDERR_FILENO;
    if (path == NULL || strcmp(path, "-") == 0) {
        return 0;
    }
    int fd = log_open_file(path);
    if (fd == -1) {
        return -1;
    }
    lg->fd = fd;
    lg->path = path;
    return 0;
}

int log_reopen(struct log *lg)
{
    if (lg->path == NULL) {
        return 0;
    }
    int fd = log_open_file(lg->path);
    if (fd == -1) {
        return -1;
    }
    int rc = dup2(fd, lg->fd);
    int saved = errno;
    close(fd);
    errno = saved;
    return rc == -1 ? -1 : 0;
}

void log_close(struct log *lg)
{
    if (lg->fd > STDERR_FILENO) {
        close(lg->fd);
    }
    lg->fd = STDERR_FILENO;
}

void log_write(const struct log *lg, int level, const char *fmt, ...)
{
    if (!log_on(lg, level)) {
        return;
    }
    char line[1024];
    struct timeval tv;
    struct tm tmv;
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tmv);
    size_t n = strftime(line, sizeof(line), "[%Y-%m-%d %H:%M:%S", &tmv);
    int k = snprintf(line + n, sizeof(line) - n, ".%03ld] %s ",
                     (long)(tv.tv_usec / 1000), log_names[level]);
    if (k > 0) {
        n += (size_t)k;
    }
    va_list ap;
    va_start(ap, fmt);
    k = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (k > 0) {
        n += (size_t)k;
    }
    if (n > sizeof(line) - 2) {
        n = sizeof(line) - 2; /* truncated: keep the newline */
    }
    line[n++] = '\n';
    ssize_t w;
    do {
        w = write(lg->fd, line, n);
    } while (w == -1 && errno == EINTR);
}

bool log_limit_pass(struct log_limit *l, uint64_t now_ms, uint64_t *held)
{
    if (l->next_ms != 0 && now_ms < l->next_ms) {
        l->held++;
        return false;
    }
    *held = l->held;
    l->held = 0;
    l->next_ms = now_ms + LOG_LIMIT_MS; /* never 0 again: "nothing logged yet" */
    return true;
}
