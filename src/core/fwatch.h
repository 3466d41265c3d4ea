/* fwatch: whole-file reads with a size cap, and a watcher that tells when a
 * file's content has changed and then held still.
 *
 * `legate.watch_config` uses the watcher: at every interval main compares
 * the config file's content with the content it last loaded (or tried to
 * load) and reloads once a different content has been seen at two checks
 * in a row, so a file still being written is not loaded half-way. Content
 * is compared, not timestamps: a touch is no change, while kubelet's swap
 * of a ConfigMap's symlinks, an editor's rename or a same-second rewrite
 * are. Discovery files (disc.c) use the reader. */
#ifndef LEGATE_FWATCH_H
#define LEGATE_FWATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>

/* Read `path` whole, up to max + 1 bytes (one more than `max`, so that the
 * caller can tell a file over its limit). Returns 0 with a malloc'd *text
 * (not NUL-terminated) of *len bytes and the file's fstat in *st, or -1
 * with errno set (ENOMEM when out of memory). */
int fwatch_read(const char *path, size_t max, char **text, size_t *len, struct stat *st);

/* One reading of the watched file: its bytes, or the errno that made it
 * unreadable (a missing file is a content too: it is compared and, once
 * settled, reported like any other). */
struct fwatch_content {
    char *text;
    size_t len;
    int err;        /* 0, or the errno of the failed read */
};

struct fwatch {
    const char *path;               /* borrowed; outlives the watcher */
    size_t max;
    struct fwatch_content tried;    /* the content last loaded, or tried */
    struct fwatch_content seen;     /* differs from `tried`; seen at the last check */
    bool has_seen;
};

void fwatch_init(struct fwatch *w, const char *path, size_t max);

/* Read the file now and make that the tried content (at start and on
 * SIGHUP, before loading it). Returns the content to load. */
const struct fwatch_content *fwatch_take(struct fwatch *w);

/* One check. True when the content differs from the tried one and is what
 * the previous check saw: it has become the tried content (w->tried), which
 * the caller loads. False when nothing changed or the change is new. */
bool fwatch_settled(struct fwatch *w);

void fwatch_fini(struct fwatch *w);

#endif
