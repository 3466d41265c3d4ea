/* http_head: one HTTP/1.1 message head (request or response), parsed by
 * llhttp and checked against RFC 9112's framing rules, then rewritten for
 * the other side.
 *
 * The head is copied into one buffer as it arrives (bounded by the pool's
 * limit) and llhttp runs over that copy, pausing exactly at the end of the
 * head; callbacks record spans (offsets into the buffer) for the target
 * and each header. llhttp then carries on over the body, which the caller
 * feeds from its own buffers (http.c): http_head only sees heads.
 *
 * What llhttp (8.x, built lenient: its strict mode refuses raw UTF-8 in a
 * request target) refuses is refused; what it tolerates but RFC 9112
 * forbids a proxy to pass on — spaces in or after a header name, obs-fold,
 * bare CR or LF, NUL, Transfer-Encoding on HTTP/1.0, chunked twice or not
 * last, unknown codings — is refused here (test_http_head pins which). */
#ifndef LEGATE_HTTP_HEAD_H
#define LEGATE_HTTP_HEAD_H

#include "../core/buf.h"
#include "../core/spare.h"

#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { HTTP_MAX_HEADERS = 128, HTTP_FIRST_FIELDS = 16, HTTP_FIRST_BUF = 1024 };
/* Bytes of a request line besides its target (method, spaces, leading
 * empty lines): a target still going after line_limit plus this many bytes
 * of head is refused with 414 at once. */
enum { HTTP_LINE_SLACK = 32 };

struct http_span {
    uint32_t off;
    uint32_t len;
};

/* Header names legate acts on, recognized once when the head ends. The
 * hop-by-hop ones (RFC 9110 7.6.1, plus the framing fields legate writes
 * itself) come first, up to HTTP_HDR_LAST_HOP. */
enum http_hdr {
    HTTP_HDR_OTHER,
    HTTP_HDR_CONNECTION,
    HTTP_HDR_KEEP_ALIVE,
    HTTP_HDR_PROXY_CONNECTION,
    HTTP_HDR_TE,
    HTTP_HDR_TRAILER,
    HTTP_HDR_UPGRADE,
    HTTP_HDR_TRANSFER_ENCODING,
    HTTP_HDR_CONTENT_LENGTH,
    HTTP_HDR_PROXY_AUTHENTICATE,
    HTTP_HDR_PROXY_AUTHORIZATION,
    HTTP_HDR_LAST_HOP = HTTP_HDR_PROXY_AUTHORIZATION,
    HTTP_HDR_HOST,
    HTTP_HDR_EXPECT,
    HTTP_HDR_X_FORWARDED_FOR,
};

struct http_field {
    struct http_span name;
    struct http_span value;
    uint8_t kind; /* enum http_hdr, set when the head is done */
};

/* A head's first memory, one block from the worker's spares: its field
 * table and its buffer live here until either outgrows it. */
struct http_head_block {
    struct http_field fields[HTTP_FIRST_FIELDS];
    char buf[HTTP_FIRST_BUF];
};

/* How a message's body is delimited. */
enum http_framing {
    HTTP_BODY_NONE,     /* no body at all */
    HTTP_BODY_LENGTH,   /* Content-Length */
    HTTP_BODY_CHUNKED,  /* Transfer-Encoding: chunked */
    HTTP_BODY_EOF,      /* response read until the connection closes */
};

struct http_head {
    struct http_head_block *block;  /* NULL until the first byte */
    /* raw bytes of the head, as received: block->buf, or the heap's once
     * they outgrow it */
    char *buf;
    size_t len;
    size_t cap;
    size_t limit;             /* most bytes a head may have */
    size_t line_limit;        /* most bytes of a request line */
    bool done;                /* the whole head is in buf[0, len) */

    /* parsed */
    struct http_span target;  /* request target (requests) */
    struct http_span reason;  /* reason phrase (responses) */
    struct http_field *fields;  /* `fields_cap` slots: block->fields, then the heap's
                                 * (doubling up to HTTP_MAX_HEADERS) */
    unsigned fields_cap;
    unsigned nfields;
    bool too_many;            /* more than HTTP_MAX_HEADERS */
    bool one_more;            /* a name past HTTP_MAX_HEADERS began (refused
                               * when it ends, as a whole feed would) */
    bool target_done;         /* the request target has ended */
    bool target_long;         /* ...longer than line_limit */
    bool no_memory;           /* the fields could not grow */
    uint8_t major, minor;
    uint8_t method;           /* llhttp_method_t */
    int status;
    enum http_framing framing;
    bool has_length;          /* a Content-Length was given */
    uint64_t length;          /* its value */
    bool keep_alive;          /* llhttp's verdict after the head */
    bool expect_continue;
    bool upgrade;
    /* after the head, bounded by `limit` too: the trailer section, and
     * each chunk's extensions (llhttp would take any length of either) */
    uint64_t trailer_bytes;
    uint64_t ext_bytes;       /* of the current chunk */
    int over_status;          /* set when one went over: 431 or 400 */
    const char *over_why;
};

/* What went wrong, as the status a client gets (0 = nothing). */
struct http_error {
    int status;               /* 400, 414, 431, 501; 502 for responses */
    const char *why;          /* short text for the log and the body */
};

/* A message parser: llhttp plus the head being collected. Heads are
 * copied (and bounded); bodies are handed to `body` as they pass. */
struct http_parser {
    llhttp_t p;
    struct http_head head;
    bool is_request;
    bool no_body;             /* response to HEAD: tell llhttp there is none */
    bool msg_done;            /* the whole message has passed */
    bool paused;              /* llhttp must be resumed before the next feed */
    bool body_failed;         /* `body` said stop: out of memory, not the peer's fault */
    struct spare *spare;      /* head blocks come from and go back here (NULL: the heap) */
    void *owner;
    /* body bytes as they pass (chunk framing removed); returns 0, or -1
     * when out of memory (the feed then fails with 500) */
    int (*body)(void *owner, const char *at, size_t n);
};

/* Set up for requests or responses with the given head limits; head
 * blocks from `spare` (its size sizeof(struct http_head_block); NULL: from
 * the heap). */
void http_parser_init(struct http_parser *hp, bool is_request, size_t limit,
                      size_t line_limit, struct spare *spare, void *owner,
                      int (*body)(void *owner, const char *at, size_t n));
void http_parser_free(struct http_parser *hp);

/* Start the next message on the same stream (after msg_done). The head's
 * memory is released: an idle keep-alive connection holds none. */
void http_parser_next(struct http_parser *hp);

/* Feed up to `n` bytes. Returns the bytes consumed, stopping early right
 * after the head (head.done becomes true) and right after the message
 * (msg_done), so the caller can act at each point; or -1 with `err`. */
long http_parser_feed(struct http_parser *hp, const char *data, size_t n,
                      struct http_error *err);

/* At the end of the stream: whether an EOF-delimited body ends cleanly
 * here. Returns 0 (message complete) or -1. */
int http_parser_finish(struct http_parser *hp);

/* A header's value by name (case-insensitive), or NULL; *len its length. */
const char *http_head_get(const struct http_head *h, const char *name, size_t *len);

/* The first value of a recognized header, or NULL; *len its length. */
const char *http_head_find(const struct http_head *h, enum http_hdr kind, size_t *len);

/* Whether `name` (len bytes) equals `lit` ignoring ASCII case. */
bool http_token_eq(const char *name, size_t len, const char *lit);

/* Options for writing a head toward the other side. */
struct http_out {
    const char *forwarded_for;  /* append to X-Forwarded-For; NULL: don't */
    bool via;                   /* add Via: 1.1 legate */
    bool close;                 /* say Connection: close */
    bool chunked;               /* the body we send is re-chunked */
    const char *host;           /* Host to add when a request has none */
    const char *extra_name;     /* one header to add (the arm); NULL: none */
    const char *extra_value;
};

/* RFC 9112 3.2 for a request head to forward. Host: exactly one in
 * HTTP/1.1 (at most one in 1.0) and a valid one, an empty value allowed
 * (two Hosts could send legate and the upstream after different names).
 * Target: a path, "*" for OPTIONS, or an http(s) URI with a valid
 * authority; CONNECT is 501. Returns 0, or -1 with the status in `err`.
 * (Not part of every parse: the admin listener takes requests without a
 * Host.) */
int http_head_check_proxy(const struct http_head *h, struct http_error *err);

/* Write request head `h` for an upstream: the request line (an
 * absolute-form target as its path, its authority as the Host), the
 * end-to-end headers (hop-by-hop ones and those named by Connection
 * dropped), framing headers for the body as we send it, and `o`'s
 * additions. Returns 0, or -1 when out of memory (and then nothing of
 * the head is queued). */
int http_head_write_request(const struct http_head *h, const struct http_out *o,
                            struct buf_queue *q, struct buf_pool *pool);

/* The same for response head `h` toward a client. */
int http_head_write_response(const struct http_head *h, const struct http_out *o,
                             struct buf_queue *q, struct buf_pool *pool);

#endif
