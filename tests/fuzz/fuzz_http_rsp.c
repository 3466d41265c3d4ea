/* libFuzzer target: the http response path — llhttp plus legate's checks
 * on what an upstream sends (http_head, is_request false). The input is
 * parsed as a stream of responses, whole and in uneven pieces; both must
 * agree on where each head ends, on whether a response is refused, and on
 * the body bytes. Every accepted head must carry a status in 100-599, and
 * its rewrite for a client (http_head_write_response, re-chunking a body
 * that has no length as the proxy does) must itself parse cleanly as a
 * head with the same status and framing. */
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
    struct http_out o = { .via = true, .chunked = rechunk, .extra_name = "X-Arm",
                          .extra_value = "production" };
    struct http_stream_reparse r;
    if (http_stream_reparse(&r, h, &o, false, http_head_write_response)) {
        const struct http_head *back = &r.p.head;
        enum http_framing want = rechunk ? HTTP_BODY_CHUNKED : h->framing;
        if (!http_stream_reparsed(&r) || back->status != h->status ||
            (h->status >= 200 && back->framing != want) ||
            (want == HTTP_BODY_LENGTH && back->length != h->length)) {
            http_stream_reparse_trap(&r);
        }
    }
    http_parser_free(&r.p);
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
