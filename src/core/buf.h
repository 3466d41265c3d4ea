/* buf: fixed-size chunks from a per-worker pool, chained into queues.
 *
 *   chunk:  start ........ pos ======= last ......... end
 *                 consumed    unread      free space
 *
 * A queue is a FIFO of chunks; readers append at the tail chunk's `last`,
 * writers consume from the head chunk's `pos`. Chunks come from and return
 * to a buf_pool owned by one worker; a pool keeps at most `max_free` spare
 * chunks so memory returns after a burst, and tells its owner when it had
 * to allocate. Not thread-safe: one pool per
 * worker. */
#ifndef LEGATE_BUF_H
#define LEGATE_BUF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

enum {
    BUF_MIN_SIZE = 512,
    BUF_MAX_SIZE = 16 * 1024 * 1024,
    BUF_DEFAULT_SIZE = 16 * 1024,
};

struct buf {
    struct buf *next;
    uint8_t *pos;
    uint8_t *last;
    uint8_t *end;
    uint8_t start[];
};

struct buf_pool {
    size_t size;      /* data bytes per chunk */
    struct buf *free; /* spare chunks */
    size_t nfree;
    size_t max_free;
    size_t nused;     /* chunks handed out and not yet returned */
    /* Optional: called when the heap changed under the pool: a chunk had to
     * be allocated (no spare), or one came back past `max_free` and was
     * freed. The owner can trim once the calls stop. `changed_arg` is passed. */
    void (*changed)(void *arg);
    void *changed_arg;
};

struct buf_queue {
    struct buf *head;
    struct buf *tail;
    size_t bytes;     /* unread bytes in the whole queue */
};

/* Initialise a pool of chunks with `size` data bytes each. */
void buf_pool_init(struct buf_pool *pool, size_t size, size_t max_free);

/* Free every spare chunk. Chunks still in use must be returned first. */
void buf_pool_drain(struct buf_pool *pool);

/* Take an empty chunk. Returns NULL when out of memory. */
struct buf *buf_get(struct buf_pool *pool);

/* Return a chunk (NULL-safe). */
void buf_put(struct buf_pool *pool, struct buf *b);

static inline size_t buf_unread(const struct buf *b)
{
    return (size_t)(b->last - b->pos);
}

static inline size_t buf_space(const struct buf *b)
{
    return (size_t)(b->end - b->last);
}

static inline void buf_queue_init(struct buf_queue *q)
{
    q->head = q->tail = NULL;
    q->bytes = 0;
}

/* Return every chunk of `q` to `pool` and leave `q` empty. */
void buf_queue_clear(struct buf_queue *q, struct buf_pool *pool);

/* A chunk at the tail with free space, taking a new one if needed.
 * Returns NULL when out of memory. */
struct buf *buf_queue_tail_space(struct buf_queue *q, struct buf_pool *pool);

/* Account for `n` bytes written into the tail chunk's free space. */
void buf_queue_commit(struct buf_queue *q, size_t n);

/* Where a queue ends now: appends after it can be taken back with
 * buf_queue_rewind (a message put together from several appends that
 * cannot all be made must leave nothing behind). */
struct buf_mark {
    struct buf *tail;
    uint8_t *last;
    size_t bytes;
};
static inline struct buf_mark buf_queue_mark(const struct buf_queue *q)
{
    return (struct buf_mark){ q->tail, q->tail != NULL ? q->tail->last : NULL, q->bytes };
}
/* Cut `q` back to `m`, returning the chunks added since to the pool. Only
 * appends may have happened since the mark, no consume. */
void buf_queue_rewind(struct buf_queue *q, struct buf_pool *pool, struct buf_mark m);

/* Append a copy of `len` bytes. Returns 0, or -1 when out of memory, and
 * then `q` is as it was: a stream never gets half a message. */
int buf_queue_append(struct buf_queue *q, struct buf_pool *pool,
                     const void *data, size_t len);

/* Drop `n` bytes from the head, returning emptied chunks to `pool`; an
 * emptied queue holds no chunk at all (idle connections cost no buffer). */
void buf_queue_consume(struct buf_queue *q, struct buf_pool *pool, size_t n);

/* The chunk holding the byte `*off` bytes after the head; *off becomes
 * the offset inside that chunk. NULL when the queue is shorter. */
static inline const struct buf *buf_queue_find(const struct buf_queue *q, uint64_t *off)
{
    const struct buf *b = q->head;
    while (b != NULL && *off >= buf_unread(b)) {
        *off -= buf_unread(b);
        b = b->next;
    }
    return b;
}

/* Copy `len` bytes starting `off` bytes after the head of `src` to the end
 * of `dst`. The range must be within src->bytes. Returns 0, or -1 when out
 * of memory, and then `dst` is as it was. */
int buf_queue_append_range(struct buf_queue *dst, struct buf_pool *pool,
                           const struct buf_queue *src, uint64_t off, uint64_t len);

/* Copy `len` bytes starting `off` bytes after the head into `out`. The
 * range must be within q->bytes. */
void buf_queue_peek(const struct buf_queue *q, uint64_t off, void *out, size_t len);

/* Move every chunk of `src` to the end of `dst` without copying; `src` is
 * left empty. */
void buf_queue_splice(struct buf_queue *dst, struct buf_queue *src);

/* A read position in a queue for incremental parsers: the chunk and the
 * offset in it of the next byte to look at. Valid while only appends
 * happen; reset it after consuming. */
struct buf_cursor {
    struct buf *b;
    uint8_t *p;
};

static inline void buf_cursor_reset(struct buf_cursor *cur, const struct buf_queue *q)
{
    cur->b = q->head;
    cur->p = q->head ? q->head->pos : NULL;
}

/* The bytes available at the cursor (contiguous, possibly 0), moving to the
 * next chunk when the current one is used up. */
static inline size_t buf_cursor_avail(struct buf_cursor *cur, const struct buf_queue *q)
{
    if (cur->b == NULL) {
        buf_cursor_reset(cur, q);
        if (cur->b == NULL) {
            return 0;
        }
    }
    while ((size_t)(cur->b->last - cur->p) == 0 && cur->b->next != NULL) {
        cur->b = cur->b->next;
        cur->p = cur->b->pos;
    }
    return (size_t)(cur->b->last - cur->p);
}

/* Fill `iov` with up to `max` unread regions from the head.
 * Returns the number of regions. */
int buf_queue_iov(const struct buf_queue *q, struct iovec *iov, int max);

/* Read from `fd` into `q` until EAGAIN, EOF, an error or `limit` unread
 * bytes are queued. Returns bytes read (> 0), 0 on EOF, -1 on error (errno
 * set), -2 when nothing could be read now (EAGAIN or `q` at its limit).
 * *drained is set when the socket is known to hold no more data (EAGAIN or
 * a short read), so an edge-triggered caller waits for the next event. */
ssize_t buf_queue_read_fd(struct buf_queue *q, struct buf_pool *pool, int fd,
                          size_t limit, int *drained);

/* Write as much of `q` to `fd` as the socket takes. Returns bytes written
 * (>= 0; less than queued means EAGAIN), or -1 on error with errno set. */
ssize_t buf_queue_write_fd(struct buf_queue *q, struct buf_pool *pool, int fd);

#endif
