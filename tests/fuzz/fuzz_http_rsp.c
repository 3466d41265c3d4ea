/* libFuzzer target: the http response path — llhttp plus legate's checks
 * on what an upstream sends (http_head, is_request false). The input is
 * parsed as a stream of responses, whole and in uneven pieces; both must
 * agree on where each head ends, on whether a response is refused, and on
 * the body bytes. Every accepted head must carry a status in 100-599, and
 * its rewrite for a client (http_head_write_response, re-chunking a body
 * that has no length as the proxy does) must itself parse cleanly as a
 * head with the same status and framing. */
#include "core/buf.h"
#include "http_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* An accepted head: a status legate may pass on, and a rewrite that parses
 * back to the same status and framing. */
static void check_head(const struct http_head *h, uint64_t body_len)
{
    (void)body_len;
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
        struct http_stream_sink s = { 0, 0 };
        struct http_parser p;
        http_parser_init(&p, false, 1u << 16, 1u << 16, &s, http_stream_body);
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

static const struct http_stream_hooks hooks = {
    .is_request = false,
    .head_limit = 2048,
    .line_limit = 512,
    .head = NULL,
    .done = check_head,
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return http_stream_fuzz(data, size, &hooks);
}
