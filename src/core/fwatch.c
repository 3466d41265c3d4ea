/* fwatch: whole-file reads with a cap, and the settled-change watcher. */
#include "fwatch.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int fwatch_read(const char *path, size_t max, char **text, size_t *len, struct stat *st)
{
    *text = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd == -1) {
        return -1;
    }
    if (fstat(fd, st) == -1) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    /* The size is a hint: a file still growing is read to the cap. */
    size_t cap = st->st_size > 0 ? (size_t)st->st_size + 1 : 4096;
    if (cap > max + 1) {
        cap = max + 1;
    }
    char *buf = malloc(cap);
    size_t n = 0;
    ssize_t r = 0;
    while (buf != NULL && n < cap && (r = read(fd, buf + n, cap - n)) != 0) {
        if (r == -1 && errno == EINTR) {
            continue;
        }
        if (r == -1) {
            break;
        }
        n += (size_t)r;
        if (n == cap && cap < max + 1) {
            size_t more = cap * 2 < max + 1 ? cap * 2 : max + 1;
            char *grown = realloc(buf, more);
            if (grown == NULL) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap = more;
        }
    }
    int e = buf == NULL ? ENOMEM : r == -1 ? errno : 0;
    close(fd);
    if (e != 0) {
        free(buf);
        errno = e;
        return -1;
    }
    *text = buf;
    *len = n;
    return 0;
}

static void fwatch_clear(struct fwatch_content *c)
{
    free(c->text);
    memset(c, 0, sizeof(*c));
}

static void fwatch_load(const struct fwatch *w, struct fwatch_content *c)
{
    struct stat st;
    memset(c, 0, sizeof(*c));
    if (fwatch_read(w->path, w->max, &c->text, &c->len, &st) == -1) {
        c->err = errno;
    }
}

static bool fwatch_same(const struct fwatch_content *a, const struct fwatch_content *b)
{
    return a->err == b->err && a->len == b->len &&
           (a->len == 0 || memcmp(a->text, b->text, a->len) == 0);
}

void fwatch_init(struct fwatch *w, const char *path, size_t max)
{
    memset(w, 0, sizeof(*w));
    w->path = path;
    w->max = max;
}

const struct fwatch_content *fwatch_take(struct fwatch *w)
{
    fwatch_clear(&w->tried);
    fwatch_clear(&w->seen);
    w->has_seen = false;
    fwatch_load(w, &w->tried);
    return &w->tried;
}

bool fwatch_settled(struct fwatch *w)
{
    struct fwatch_content now;
    fwatch_load(w, &now);
    if (fwatch_same(&now, &w->tried)) {
        fwatch_clear(&now);
        fwatch_clear(&w->seen);
        w->has_seen = false;
        return false;
    }
    if (!w->has_seen || !fwatch_same(&now, &w->seen)) {
        fwatch_clear(&w->seen); /* new, or still changing: wait for one more check */
        w->seen = now;
        w->has_seen = true;
        return false;
    }
    fwatch_clear(&now);
    fwatch_clear(&w->tried);
    w->tried = w->seen;
    memset(&w->seen, 0, sizeof(w->seen));
    w->has_seen = false;
    return true;
}

void fwatch_fini(struct fwatch *w)
{
    fwatch_clear(&w->tried);
    fwatch_clear(&w->seen);
    w->has_seen = false;
}
