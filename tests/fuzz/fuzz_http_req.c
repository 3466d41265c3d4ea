/* libFuzzer target: the http request path — llhttp plus legate's RFC 9112
 * checks (http_head) and its framing decisions. The input is parsed whole
 * and in uneven pieces; both must agree on where each head ends, on
 * whether a message is refused, and on the body bytes. Every head that is accepted is
 * rewritten for an upstream (http_head_write_request, re-chunking as the
 * proxy does) and that output must itself parse cleanly as one request
 * with the same method, target and body length. */
#include "core/buf.h"
#include "proto/http_head.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_MSGS = 16 };

struct outcome {
    int n;
    int status[MAX_MSGS];       /* 0 = accepted */
    size_t head_len[MAX_MSGS];
    uint64_t body_len[MAX_MSGS];
    uint64_t body_sum[MAX_MSGS];
};

struct sink {
    uint64_t len;
    uint64_t sum;
};

static int on_body(void *owner, const char *at, size_t n)
{
    struct sink *s = owner;
    for (size_t i = 0; i < n; i++) {
        s->sum = s->sum * 131u + (uint8_t)at[i];
    }
    s->len += n;
    return 0;
}

/* The rewritten head plus a re-chunked body must parse as one request. */
static void check_rewrite(const struct http_head *h, uint64_t body_len)
{
    struct buf_pool pool;
    struct buf_queue q;
    buf_pool_init(&pool, 4096, 4);
    buf_queue_init(&q);
    struct http_out o = { .forwarded_for = "127.0.0.1", .via = true,
                          .chunked = h->framing == HTTP_BODY_CHUNKED, .host = "up:80" };
    /* legate adds up to three fields (Host, X-Forwarded-For, Via): skip
     * heads already at the field limit, which the re-parse would refuse */
    if (h->nfields + 3 <= HTTP_MAX_HEADERS && http_head_write_request(h, &o, &q, &pool) == 0) {
        char flat[70000];
        size_t n = q.bytes < sizeof(flat) ? (size_t)q.bytes : 0;
        buf_queue_peek(&q, 0, flat, n);
        struct sink s = { 0, 0 };
        struct http_parser p;
        http_parser_init(&p, true, 1u << 16, 1u << 16, &s, on_body);
        struct http_error err;
        long used = n ? http_parser_feed(&p, flat, n, &err) : -1;
        if (used < 0 || !p.head.done || p.head.method != h->method ||
            p.head.target.len != h->target.len || p.head.framing != h->framing ||
            (h->framing == HTTP_BODY_LENGTH && p.head.length != body_len)) {
            if (getenv("FUZZ_DEBUG")) {
                fprintf(stderr, "used=%ld done=%d why=%s\n---\n%.*s\n---\n", used, p.head.done,
                        used < 0 ? err.why : "", (int)n, flat);
            }
            __builtin_trap();
        }
        http_parser_free(&p);
    }
    buf_queue_clear(&q, &pool);
    buf_pool_drain(&pool);
}

static void run(const uint8_t *data, size_t size, size_t piece, struct outcome *o)
{
    struct sink s = { 0, 0 };
    struct http_parser p;
    http_parser_init(&p, true, 2048, 512, &s, on_body);
    memset(o, 0, sizeof(*o));
    size_t off = 0, head_at = 0;
    bool checked = false;
    while (o->n < MAX_MSGS) {
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
            if (http_head_check_host(&p.head, &err) == -1) { /* the proxy's extra check */
                o->status[o->n++] = err.status;
                break;
            }
        }
        if (p.msg_done) {
            o->head_len[o->n] = head_at;
            o->body_len[o->n] = s.len;
            o->body_sum[o->n] = s.sum;
            if (piece == 0) {
                check_rewrite(&p.head, s.len);
            }
            o->n++;
            http_parser_next(&p);
            s = (struct sink){ 0, 0 };
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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct outcome whole, cut;
    run(data, size, 0, &whole);
    run(data, size, size > 0 ? (size_t)data[0] % 13 + 1 : 1, &cut);
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
