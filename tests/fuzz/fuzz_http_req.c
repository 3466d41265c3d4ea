/* libFuzzer target: the http request path — llhttp plus legate's RFC 9112
 * checks (http_head) and its framing decisions. The input is parsed whole
 * and in uneven pieces; both must agree on where each head ends, on
 * whether a message is refused, and on the body bytes. Every head that is accepted is
 * rewritten for an upstream (http_head_write_request, re-chunking as the
 * proxy does) and that output must itself parse cleanly as one request
 * with the same method, target (an absolute URI becomes its path) and body
 * length. */
#include "http_stream.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The rewritten head plus a re-chunked body must parse as one request. */
static void check_rewrite(const struct http_head *h, uint64_t body_len)
{
    /* legate adds up to three fields (Host, X-Forwarded-For, Via): skip
     * heads already at the field limit, which the re-parse would refuse */
    if (h->nfields + 3 > HTTP_MAX_HEADERS) {
        return;
    }
    struct http_out o = { .forwarded_for = "127.0.0.1", .via = true,
                          .chunked = h->framing == HTTP_BODY_CHUNKED, .host = "up:80" };
    struct http_stream_reparse r;
    if (http_stream_reparse(&r, h, &o, true, http_head_write_request)) {
        const struct http_head *back = &r.p.head;
        /* a path or "*" goes on as it came; an absolute URI as its path */
        const char *t = h->buf + h->target.off;
        bool as_came = t[0] == '/' || t[0] == '*';
        bool target_ok = as_came ? back->target.len == h->target.len
                                 : back->target.len > 0 && back->buf[back->target.off] == '/' &&
                                   back->target.len <= h->target.len;
        if (!http_stream_reparsed(&r) || back->method != h->method || !target_ok ||
            back->framing != h->framing ||
            (h->framing == HTTP_BODY_LENGTH && back->length != body_len)) {
            http_stream_reparse_trap(&r);
        }
    }
    http_parser_free(&r.p);
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
