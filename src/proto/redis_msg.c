/* redis_msg: messages of the redis pool — their replies, the client order
 * they are written in, and the merging of fragments (see redis_int.h). */
#include "redis_int.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- */
/* messages                                                          */

/* Messages live in a slab of their own: a burst of requests in flight must
 * not leave them scattered through the heap pages its buffers used. */
struct redis_msg *redis_msg_new(struct redis_pool *rp, struct redis_client *cl)
{
    struct redis_msg *m = slab_alloc(&rp->msgs);
    if (m != NULL) {
        m->client = cl;
        buf_queue_init(&m->reply);
    }
    return m;
}

void redis_msg_free(struct redis_pool *rp, struct redis_msg *m)
{
    if (m == NULL) {
        return;
    }
    if (m->counted) {
        pool_pending_end(rp->pool);
    }
    for (uint32_t i = 0; i < m->nallfrags; i++) {
        redis_msg_free(rp, m->frags[i]);
    }
    free(m->frags); /* and the key positions, allocated with it */
    buf_queue_clear(&m->reply, &rp->wk->bufs);
    slab_free(&rp->msgs, m);
}

const char *redis_oom_reply(const struct redis_pool *rp)
{
    return rp->mc ? "SERVER_ERROR legate: out of memory\r\n" : "-ERR legate: out of memory\r\n";
}

void redis_reply_text(struct redis_pool *rp, struct redis_msg *m, const char *text)
{
    buf_queue_clear(&m->reply, &rp->wk->bufs);
    size_t len = strlen(text);
    if (len <= REDIS_SMALL_REPLY) {
        memcpy(m->small, text, len);
        m->nsmall = (uint8_t)len;
        return;
    }
    m->nsmall = 0;
    if (buf_queue_append(&m->reply, &rp->wk->bufs, text, len) == -1) {
        /* Every request gets its answer: a short one needs no memory. */
        log_error(rp->wk->log, "pool '%s': out of memory for an error reply", rp->cp->name);
        buf_queue_clear(&m->reply, &rp->wk->bufs);
        const char *oom = redis_oom_reply(rp);
        m->nsmall = (uint8_t)strlen(oom);
        memcpy(m->small, oom, m->nsmall);
    }
}

void redis_reply_fmt(struct redis_pool *rp, struct redis_msg *m, const char *fmt, ...)
{
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    redis_reply_text(rp, m, text);
}

/* Answer `m` with an error of legate's and complete it. */
void redis_msg_error(struct redis_pool *rp, struct redis_msg *m, const char *why)
{
    redis_reply_fmt(rp, m, rp->mc ? "SERVER_ERROR legate: %s\r\n" : "-ERR legate: %s\r\n", why);
    if (m->parent != NULL) {
        m->parent->failed = true;
    }
    redis_msg_complete(rp, m);
}

/* ---------------------------------------------------------------- */
/* clients: queueing and writing replies in order                    */

void redis_client_link(struct redis_client *cl, struct redis_msg *m)
{
    if (cl->tail != NULL) {
        cl->tail->cnext = m;
    } else {
        cl->head = m;
    }
    cl->tail = m;
    cl->pending++;
}

/* Move finished replies at the head of the client's order to its output. */
void redis_client_collect(struct redis_client *cl)
{
    struct redis_pool *rp = cl->rp;
    while (cl->head != NULL && cl->head->done) {
        struct redis_msg *m = cl->head;
        cl->head = m->cnext;
        if (cl->head == NULL) {
            cl->tail = NULL;
        }
        cl->pending--;
        buf_queue_splice(&cl->out, &m->reply);
        if (m->nsmall > 0 &&
            buf_queue_append(&cl->out, &rp->wk->bufs, m->small, m->nsmall) == -1) {
            /* the reply stream would have a hole: end the connection */
            log_error(rp->wk->log, "pool '%s': out of memory for a reply", rp->cp->name);
            cl->quit = true;
        }
        redis_msg_free(rp, m);
    }
}

/* ---------------------------------------------------------------- */
/* merging fragments                                                 */

/* Whether a reply starting with `head` (n > 0 bytes) is an error. */
static bool redis_reply_is_error(const struct redis_pool *rp, const char *head, size_t n)
{
    return rp->mc ? mc_reply_is_error(head, n) : head[0] == '-';
}

/* Length of the one RESP value starting `off` bytes into `q`, or -1. */
static int redis_frame(const struct buf_queue *q, uint64_t off, uint64_t *len)
{
    struct resp_rsp r;
    resp_rsp_init(&r);
    for (const struct buf *b = buf_queue_find(q, &off); b != NULL; b = b->next, off = 0) {
        size_t used;
        int rc = resp_rsp_feed(&r, b->pos + off, buf_unread(b) - (size_t)off, &used,
                               &resp_default_limits);
        if (rc == RESP_DONE) {
            *len = r.size;
            return 0;
        }
        if (rc == RESP_ERROR) {
            return -1;
        }
    }
    return -1;
}

/* Header length of an array reply "*N\r\n" at the head of `q`, or -1. */
static int redis_array_header(const struct buf_queue *q, uint64_t *hdr)
{
    char h[32];
    size_t n = q->bytes < sizeof(h) ? (size_t)q->bytes : sizeof(h);
    buf_queue_peek(q, 0, h, n);
    if (n < 4 || h[0] != '*') {
        return -1;
    }
    for (size_t i = 1; i + 1 < n; i++) {
        if (h[i] == '\r' && h[i + 1] == '\n') {
            *hdr = i + 2;
            return 0;
        }
    }
    return -1;
}

/* Up to `len` bytes from the start of m's reply, wherever it is kept.
 * Returns how many were copied. */
static size_t redis_reply_peek(const struct redis_msg *m, char *out, size_t len)
{
    if (m->nsmall > 0) {
        size_t n = len < m->nsmall ? len : m->nsmall;
        memcpy(out, m->small, n);
        return n;
    }
    size_t n = len < m->reply.bytes ? len : (size_t)m->reply.bytes;
    buf_queue_peek(&m->reply, 0, out, n);
    return n;
}

/* Move a short reply kept inside `m` into m->reply, so the buffer-queue
 * code can walk it. Returns 0, or -1 when out of memory. */
static int redis_reply_unsmall(struct redis_pool *rp, struct redis_msg *m)
{
    if (m->nsmall == 0) {
        return 0;
    }
    int rc = buf_queue_append(&m->reply, &rp->wk->bufs, m->small, m->nsmall);
    m->nsmall = 0;
    return rc;
}

/* MGET: the values of every fragment, put back in the order of the keys. */
static int redis_merge_values(struct redis_pool *rp, struct redis_msg *p)
{
    struct buf_pool *bufs = &rp->wk->bufs;
    uint64_t *offs = calloc(p->nkeys, sizeof(*offs));
    uint64_t *lens = calloc(p->nkeys, sizeof(*lens));
    struct redis_msg **from = calloc(p->nkeys, sizeof(*from));
    int rc = -1;
    if (offs == NULL || lens == NULL || from == NULL) {
        goto out;
    }
    for (uint32_t f = 0; f < p->nallfrags; f++) {
        struct redis_msg *fr = p->frags[f];
        uint64_t at;
        if (redis_reply_unsmall(rp, fr) == -1 || redis_array_header(&fr->reply, &at) == -1) {
            goto out;
        }
        for (uint32_t k = 0; k < fr->nfragkeys; k++) {
            uint64_t len;
            if (redis_frame(&fr->reply, at, &len) == -1) {
                goto out;
            }
            uint32_t slot = fr->keyidx[k];
            offs[slot] = at;
            lens[slot] = len;
            from[slot] = fr;
            at += len;
        }
    }
    char hdr[RESP_HEADER_MAX];
    size_t n = resp_header(hdr, '*', p->nkeys);
    if (buf_queue_append(&p->reply, bufs, hdr, n) == -1) {
        goto out;
    }
    for (uint32_t i = 0; i < p->nkeys; i++) {
        if (from[i] == NULL ||
            buf_queue_append_range(&p->reply, bufs, &from[i]->reply, offs[i], lens[i]) == -1) {
            goto out;
        }
    }
    rc = 0;
out:
    free(offs);
    free(lens);
    free(from);
    return rc;
}

/* All fragments of `p` are answered: build its one reply. */
static void redis_merge(struct redis_pool *rp, struct redis_msg *p)
{
    if (p->failed) {
        /* Pass on the first error a fragment got. */
        for (uint32_t i = 0; i < p->nallfrags; i++) {
            struct redis_msg *fr = p->frags[i];
            char head[16];
            size_t n = redis_reply_peek(fr, head, sizeof(head));
            if (n > 0 && redis_reply_is_error(rp, head, n) && redis_reply_unsmall(rp, fr) == 0) {
                buf_queue_clear(&p->reply, &rp->wk->bufs);
                p->nsmall = 0;
                buf_queue_splice(&p->reply, &fr->reply);
                return;
            }
        }
        redis_reply_text(rp, p, rp->mc ? "SERVER_ERROR legate: a fragment of the command "
                                         "failed\r\n"
                                       : "-ERR legate: a fragment of the command failed\r\n");
        return;
    }
    if (rp->mc) {
        bool whole = true;
        for (uint32_t i = 0; i < p->nallfrags; i++) {
            whole = whole && redis_reply_unsmall(rp, p->frags[i]) == 0;
        }
        if (!whole || mc_merge(rp, p) == -1) {
            buf_queue_clear(&p->reply, &rp->wk->bufs);
            redis_reply_text(rp, p, "SERVER_ERROR legate: could not merge the replies\r\n");
        }
    } else if (p->kind == REDIS_SPLIT_SUM) {
        redis_reply_fmt(rp, p, ":%" PRId64 "\r\n", p->sum);
    } else if (p->kind == REDIS_SPLIT_PAIRS) {
        redis_reply_text(rp, p, "+OK\r\n");
    } else if (redis_merge_values(rp, p) == -1) {
        redis_reply_text(rp, p, "-ERR legate: could not merge the replies\r\n");
    }
}

/* A fragment's reply arrived: check it, account for it, merge when last. */
static void redis_fragment_done(struct redis_pool *rp, struct redis_msg *fr)
{
    struct redis_msg *p = fr->parent;
    char head[32];
    size_t n = redis_reply_peek(fr, head, sizeof(head) - 1);
    head[n] = '\0';
    if (n == 0 || redis_reply_is_error(rp, head, n)) {
        p->failed = true;
    } else if (p->kind == REDIS_SPLIT_SUM) {
        /* ":<integer>\r\n" */
        char *end = NULL;
        long long v = head[0] == ':' ? strtoll(head + 1, &end, 10) : 0;
        if (end == NULL || end == head + 1 || end[0] != '\r' || end[1] != '\n') {
            p->failed = true;
        } else {
            p->sum += v;
        }
    }
    if (--p->nfrags == 0) {
        redis_merge(rp, p);
        redis_msg_complete(rp, p);
    }
}

/* `m` has its reply (or error): hand it on. */
void redis_msg_complete(struct redis_pool *rp, struct redis_msg *m)
{
    m->done = true;
    if (m->quiet) {
        /* memcache noreply: the client asked for no answer, not even an error */
        buf_queue_clear(&m->reply, &rp->wk->bufs);
        m->nsmall = 0;
    }
    if (m->parent != NULL) {
        redis_fragment_done(rp, m);
        return;
    }
    struct redis_client *cl = m->client;
    if (cl == NULL) {
        redis_msg_free(rp, m); /* nobody waits: drop */
        return;
    }
    if (m == cl->head) {
        /* Move it (and any finished ones behind it) to the output now, so
         * the next reply finds its message at the head; write them all
         * together at the end of the loop iteration, in one writev. */
        redis_client_collect(cl);
        ev_defer(rp->wk->loop, &cl->flush);
    }
}

int redis_append_bulk(struct redis_pool *rp, struct buf_queue *q, const void *data,
                             size_t len)
{
    char hdr[RESP_HEADER_MAX];
    size_t n = resp_header(hdr, '$', len);
    return buf_queue_append(q, &rp->wk->bufs, hdr, n) == -1 ||
                   buf_queue_append(q, &rp->wk->bufs, data, len) == -1 ||
                   buf_queue_append(q, &rp->wk->bufs, "\r\n", 2) == -1
               ? -1
               : 0;
}

