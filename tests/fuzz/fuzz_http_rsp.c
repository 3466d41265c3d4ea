/* libFuzzer target: the http response path — llhttp plus legate's checks
 * on what an upstream sends (http_head, is_request false). The input is
 * parsed as a stream of responses, whole and in uneven pieces; both must
 * agree on where each head ends, on whether a response is refused, and on
 * the body bytes. Every accepted head must carry a status in 100-599, and
 * its rewrite for a client (http_head_write_response, re-chunking a body
 * that has no length as the proxy does) must itself parse cleanly as a
 * head with the same status and framing. */
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

/* An accepted head: a status legate may pass on, and a rewrite that parses
 * back to the same status and framing. */
static void check_head(const struct http_head *h)
{
    if (h->status < 100 || h->status > 599) {
        __builtin_trap();
    }
    if (h->nfields + 2 > HTTP_MAX_HEADERS) { /* Via and the arm header */
        return;
    }
    bool rechunk = h->framing == HTTP_BODY_CHUNKED || h->framing == HTTP_BODY_EOF;
    struct buf_pool pool;
    struct buf_queue q;
    buf_pool_init(&pool, 4096, 4);
    buf_queue_init(&q);
    struct http_out o = { .via = true, .chunked = rechunk, .extra_name = "X-Arm",
                          .extra_value = "production" };
    if (http_head_write_response(h, &o, &q, &pool) == 0) {
        char flat[70000];
        size_t n = q.bytes < sizeof(flat) ? (size_t)q.bytes : 0;
        buf_queue_peek(&q, 0, flat, n);
        struct sink s = { 0, 0 };
        struct http_parser p;
        http_parser_init(&p, false, 1u << 16, 1u << 16, &s, on_body);
        struct http_error err;
        long used = n ? http_parser_feed(&p, flat, n, &err) : -1;
        enum http_framing want = rechunk ? HTTP_BODY_CHUNKED : h->framing;
        if (used < 0 || !p.head.done || p.head.status != h->status ||
            (h->status >= 200 && p.head.framing != want) ||
            (want == HTTP_BODY_LENGTH && p.head.length != h->length)) {
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
    http_parser_init(&p, false, 2048, 512, &s, on_body);
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
            if (piece == 0) {
                check_head(&p.head);
            }
        }
        if (p.msg_done) {
            o->head_len[o->n] = head_at;
            o->body_len[o->n] = s.len;
            o->body_sum[o->n] = s.sum;
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
    if (whole.n != cut.n) {
        __builtin_trap();
    }
    for (int i = 0; i < whole.n; i++) {
        if ((whole.status[i] != 0) != (cut.status[i] != 0) || whole.head_len[i] != cut.head_len[i] ||
            whole.body_len[i] != cut.body_len[i] || whole.body_sum[i] != cut.body_sum[i]) {
            __builtin_trap();
        }
    }
    return 0;
}
