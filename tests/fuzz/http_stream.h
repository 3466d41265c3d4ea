/* Shared by the http fuzz targets: feed a stream of messages to
 * http_parser whole and in uneven pieces; both runs must agree on where
 * each head ends, on whether a message is refused and on the body bytes.
 * The target's hooks add its own checks; http_stream_reparse parses a
 * rewritten head back for them. Header-only: each target is one
 * translation unit. */
#ifndef LEGATE_FUZZ_HTTP_STREAM_H
#define LEGATE_FUZZ_HTTP_STREAM_H

#include "core/buf.h"
#include "proto/http_head.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { HTTP_STREAM_MAX_MSGS = 16 };

struct http_stream_hooks {
    bool is_request;
    size_t head_limit, line_limit;
    /* At each complete head, in both runs: 0, or -1 to refuse it (the
     * status in `err`). NULL: none. */
    int (*head)(const struct http_head *h, struct http_error *err);
    /* At each complete message of the whole-input run. */
    void (*done)(const struct http_head *h, uint64_t body_len);
};

struct http_stream_outcome {
    int n;
    int status[HTTP_STREAM_MAX_MSGS]; /* 0 = accepted */
    size_t head_len[HTTP_STREAM_MAX_MSGS];
    uint64_t body_len[HTTP_STREAM_MAX_MSGS];
    uint64_t body_sum[HTTP_STREAM_MAX_MSGS];
};

struct http_stream_sink {
    uint64_t len;
    uint64_t sum;
};

static int http_stream_body(void *owner, const char *at, size_t n)
{
    struct http_stream_sink *s = owner;
    for (size_t i = 0; i < n; i++) {
        s->sum = s->sum * 131u + (uint8_t)at[i];
    }
    s->len += n;
    return 0;
}

static void http_stream_run(const uint8_t *data, size_t size, size_t piece,
                            const struct http_stream_hooks *k, struct http_stream_outcome *o)
{
    struct http_stream_sink s = { 0, 0 };
    struct http_parser p;
    http_parser_init(&p, k->is_request, k->head_limit, k->line_limit, NULL, &s, http_stream_body);
    memset(o, 0, sizeof(*o));
    size_t off = 0, head_at = 0;
    bool checked = false;
    while (o->n < HTTP_STREAM_MAX_MSGS) {
        size_t n = size - off;
        if (piece != 0 && n > piece) {
            n = piece;
        }
        struct http_error err = { 0, NULL };
        long used = http_parser_feed(&p, (const char *)data + off, n, &err);
        if (used < 0) {
            o->status[o->n++] = err.status ? err.status : 1;
            break;
        }
        off += (size_t)used;
        if (p.head.done && !checked) {
            head_at = off;
            checked = true;
            if (k->head != NULL && k->head(&p.head, &err) == -1) {
                o->status[o->n++] = err.status;
                break;
            }
        }
        if (p.msg_done) {
            o->head_len[o->n] = head_at;
            o->body_len[o->n] = s.len;
            o->body_sum[o->n] = s.sum;
            if (piece == 0) {
                k->done(&p.head, s.len);
            }
            o->n++;
            http_parser_next(&p);
            s = (struct http_stream_sink){ 0, 0 };
            checked = false;
            continue;
        }
        if (off == size && (used == 0 || n == 0)) {
            break;
        }
        if (used == 0 && !(p.head.done && p.paused)) {
            break;
        }
    }
    http_parser_free(&p);
}

/* The whole run against one cut by the first byte; traps on disagreement. */
static int http_stream_fuzz(const uint8_t *data, size_t size, const struct http_stream_hooks *k)
{
    struct http_stream_outcome whole, cut;
    http_stream_run(data, size, 0, k, &whole);
    http_stream_run(data, size, size > 0 ? (size_t)data[0] % 13 + 1 : 1, k, &cut);
    if (getenv("FUZZ_DEBUG")) {
        for (int i = 0; i < whole.n || i < cut.n; i++) {
            fprintf(stderr, "msg %d: whole %d/%zu/%llu  cut %d/%zu/%llu\n", i, whole.status[i],
                    whole.head_len[i], (unsigned long long)whole.body_len[i], cut.status[i],
                    cut.head_len[i], (unsigned long long)cut.body_len[i]);
        }
    }
    if (whole.n != cut.n) {
        __builtin_trap();
    }
    for (int i = 0; i < whole.n; i++) {
        /* Refused either way, though not always with the same status: a
         * head both too large and malformed gets 431 or 400 depending on
         * which the bytes that arrived so far show first. */
        if ((whole.status[i] != 0) != (cut.status[i] != 0) || whole.head_len[i] != cut.head_len[i] ||
            whole.body_len[i] != cut.body_len[i] || whole.body_sum[i] != cut.body_sum[i]) {
            __builtin_trap();
        }
    }
    return 0;
}

/* A head rewritten for the other side, parsed back. */
struct http_stream_reparse {
    struct http_parser p;     /* p.head: the rewrite as parsed back */
    struct http_stream_sink sink;
    struct http_error err;
    long used;                /* -1: refused, or nothing was written */
    size_t n;
    char flat[70000];
};

typedef int (*http_stream_writer)(const struct http_head *h, const struct http_out *o,
                                  struct buf_queue *q, struct buf_pool *pool);

/* Write `h` with `write` and `o`, then parse the bytes back (as a request
 * or a response) into `r`, whose parser the caller frees. Returns false
 * when the write failed (out of memory: nothing to check). */
static bool http_stream_reparse(struct http_stream_reparse *r, const struct http_head *h,
                                const struct http_out *o, bool is_request,
                                http_stream_writer write)
{
    struct buf_pool pool;
    struct buf_queue q;
    buf_pool_init(&pool, 4096, 4);
    buf_queue_init(&q);
    bool written = write(h, o, &q, &pool) == 0;
    r->n = written && q.bytes < sizeof(r->flat) ? (size_t)q.bytes : 0;
    buf_queue_peek(&q, 0, r->flat, r->n);
    buf_queue_clear(&q, &pool);
    buf_pool_drain(&pool);
    r->sink = (struct http_stream_sink){ 0, 0 };
    http_parser_init(&r->p, is_request, 1u << 16, 1u << 16, NULL, &r->sink, http_stream_body);
    r->used = r->n ? http_parser_feed(&r->p, r->flat, r->n, &r->err) : -1;
    return written;
}

/* Whether the rewrite parsed back as one complete head. */
static bool http_stream_reparsed(const struct http_stream_reparse *r)
{
    return r->used >= 0 && r->p.head.done;
}

/* A rewrite that does not hold: show it (FUZZ_DEBUG set) and trap. */
static void http_stream_reparse_trap(const struct http_stream_reparse *r)
{
    if (getenv("FUZZ_DEBUG")) {
        fprintf(stderr, "used=%ld done=%d why=%s\n---\n%.*s\n---\n", r->used, r->p.head.done,
                r->used < 0 ? r->err.why : "", (int)r->n, r->flat);
    }
    __builtin_trap();
}

#endif
