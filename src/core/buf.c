/* buf: pooled chunks and chunk queues (see buf.h). */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

enum { BUF_IOV_MAX = 64 };

void buf_pool_init(struct buf_pool *pool, size_t size, size_t max_free)
{
    pool->size = size;
    pool->free = NULL;
    pool->nfree = 0;
    pool->max_free = max_free;
    pool->nused = 0;
}

void buf_pool_drain(struct buf_pool *pool)
{
    while (pool->free != NULL) {
        struct buf *b = pool->free;
        pool->free = b->next;
        free(b);
    }
    pool->nfree = 0;
}

struct buf *buf_get(struct buf_pool *pool)
{
    struct buf *b = pool->free;
    if (b != NULL) {
        pool->free = b->next;
        pool->nfree--;
    } else {
        b = malloc(sizeof(*b) + pool->size);
        if (b == NULL) {
            return NULL;
        }
        b->end = b->start + pool->size;
    }
    b->next = NULL;
    b->pos = b->last = b->start;
    pool->nused++;
    return b;
}

void buf_put(struct buf_pool *pool, struct buf *b)
{
    if (b == NULL) {
        return;
    }
    pool->nused--;
    if (pool->nfree >= pool->max_free) {
        free(b);
        return;
    }
    b->next = pool->free;
    pool->free = b;
    pool->nfree++;
}

void buf_queue_clear(struct buf_queue *q, struct buf_pool *pool)
{
    while (q->head != NULL) {
        struct buf *b = q->head;
        q->head = b->next;
        buf_put(pool, b);
    }
    buf_queue_init(q);
}

struct buf *buf_queue_tail_space(struct buf_queue *q, struct buf_pool *pool)
{
    if (q->tail != NULL && buf_space(q->tail) > 0) {
        return q->tail;
    }
    struct buf *b = buf_get(pool);
    if (b == NULL) {
        return NULL;
    }
    if (q->tail != NULL) {
        q->tail->next = b;
    } else {
        q->head = b;
    }
    q->tail = b;
    return b;
}

void buf_queue_commit(struct buf_queue *q, size_t n)
{
    q->tail->last += n;
    q->bytes += n;
}

int buf_queue_append(struct buf_queue *q, struct buf_pool *pool,
                     const void *data, size_t len)
{
    const uint8_t *p = data;
    while (len > 0) {
        struct buf *b = buf_queue_tail_space(q, pool);
        if (b == NULL) {
            return -1;
        }
        size_t n = buf_space(b) < len ? buf_space(b) : len;
        memcpy(b->last, p, n);
        buf_queue_commit(q, n);
        p += n;
        len -= n;
    }
    return 0;
}

void buf_queue_consume(struct buf_queue *q, struct buf_pool *pool, size_t n)
{
    q->bytes -= n;
    while (n > 0) {
        struct buf *b = q->head;
        size_t avail = buf_unread(b);
        if (n < avail) {
            b->pos += n;
            return;
        }
        n -= avail;
        b->pos = b->last;
        if (b->next == NULL && buf_space(b) > 0) {
            break; /* tail with room left: the next read fills it */
        }
        q->head = b->next;
        if (q->head == NULL) {
            q->tail = NULL;
        }
        buf_put(pool, b);
    }
    /* An idle connection holds no chunk: give back an empty tail. */
    if (q->bytes == 0) {
        buf_queue_clear(q, pool);
    }
}

int buf_queue_iov(const struct buf_queue *q, struct iovec *iov, int max)
{
    int n = 0;
    for (const struct buf *b = q->head; b != NULL && n < max; b = b->next) {
        size_t len = buf_unread(b);
        if (len == 0) {
            continue;
        }
        iov[n].iov_base = b->pos;
        iov[n].iov_len = len;
        n++;
    }
    return n;
}

static ssize_t buf_queue_read_once(struct buf_queue *q, struct buf_pool *pool, int fd,
                                   size_t limit, int *drained)
{
    ssize_t total = 0;
    *drained = 0;
    while (q->bytes < limit) {
        struct buf *b = buf_queue_tail_space(q, pool);
        if (b == NULL) {
            errno = ENOMEM;
            return total > 0 ? total : -1;
        }
        size_t want = buf_space(b);
        if (want > limit - q->bytes) {
            want = limit - q->bytes;
        }
        ssize_t r = read(fd, b->last, want);
        if (r > 0) {
            buf_queue_commit(q, (size_t)r);
            total += r;
            if ((size_t)r < want) {
                /* A short read on a stream socket empties its receive
                 * queue: data arriving later raises a new edge. */
                *drained = 1;
                break;
            }
            continue;
        }
        if (r == 0) {
            return total > 0 ? total : 0;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *drained = 1;
            return total > 0 ? total : -2;
        }
        return total > 0 ? total : -1;
    }
    return total > 0 ? total : -2;
}

ssize_t buf_queue_read_fd(struct buf_queue *q, struct buf_pool *pool, int fd,
                          size_t limit, int *drained)
{
    ssize_t r = buf_queue_read_once(q, pool, fd, limit, drained);
    if (q->bytes == 0) {
        buf_queue_clear(q, pool); /* nothing read: do not hold a chunk */
    }
    return r;
}

ssize_t buf_queue_write_fd(struct buf_queue *q, struct buf_pool *pool, int fd)
{
    ssize_t total = 0;
    while (q->bytes > 0) {
        struct iovec iov[BUF_IOV_MAX];
        int n = buf_queue_iov(q, iov, BUF_IOV_MAX);
        ssize_t w = writev(fd, iov, n);
        if (w > 0) {
            buf_queue_consume(q, pool, (size_t)w);
            total += w;
            continue;
        }
        if (w == -1 && errno == EINTR) {
            continue;
        }
        if (w == -1 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        }
        return -1;
    }
    return total;
}
