/* libFuzzer target: the http request path — llhttp plus legate's RFC 9112
 * checks (http_head) and its framing decisions. The input is parsed whole
 * and in uneven pieces; both must agree on where each head ends, on
 * whether a message is refused, and on the body bytes. Every head that is accepted is
 * rewritten for an upstream (http_head_write_request, re-chunking as the
 * proxy does) and that output must itself parse cleanly as one request
 * with the same method, target (an absolute URI becomes its path) and body
 * length. */
#include "core/buf.h"
#include "http_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

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
        struct http_stream_sink s = { 0, 0 };
        struct http_parser p;
        http_parser_init(&p, true, 1u << 16, 1u << 16, &s, http_stream_body);
        struct http_error err;
        long used = n ? http_parser_feed(&p, flat, n, &err) : -1;
        /* a path or "*" goes on as it came; an absolute URI as its path */
        const char *t = h->buf + h->target.off;
        bool as_came = t[0] == '/' || t[0] == '*';
        bool target_ok = as_came ? p.head.target.len == h->target.len
                                 : p.head.done && p.head.target.len > 0 &&
                                   p.head.buf[p.head.target.off] == '/' &&
                                   p.head.target.len <= h->target.len;
        if (used < 0 || !p.head.done || p.head.method != h->method ||
            !target_ok || p.head.framing != h->framing ||
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

static const struct http_stream_hooks hooks = {
    .is_request = true,
    .head_limit = 2048,
    .line_limit = 512,
    .head = http_head_check_proxy, /* the proxy's extra check */
    .done = check_rewrite,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return http_stream_fuzz(data, size, &hooks);
}
