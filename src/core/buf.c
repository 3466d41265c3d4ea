/* buf: pooled chunks and chunk queues (see buf.h). */
#include "buf.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

enum {
    BUF_IOV_MAX = 64, /* regions per writev */
    BUF_READ_IOV = 8, /* chunks filled per readv */
};

/* Socket I/O without glibc's wrappers: in a threaded process they are
 * cancellation points that switch the thread's cancel type around every
 * call, and legate never cancels a thread. One region goes by recvfrom or
 * sendto, which skip the file layer and the iovec copy that readv and
 * writev pay for; the fds here are always sockets. */
static ssize_t buf_readv(int fd, const struct iovec *iov, int n)
{
    if (n == 1) {
        return syscall(SYS_recvfrom, fd, iov[0].iov_base, iov[0].iov_len, 0, NULL, NULL);
    }
    return syscall(SYS_readv, fd, iov, n);
}

static ssize_t buf_writev(int fd, const struct iovec *iov, int n)
{
    if (n == 1) {
        return syscall(SYS_sendto, fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL, NULL, 0);
    }
    return syscall(SYS_writev, fd, iov, n);
}

void buf_pool_init(struct buf_pool *pool, size_t size, size_t max_free)
{
    pool->size = size;
    pool->free = NULL;
    pool->nfree = 0;
    pool->max_free = max_free;
    pool->nused = 0;
    pool->changed = NULL;
    pool->changed_arg = NULL;
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
        if (pool->changed != NULL) {
            pool->changed(pool->changed_arg);
        }
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
        if (pool->changed != NULL) {
            pool->changed(pool->changed_arg);
        }
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

void buf_queue_rewind(struct buf_queue *q, struct buf_pool *pool, struct buf_mark m)
{
    if (m.tail == NULL) {
        buf_queue_clear(q, pool);
        return;
    }
    for (struct buf *b = m.tail->next; b != NULL;) {
        struct buf *next = b->next;
        buf_put(pool, b);
        b = next;
    }
    m.tail->next = NULL;
    m.tail->last = m.last;
    q->tail = m.tail;
    q->bytes = m.bytes;
}

/* Copy `len` bytes to the end of `q`; -1 when out of memory, with what
 * fitted left queued (the callers rewind). */
static inline int buf_queue_copy(struct buf_queue *q, struct buf_pool *pool, const void *data,
                                 size_t len)
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

int buf_queue_append(struct buf_queue *q, struct buf_pool *pool,
                     const void *data, size_t len)
{
    struct buf_mark mark = buf_queue_mark(q);
    if (buf_queue_copy(q, pool, data, len) == -1) {
        buf_queue_rewind(q, pool, mark);
        return -1;
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

int buf_queue_append_range(struct buf_queue *dst, struct buf_pool *pool,
                           const struct buf_queue *src, uint64_t off, uint64_t len)
{
    const struct buf *b = buf_queue_find(src, &off);
    struct buf_mark mark = buf_queue_mark(dst);
    while (b != NULL && len > 0) {
        size_t n = buf_unread(b) - (size_t)off;
        if (n > len) {
            n = (size_t)len;
        }
        if (buf_queue_copy(dst, pool, b->pos + off, n) == -1) {
            buf_queue_rewind(dst, pool, mark);
            return -1;
        }
        len -= n;
        off = 0;
        b = b->next;
    }
    return 0;
}

void buf_queue_peek(const struct buf_queue *q, uint64_t off, void *out, size_t len)
{
    uint8_t *o = out;
    const struct buf *b = buf_queue_find(q, &off);
    while (b != NULL && len > 0) {
        size_t n = buf_unread(b) - (size_t)off;
        if (n > len) {
            n = len;
        }
        memcpy(o, b->pos + off, n);
        o += n;
        len -= n;
        off = 0;
        b = b->next;
    }
}

void buf_queue_splice(struct buf_queue *dst, struct buf_queue *src)
{
    if (src->head == NULL) {
        return;
    }
    if (dst->tail != NULL) {
        dst->tail->next = src->head;
    } else {
        dst->head = src->head;
    }
    dst->tail = src->tail;
    dst->bytes += src->bytes;
    buf_queue_init(src);
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

/* Make sure the queue has free space for `want` bytes (or as much as the
 * tail's space and `max_fresh` new chunks, at most BUF_READ_IOV regions),
 * appending empty chunks; fill `iov` with the free regions. Returns the
 * number of regions, 0 when out of memory. */
static int buf_queue_reserve(struct buf_queue *q, struct buf_pool *pool, size_t want,
                             int max_fresh, struct iovec *iov)
{
    int n = 0;
    size_t room = 0;
    if (q->tail != NULL && buf_space(q->tail) > 0) {
        iov[n].iov_base = q->tail->last;
        iov[n].iov_len = buf_space(q->tail);
        room += iov[n].iov_len;
        n++;
    }
    int fresh = 0;
    while (room < want && n < BUF_READ_IOV && fresh++ < max_fresh) {
        struct buf *b = buf_get(pool);
        if (b == NULL) {
            break;
        }
        if (q->tail != NULL) {
            q->tail->next = b;
        } else {
            q->head = b;
        }
        q->tail = b;
        iov[n].iov_base = b->last;
        iov[n].iov_len = buf_space(b);
        room += iov[n].iov_len;
        n++;
    }
    if (room > want && n > 0) {
        iov[n - 1].iov_len -= room - want; /* never read past the limit */
    }
    return n;
}

/* Account for `n` bytes read into the regions from buf_queue_reserve
 * (they start at the first chunk with free space), then give back the
 * chunks at the end that received nothing. */
static void buf_queue_fill(struct buf_queue *q, struct buf_pool *pool, size_t n)
{
    q->bytes += n;
    struct buf *b = q->head;
    while (b != NULL && buf_space(b) == 0) {
        b = b->next;
    }
    for (; b != NULL && n > 0; b = b->next) {
        size_t k = buf_space(b) < n ? buf_space(b) : n;
        b->last += k;
        n -= k;
    }
    /* Chunks in a queue hold unread bytes, except fresh empty ones at the
     * end: keep everything up to the last chunk with data. */
    struct buf *keep = NULL;
    for (b = q->head; b != NULL; b = b->next) {
        if (buf_unread(b) > 0) {
            keep = b;
        }
    }
    struct buf *rest = keep != NULL ? keep->next : q->head;
    if (keep != NULL) {
        keep->next = NULL;
        q->tail = keep;
    } else {
        q->head = q->tail = NULL;
    }
    while (rest != NULL) {
        struct buf *next = rest->next;
        buf_put(pool, rest);
        rest = next;
    }
}

static ssize_t buf_queue_read_once(struct buf_queue *q, struct buf_pool *pool, int fd,
                                   size_t limit, int *drained)
{
    ssize_t total = 0;
    *drained = 0;
    /* Most reads are small (a request, a reply): the first readv offers
     * one fresh chunk; only once that fills does a read offer many. */
    int fresh = 1;
    while (q->bytes < limit) {
        struct iovec iov[BUF_READ_IOV + 1];
        size_t want = limit - q->bytes;
        int n = buf_queue_reserve(q, pool, want, fresh, iov);
        fresh = BUF_READ_IOV;
        if (n == 0) {
            errno = ENOMEM;
            return total > 0 ? total : -1;
        }
        size_t asked = 0;
        for (int i = 0; i < n; i++) {
            asked += iov[i].iov_len;
        }
        ssize_t r = buf_readv(fd, iov, n);
        buf_queue_fill(q, pool, r > 0 ? (size_t)r : 0);
        if (r > 0) {
            total += r;
            if ((size_t)r < asked) {
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
        ssize_t w = buf_writev(fd, iov, n);
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
