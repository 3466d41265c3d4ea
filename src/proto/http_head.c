/* http_head: message heads with llhttp, RFC 9112 checks, and rewriting
 * (see http_head.h). */
#include "http_head.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ */
/* llhttp callbacks: spans into the head buffer                        */

static struct http_parser *hp_of(llhttp_t *p)
{
    return p->data;
}

static uint32_t head_off(const struct http_head *h, const char *at)
{
    return (uint32_t)(at - h->buf);
}

/* Grow span `s` by a piece at `at` (pieces of one span are contiguous in
 * the head buffer, which llhttp reads). */
static void span_add(struct http_head *h, struct http_span *s, const char *at, size_t n)
{
    if (s->len == 0) {
        s->off = head_off(h, at);
    }
    s->len += (uint32_t)n;
}

static int cb_url(llhttp_t *p, const char *at, size_t n)
{
    struct http_head *h = &hp_of(p)->head;
    span_add(h, &h->target, at, n);
    return 0;
}

static int cb_status(llhttp_t *p, const char *at, size_t n)
{
    struct http_head *h = &hp_of(p)->head;
    span_add(h, &h->reason, at, n);
    return 0;
}

/* Count `n` more bytes after the head into `*count`; past the head limit
 * the message is refused (`status`, `why`). */
static int head_count_after(struct http_head *h, uint64_t *count, size_t n, int status,
                            const char *why)
{
    *count += n;
    if (*count > h->limit) {
        h->over_status = status;
        h->over_why = why;
        return HPE_USER;
    }
    return 0;
}

static int head_count_trailer(struct http_head *h, size_t n)
{
    return head_count_after(h, &h->trailer_bytes, n, 431, "trailer section too large");
}

/* Double the field table, out of the head's block onto the heap the
 * first time. Returns 0, or -1 when out of memory. */
static int head_grow_fields(struct http_head *h)
{
    unsigned cap = h->fields_cap * 2;
    bool in_block = h->fields == h->block->fields;
    struct http_field *f = realloc(in_block ? NULL : h->fields, cap * sizeof(*f));
    if (f == NULL) {
        return -1;
    }
    if (in_block) {
        memcpy(f, h->fields, h->nfields * sizeof(*f));
    }
    h->fields = f;
    h->fields_cap = cap;
    return 0;
}

/* Field callbacks after the head are for trailers: they point into body
 * data, not the head buffer, and are dropped (legate ends chunked bodies
 * with an empty trailer section of its own); only their size is kept. */
static int cb_field(llhttp_t *p, const char *at, size_t n)
{
    struct http_head *h = &hp_of(p)->head;
    if (h->done) {
        return head_count_trailer(h, n);
    }
    if (h->one_more) {
        return 0;
    }
    if (h->nfields == 0 || h->fields[h->nfields - 1].value.len > 0 ||
        h->fields[h->nfields - 1].value.off != 0) {
        if (h->nfields == HTTP_MAX_HEADERS) {
            /* Refused when the name ends, not now: where a feed stops
             * must not decide between this and an error inside the name. */
            h->one_more = true;
            return 0;
        }
        if (h->nfields == h->fields_cap && head_grow_fields(h) == -1) {
            h->no_memory = true;
            return HPE_USER;
        }
        h->fields[h->nfields++] = (struct http_field){ .kind = HTTP_HDR_OTHER };
    }
    span_add(h, &h->fields[h->nfields - 1].name, at, n);
    return 0;
}

static int cb_field_complete(llhttp_t *p)
{
    struct http_head *h = &hp_of(p)->head;
    if (h->one_more) {
        h->too_many = true;
        return HPE_USER;
    }
    return 0;
}

/* The target is measured once it has ended (feed_head stops a target
 * that never ends): the same bytes get the same verdict however they
 * arrive. */
static int cb_url_complete(llhttp_t *p)
{
    struct http_head *h = &hp_of(p)->head;
    h->target_done = true;
    if (h->target.len > h->line_limit) {
        h->target_long = true;
        return HPE_USER;
    }
    return 0;
}

static int cb_value(llhttp_t *p, const char *at, size_t n)
{
    struct http_head *h = &hp_of(p)->head;
    if (h->done) {
        return head_count_trailer(h, n);
    }
    struct http_field *f = &h->fields[h->nfields - 1];
    if (f->value.len == 0) {
        f->value.off = head_off(h, at);
    }
    f->value.len += (uint32_t)n;
    return 0;
}

/* A value ends: llhttp leaves its trailing whitespace in, which is the
 * field line's, not the value's (RFC 9110 5.5), so it goes. An empty
 * value leaves value.off at 0, which cb_field takes for "no value yet":
 * mark it explicitly so the next name starts a new field. */
static int cb_value_complete(llhttp_t *p)
{
    struct http_head *h = &hp_of(p)->head;
    if (h->done) {
        return head_count_trailer(h, 4); /* ": " and CRLF: empty fields count too */
    }
    struct http_field *f = &h->fields[h->nfields - 1];
    while (f->value.len > 0 && (h->buf[f->value.off + f->value.len - 1] == ' ' ||
                                h->buf[f->value.off + f->value.len - 1] == '\t')) {
        f->value.len--;
    }
    if (f->value.len == 0) {
        f->value.off = UINT32_MAX;
    }
    return 0;
}

/* RFC 9112 6.3: a response to HEAD, and any 1xx, 204 or 304, ends at its
 * head whatever Content-Length or Transfer-Encoding say (llhttp would
 * read a body by them). */
static bool head_bodiless(const struct http_parser *hp, int status)
{
    return hp->no_body ||
           (!hp->is_request && (status < 200 || status == 204 || status == 304));
}

static int cb_headers_complete(llhttp_t *p)
{
    struct http_parser *hp = hp_of(p);
    if (head_bodiless(hp, llhttp_get_status_code(p))) {
        return 1; /* skip the body: message_complete pauses right after */
    }
    return HPE_PAUSED;
}

static int cb_body(llhttp_t *p, const char *at, size_t n)
{
    struct http_parser *hp = hp_of(p);
    if (hp->body(hp->owner, at, n) == 0) {
        return 0;
    }
    hp->body_failed = true;
    return HPE_USER;
}

static int cb_chunk_ext(llhttp_t *p, const char *at, size_t n)
{
    (void)at;
    struct http_head *h = &hp_of(p)->head;
    return head_count_after(h, &h->ext_bytes, n, 400, "chunk extension too long");
}

static int cb_chunk_complete(llhttp_t *p)
{
    hp_of(p)->head.ext_bytes = 0;
    return 0;
}

static int cb_message_complete(llhttp_t *p)
{
    hp_of(p)->msg_done = true;
    return HPE_PAUSED;
}

static const llhttp_settings_t http_settings = {
    .on_url = cb_url,
    .on_url_complete = cb_url_complete,
    .on_status = cb_status,
    .on_header_field = cb_field,
    .on_header_field_complete = cb_field_complete,
    .on_header_value = cb_value,
    .on_header_value_complete = cb_value_complete,
    .on_headers_complete = cb_headers_complete,
    .on_body = cb_body,
    .on_chunk_extension_name = cb_chunk_ext,
    .on_chunk_extension_value = cb_chunk_ext,
    .on_chunk_complete = cb_chunk_complete,
    .on_message_complete = cb_message_complete,
};

/* ------------------------------------------------------------------ */
/* parser lifecycle                                                    */

/* Release the head's memory: what outgrew the block to the heap, the
 * block to `spare` (NULL: the heap). */
static void head_clear(struct http_head *h, struct spare *spare)
{
    size_t limit = h->limit, line = h->line_limit;
    if (h->block != NULL) {
        if (h->buf != h->block->buf) {
            free(h->buf);
        }
        if (h->fields != h->block->fields) {
            free(h->fields);
        }
        if (spare != NULL) {
            spare_put(spare, h->block);
        } else {
            free(h->block);
        }
    }
    memset(h, 0, sizeof(*h));
    h->limit = limit;
    h->line_limit = line;
}

void http_parser_init(struct http_parser *hp, bool is_request, size_t limit,
                      size_t line_limit, struct spare *spare, void *owner,
                      int (*body)(void *owner, const char *at, size_t n))
{
    memset(hp, 0, sizeof(*hp));
    llhttp_init(&hp->p, is_request ? HTTP_REQUEST : HTTP_RESPONSE, &http_settings);
    hp->p.data = hp;
    hp->is_request = is_request;
    hp->head.limit = limit;
    hp->head.line_limit = line_limit;
    hp->spare = spare;
    hp->owner = owner;
    hp->body = body;
}

void http_parser_free(struct http_parser *hp)
{
    head_clear(&hp->head, hp->spare);
}

void http_parser_next(struct http_parser *hp)
{
    head_clear(&hp->head, hp->spare);
    hp->msg_done = false;
    hp->no_body = false;
}

/* ------------------------------------------------------------------ */
/* RFC 9112 checks llhttp leaves to us                                 */

bool http_token_eq(const char *name, size_t len, const char *lit)
{
    return strlen(lit) == len && strncasecmp(name, lit, len) == 0;
}

static const char *field_name(const struct http_head *h, const struct http_field *f)
{
    return h->buf + f->name.off;
}

static const char *field_value(const struct http_head *h, const struct http_field *f,
                               size_t *len)
{
    *len = f->value.len;
    return f->value.len ? h->buf + f->value.off : "";
}

const char *http_head_get(const struct http_head *h, const char *name, size_t *len)
{
    size_t nlen = strlen(name);
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        if (f->name.len == nlen && strncasecmp(field_name(h, f), name, nlen) == 0) {
            return field_value(h, f, len);
        }
    }
    return NULL;
}

const char *http_head_find(const struct http_head *h, enum http_hdr kind, size_t *len)
{
    for (unsigned i = 0; i < h->nfields; i++) {
        if (h->fields[i].kind == kind) {
            return field_value(h, &h->fields[i], len);
        }
    }
    return NULL;
}

/* The recognized header names, lower case, by length: no length has more
 * than two, so a name is compared with at most two candidates (the
 * names of the common headers the table lacks mostly differ in length,
 * else in the first byte). */
enum { KNOWN_MAX_LEN = 19 };
static const struct {
    const char *name[2];
    uint8_t kind[2];
} known_by_len[KNOWN_MAX_LEN + 1] = {
    [2] = { { "te" }, { HTTP_HDR_TE } },
    [4] = { { "host" }, { HTTP_HDR_HOST } },
    [6] = { { "expect" }, { HTTP_HDR_EXPECT } },
    [7] = { { "trailer", "upgrade" }, { HTTP_HDR_TRAILER, HTTP_HDR_UPGRADE } },
    [10] = { { "connection", "keep-alive" }, { HTTP_HDR_CONNECTION, HTTP_HDR_KEEP_ALIVE } },
    [14] = { { "content-length" }, { HTTP_HDR_CONTENT_LENGTH } },
    [15] = { { "x-forwarded-for" }, { HTTP_HDR_X_FORWARDED_FOR } },
    [16] = { { "proxy-connection" }, { HTTP_HDR_PROXY_CONNECTION } },
    [17] = { { "transfer-encoding" }, { HTTP_HDR_TRANSFER_ENCODING } },
    [18] = { { "proxy-authenticate" }, { HTTP_HDR_PROXY_AUTHENTICATE } },
    [19] = { { "proxy-authorization" }, { HTTP_HDR_PROXY_AUTHORIZATION } },
};

static char ascii_lower(char c)
{
    return (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
}

/* Whether `len` bytes at `n` spell `lower` (lower case) in any case. */
static bool same_name(const char *n, const char *lower, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (ascii_lower(n[i]) != lower[i]) {
            return false;
        }
    }
    return true;
}

static uint8_t header_kind(const char *n, size_t len)
{
    if (len > KNOWN_MAX_LEN) {
        return HTTP_HDR_OTHER;
    }
    for (int i = 0; i < 2 && known_by_len[len].name[i] != NULL; i++) {
        if (same_name(n, known_by_len[len].name[i], len)) {
            return known_by_len[len].kind[i];
        }
    }
    return HTTP_HDR_OTHER;
}

static int head_fail(struct http_error *err, int status, const char *why)
{
    err->status = status;
    err->why = why;
    return -1;
}

/* Every line ends in CRLF; no bare CR, bare LF or NUL; no line after the
 * first starts with whitespace (obs-fold). One pass: strcspn stops at the
 * CR, LF or NUL after each run of plain bytes, and a NUL stands in at
 * buf[len] for the scan (that byte, if any, is past the head: it is put
 * back). */
static int head_check_bytes(struct http_head *h, struct http_error *err)
{
    char *end = h->buf + h->len;
    char saved = *end;
    *end = '\0';
    int rc = 0;
    for (const char *p = h->buf + strcspn(h->buf, "\r\n"); p < end;
         p += strcspn(p, "\r\n")) {
        if (*p == '\0') {
            rc = head_fail(err, 400, "NUL byte in the head");
            break;
        }
        if (*p == '\n') {
            rc = head_fail(err, 400, "bare LF in the head");
            break;
        }
        if (p[1] != '\n') { /* p[1] is the stand-in NUL at the end */
            rc = head_fail(err, 400, "bare CR in the head");
            break;
        }
        p += 2;
        if (*p == ' ' || *p == '\t') {
            rc = head_fail(err, 400, "obsolete line folding");
            break;
        }
    }
    *end = saved;
    return rc;
}

/* The next element of a comma-separated header value, trimmed of spaces
 * and tabs: [*s, *e) from position *pos on. Returns false at the end. */
static bool list_next(const char *v, size_t vlen, size_t *pos, size_t *s, size_t *e)
{
    while (*pos <= vlen) {
        size_t a = *pos, b = a;
        while (b < vlen && v[b] != ',') {
            b++;
        }
        *pos = b + 1;
        while (a < b && (v[a] == ' ' || v[a] == '\t')) {
            a++;
        }
        while (b > a && (v[b - 1] == ' ' || v[b - 1] == '\t')) {
            b--;
        }
        if (b > a) {
            *s = a;
            *e = b;
            return true;
        }
    }
    return false;
}

/* Transfer-Encoding: codings separated by commas; only chunked is known,
 * it must be last and only once. */
static int head_check_te(const struct http_head *h, bool is_request, struct http_error *err)
{
    bool chunked_seen = false, other = false, any = false;
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        if (f->kind != HTTP_HDR_TRANSFER_ENCODING) {
            continue;
        }
        any = true;
        size_t vlen;
        const char *v = field_value(h, f, &vlen);
        size_t pos = 0, b, e;
        while (list_next(v, vlen, &pos, &b, &e)) {
            if (chunked_seen) {
                return head_fail(err, 400, "Transfer-Encoding does not end in chunked");
            }
            if (http_token_eq(v + b, e - b, "chunked")) {
                chunked_seen = true;
            } else {
                other = true;
            }
        }
    }
    if (!any) {
        return 0;
    }
    if (is_request && h->major == 1 && h->minor == 0) {
        return head_fail(err, 400, "Transfer-Encoding in an HTTP/1.0 request");
    }
    if (!chunked_seen) {
        return head_fail(err, is_request ? 400 : 502, "Transfer-Encoding does not end in chunked");
    }
    if (other) {
        return head_fail(err, is_request ? 501 : 502, "unknown transfer coding");
    }
    return 0;
}

/* The version must read HTTP/1.0 or HTTP/1.1. llhttp also takes a request
 * line with none (HTTP/0.9), RTSP/1.0 and ICE/1.0 ones, and other majors,
 * none of which legate can speak for to an HTTP/1.1 upstream. */
static int head_check_version(const struct http_head *h, bool is_request,
                              struct http_error *err)
{
    size_t at = 0;
    while (!is_request && at < h->len && (h->buf[at] == '\r' || h->buf[at] == '\n')) {
        at++; /* empty lines before a status line, which llhttp skips too */
    }
    if (is_request) { /* the version follows the target and one space */
        at = (size_t)h->target.off + h->target.len;
        if (at >= h->len || h->buf[at] != ' ') {
            return head_fail(err, 400, "no HTTP version in the request line");
        }
        at++;
    }
    if (h->len - at < 8 || memcmp(h->buf + at, "HTTP/", 5) != 0) {
        return head_fail(err, is_request ? 400 : 502, "not an HTTP message");
    }
    if (h->major != 1) {
        return head_fail(err, is_request ? 505 : 502, "HTTP version not supported");
    }
    return 0;
}

/* The bytes that may stand in a Host value, an authority without
 * userinfo (RFC 3986: reg-name, IPv4, [IP-literal], then :port), as a
 * bitmap over ASCII: bit c % 64 of word c / 64. */
#define HOST_BIT(c) ((uint64_t)1 << ((unsigned)(c) % 64))
static const uint64_t host_bits[2] = {
    ((uint64_t)0x3ff << '0') | HOST_BIT('-') | HOST_BIT('.') | HOST_BIT('%') |
        HOST_BIT('!') | HOST_BIT('$') | HOST_BIT('&') | HOST_BIT('\'') | HOST_BIT('(') |
        HOST_BIT(')') | HOST_BIT('*') | HOST_BIT('+') | HOST_BIT(',') | HOST_BIT(';') |
        HOST_BIT('=') | HOST_BIT(':'),
    ((uint64_t)0x3ffffff << ('A' - 64)) | ((uint64_t)0x3ffffff << ('a' - 64)) |
        HOST_BIT('_') | HOST_BIT('~') | HOST_BIT('[') | HOST_BIT(']'),
};

/* Whether `n` bytes at `s` are all authority characters. */
static bool host_chars(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 128 || (host_bits[c / 64] >> (c % 64) & 1) == 0) {
            return false;
        }
    }
    return true;
}

/* RFC 9112 3.2: exactly one Host in HTTP/1.1 (at most one in 1.0) and a
 * valid one; an empty value is allowed. Two Hosts could send legate and
 * the upstream after different names. */
static int head_check_host(const struct http_head *h, struct http_error *err)
{
    const struct http_field *host = NULL;
    for (unsigned i = 0; i < h->nfields; i++) {
        if (h->fields[i].kind != HTTP_HDR_HOST) {
            continue;
        }
        if (host != NULL) {
            return head_fail(err, 400, "more than one Host header");
        }
        host = &h->fields[i];
    }
    if (host == NULL) {
        return h->minor >= 1 ? head_fail(err, 400, "no Host header in an HTTP/1.1 request") : 0;
    }
    size_t n;
    const char *v = field_value(h, host, &n);
    return host_chars(v, n) ? 0 : head_fail(err, 400, "invalid Host header");
}

/* Split an absolute-form target, scheme "://" authority [path] ["?"
 * query], into its scheme, authority and the rest (path and query,
 * possibly empty). False when the target is in another form. */
static bool head_absolute(const struct http_head *h, struct http_span *scheme,
                          struct http_span *authority, struct http_span *rest)
{
    const char *t = h->buf + h->target.off;
    size_t n = h->target.len;
    if (n == 0 || t[0] == '/') {
        return false;
    }
    const char *sep = memmem(t, n, "://", 3);
    if (sep == NULL) {
        return false;
    }
    size_t a = (size_t)(sep - t) + 3;
    size_t e = a;
    while (e < n && t[e] != '/' && t[e] != '?' && t[e] != '#') {
        e++;
    }
    *scheme = (struct http_span){ h->target.off, (uint32_t)(sep - t) };
    *authority = (struct http_span){ h->target.off + (uint32_t)a, (uint32_t)(e - a) };
    *rest = (struct http_span){ h->target.off + (uint32_t)e, (uint32_t)(n - e) };
    return true;
}

/* RFC 9112 3.2: origin-form ("/..."), asterisk-form for OPTIONS, or an
 * http(s) URI in absolute form with a valid authority. CONNECT's
 * authority-form asks for a tunnel, which a reverse proxy does not make:
 * 501. */
static int head_check_target(const struct http_head *h, struct http_error *err)
{
    const char *t = h->buf + h->target.off;
    size_t n = h->target.len;
    if (h->method == HTTP_CONNECT) {
        return head_fail(err, 501, "CONNECT is not supported (legate is not a forward proxy)");
    }
    if (n > 0 && t[0] == '/') {
        return 0;
    }
    if (n == 1 && t[0] == '*') {
        return h->method == HTTP_OPTIONS
                   ? 0 : head_fail(err, 400, "'*' target on a method other than OPTIONS");
    }
    struct http_span scheme, authority, rest;
    if (!head_absolute(h, &scheme, &authority, &rest) ||
        !(http_token_eq(h->buf + scheme.off, scheme.len, "http") ||
          http_token_eq(h->buf + scheme.off, scheme.len, "https"))) {
        return head_fail(err, 400, "request target is neither a path nor an http(s) URI");
    }
    if (authority.len == 0 || !host_chars(h->buf + authority.off, authority.len)) {
        return head_fail(err, 400, "invalid authority in the request target");
    }
    return 0;
}

int http_head_check_proxy(const struct http_head *h, struct http_error *err)
{
    return head_check_host(h, err) == -1 ? -1 : head_check_target(h, err);
}

/* Everything llhttp accepted that a proxy must still refuse. */
static int head_check(struct http_parser *hp, struct http_error *err)
{
    struct http_head *h = &hp->head;
    int bad = hp->is_request ? 400 : 502;
    if (head_check_version(h, hp->is_request, err) == -1) {
        return -1;
    }
    if (!hp->is_request && (h->status < 100 || h->status > 599)) {
        return head_fail(err, 502, "status code out of 100-599"); /* RFC 9110 15 */
    }
    if (head_check_bytes(h, err) == -1) {
        err->status = bad;
        return -1;
    }
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        const char *n = field_name(h, f);
        /* llhttp's lenient token table lets spaces into names, not tabs
         * (test_http_head pins both) */
        if (memchr(n, ' ', f->name.len) != NULL) {
            return head_fail(err, bad, "whitespace in a header name");
        }
    }
    return head_check_te(h, hp->is_request, err);
}

/* Copy what llhttp decided into the head. */
static void head_summarize(struct http_parser *hp)
{
    struct http_head *h = &hp->head;
    llhttp_t *p = &hp->p;
    h->major = llhttp_get_http_major(p);
    h->minor = llhttp_get_http_minor(p);
    h->method = llhttp_get_method(p);
    h->status = llhttp_get_status_code(p);
    h->keep_alive = llhttp_should_keep_alive(p) != 0;
    h->upgrade = llhttp_get_upgrade(p) != 0;
    h->has_length = (p->flags & F_CONTENT_LENGTH) != 0;
    h->length = h->has_length ? p->content_length : 0;
    if (p->flags & F_CHUNKED) {
        h->framing = HTTP_BODY_CHUNKED;
    } else if (h->has_length) {
        h->framing = h->length > 0 ? HTTP_BODY_LENGTH : HTTP_BODY_NONE;
    } else if (!hp->is_request && h->status >= 200 && h->status != 204 && h->status != 304) {
        h->framing = HTTP_BODY_EOF;
    } else {
        h->framing = HTTP_BODY_NONE;
    }
    if (head_bodiless(hp, h->status)) {
        h->framing = HTTP_BODY_NONE;
    }
    size_t elen;
    const char *e = http_head_find(h, HTTP_HDR_EXPECT, &elen);
    h->expect_continue = e != NULL && http_token_eq(e, elen, "100-continue");
}

/* The head ended `used` bytes into the newest piece: finish and check it. */
static int head_done(struct http_parser *hp, size_t start, size_t used, struct http_error *err)
{
    struct http_head *h = &hp->head;
    h->len = start + used;
    h->done = true;
    for (unsigned i = 0; i < h->nfields; i++) {
        struct http_field *f = &h->fields[i];
        f->kind = header_kind(field_name(h, f), f->name.len);
    }
    head_summarize(hp);
    return head_check(hp, err);
}

/* Grow the head's buffer past `need` bytes (one to spare for
 * head_check_bytes), out of the block onto the heap the first time.
 * Returns 0, or -1 when out of memory. */
static int head_grow_buf(struct http_head *h, size_t need)
{
    size_t cap = h->cap;
    while (cap <= need) {
        cap *= 2;
    }
    bool in_block = h->buf == h->block->buf;
    char *b = realloc(in_block ? NULL : h->buf, cap);
    if (b == NULL) {
        return -1;
    }
    if (in_block) {
        memcpy(b, h->buf, h->len);
    }
    h->buf = b;
    h->cap = cap;
    return 0;
}

static long feed_head(struct http_parser *hp, const char *data, size_t n, struct http_error *err)
{
    struct http_head *h = &hp->head;
    if (n == 0) {
        return 0;
    }
    size_t room = h->limit + 1 - h->len; /* one byte over: enough to know */
    size_t line_cap = h->line_limit + HTTP_LINE_SLACK; /* (h->len <= line_cap here) */
    bool in_line = hp->is_request && !h->target_done && line_cap < h->limit;
    if (in_line && line_cap + 1 - h->len < room) {
        room = line_cap + 1 - h->len; /* likewise for a target that goes on */
    }
    size_t take = n < room ? n : room;
    if (h->block == NULL) {
        h->block = hp->spare != NULL ? spare_get(hp->spare) : malloc(sizeof(*h->block));
        if (h->block == NULL) {
            return head_fail(err, 500, "out of memory");
        }
        h->fields = h->block->fields;
        h->fields_cap = HTTP_FIRST_FIELDS;
        h->buf = h->block->buf;
        h->cap = HTTP_FIRST_BUF;
    }
    if (h->len + take >= h->cap && head_grow_buf(h, h->len + take) == -1) {
        return head_fail(err, 500, "out of memory");
    }
    memcpy(h->buf + h->len, data, take);
    size_t start = h->len;
    h->len += take;
    llhttp_errno_t e = llhttp_execute(&hp->p, h->buf + start, take);
    if (e == HPE_PAUSED) {
        hp->paused = true;
        size_t used = (size_t)(llhttp_get_error_pos(&hp->p) - (h->buf + start));
        if (start + used > h->limit) { /* ended on the byte taken to know */
            return head_fail(err, hp->is_request ? 431 : 502, "head too large");
        }
        if (head_done(hp, start, used, err) == -1) {
            return -1;
        }
        return (long)used;
    }
    if (e != HPE_OK) {
        if (h->no_memory) {
            return head_fail(err, 500, "out of memory");
        }
        if (h->too_many) {
            return head_fail(err, hp->is_request ? 431 : 502, "too many header fields");
        }
        if (h->target_long) {
            return head_fail(err, 414, "request target too long");
        }
        return head_fail(err, hp->is_request ? 400 : 502, llhttp_get_error_reason(&hp->p));
    }
    /* still inside the head */
    if (hp->is_request && !h->target_done && h->len > line_cap) {
        return head_fail(err, 414, "request target too long");
    }
    if (h->len > h->limit) {
        return head_fail(err, hp->is_request ? 431 : 502, "head too large");
    }
    return (long)take;
}

long http_parser_feed(struct http_parser *hp, const char *data, size_t n,
                      struct http_error *err)
{
    if (hp->paused) {
        llhttp_resume(&hp->p);
        hp->paused = false;
    }
    if (!hp->head.done) {
        return feed_head(hp, data, n, err);
    }
    llhttp_errno_t e = llhttp_execute(&hp->p, data, n);
    if (e == HPE_PAUSED) {
        hp->paused = true;
        return (long)(llhttp_get_error_pos(&hp->p) - data);
    }
    if (e != HPE_OK && hp->head.over_why != NULL) {
        return head_fail(err, hp->is_request ? hp->head.over_status : 502, hp->head.over_why);
    }
    if (e != HPE_OK && hp->body_failed) {
        return head_fail(err, 500, "out of memory");
    }
    if (e != HPE_OK) {
        return head_fail(err, hp->is_request ? 400 : 502, llhttp_get_error_reason(&hp->p));
    }
    return (long)n;
}

int http_parser_finish(struct http_parser *hp)
{
    if (hp->paused) {
        llhttp_resume(&hp->p);
        hp->paused = false;
    }
    return llhttp_finish(&hp->p) == HPE_OK || hp->msg_done ? 0 : -1;
}

/* ------------------------------------------------------------------ */
/* writing heads for the other side                                    */

/* Mark in `named` (one flag per field) the fields the Connection header(s)
 * of `h` name: hop-by-hop for this connection only (RFC 9110 7.6.1).
 * Returns whether `h` has a Connection header; `named` is set only then. */
static bool connection_named(const struct http_head *h, bool *named)
{
    bool any = false;
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct http_field *c = &h->fields[i];
        if (c->kind != HTTP_HDR_CONNECTION) {
            continue;
        }
        if (!any) {
            memset(named, 0, h->nfields * sizeof(*named));
            any = true;
        }
        size_t vlen;
        const char *v = field_value(h, c, &vlen);
        size_t pos = 0, b, e;
        while (list_next(v, vlen, &pos, &b, &e)) {
            for (unsigned j = 0; j < h->nfields; j++) {
                const struct http_field *f = &h->fields[j];
                if (f->name.len == e - b && strncasecmp(field_name(h, f), v + b, e - b) == 0) {
                    named[j] = true;
                }
            }
        }
    }
    return any;
}

/* A head is composed in `buf` (on the stack) and appended to the queue in
 * one piece; a head longer than the buffer goes out in several. */
struct head_writer {
    struct buf_queue *q;
    struct buf_pool *pool;
    struct buf_mark mark;    /* where the head starts in q */
    int failed;
    size_t n;
    char buf[2048];
};

/* Only the bookkeeping: an initializer would also zero the 2 KiB buffer
 * on every head written (4% of legate's instructions per proxied
 * request). */
static void head_writer_init(struct head_writer *w, struct buf_queue *q, struct buf_pool *pool)
{
    w->q = q;
    w->pool = pool;
    w->mark = buf_queue_mark(q);
    w->failed = 0;
    w->n = 0;
}

/* The head is written (after put_fields' flush): 0, or -1 when out of
 * memory, and then none of it stays queued (a head over 2 KiB goes in
 * more than one append). */
static int head_writer_end(struct head_writer *w)
{
    if (w->failed) {
        buf_queue_rewind(w->q, w->pool, w->mark);
        return -1;
    }
    return 0;
}

static void flush(struct head_writer *w)
{
    if (!w->failed && w->n > 0 && buf_queue_append(w->q, w->pool, w->buf, w->n) == -1) {
        w->failed = 1;
    }
    w->n = 0;
}

static void put(struct head_writer *w, const char *s, size_t n)
{
    if (w->n + n > sizeof(w->buf)) {
        flush(w);
        if (n > sizeof(w->buf)) {
            if (!w->failed && buf_queue_append(w->q, w->pool, s, n) == -1) {
                w->failed = 1;
            }
            return;
        }
    }
    memcpy(w->buf + w->n, s, n);
    w->n += n;
}

#define PUT_LIT(w, lit) put((w), (lit), sizeof(lit) - 1)

static void puts_(struct head_writer *w, const char *s)
{
    put(w, s, strlen(s));
}

static void put_u64(struct head_writer *w, uint64_t v)
{
    char d[24];
    size_t n = 0;
    do {
        d[sizeof(d) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put(w, d + sizeof(d) - n, n);
}

/* The end-to-end fields, then framing and our additions, then CRLF; the
 * head is in the queue when this returns. */
static void put_fields(struct head_writer *w, const struct http_head *h,
                       const struct http_out *o, bool framed_length, bool drop_host)
{
    bool xff_done = false;
    bool named[HTTP_MAX_HEADERS];
    bool has_connection = connection_named(h, named);
    for (unsigned i = 0; i < h->nfields; i++) {
        const struct http_field *f = &h->fields[i];
        const char *n = field_name(h, f);
        if ((f->kind != HTTP_HDR_OTHER && f->kind <= HTTP_HDR_LAST_HOP) ||
            (has_connection && named[i]) || (drop_host && f->kind == HTTP_HDR_HOST)) {
            continue;
        }
        size_t vlen;
        const char *v = field_value(h, f, &vlen);
        bool append_xff = o->forwarded_for != NULL && f->kind == HTTP_HDR_X_FORWARDED_FOR;
        if (!append_xff && vlen > 0 && v == n + f->name.len + 2 && n[f->name.len] == ':' &&
            n[f->name.len + 1] == ' ' && v[vlen] == '\r') {
            /* The usual line, "Name: value" CRLF (checked: CR is followed
             * by LF), goes on as it came, in one piece. */
            put(w, n, f->name.len + 2 + vlen + 2);
            continue;
        }
        put(w, n, f->name.len);
        PUT_LIT(w, ": ");
        put(w, v, vlen);
        if (append_xff) {
            PUT_LIT(w, ", ");
            puts_(w, o->forwarded_for);
            xff_done = true;
        }
        PUT_LIT(w, "\r\n");
    }
    if (o->forwarded_for != NULL && !xff_done) {
        PUT_LIT(w, "X-Forwarded-For: ");
        puts_(w, o->forwarded_for);
        PUT_LIT(w, "\r\n");
    }
    if (o->via) {
        if (h->major == 1 && h->minor == 0) {
            PUT_LIT(w, "Via: 1.0 legate\r\n");
        } else {
            PUT_LIT(w, "Via: 1.1 legate\r\n");
        }
    }
    if (o->chunked) {
        PUT_LIT(w, "Transfer-Encoding: chunked\r\n");
    } else if (framed_length) {
        PUT_LIT(w, "Content-Length: ");
        put_u64(w, h->length);
        PUT_LIT(w, "\r\n");
    }
    if (o->extra_name != NULL) {
        puts_(w, o->extra_name);
        PUT_LIT(w, ": ");
        puts_(w, o->extra_value);
        PUT_LIT(w, "\r\n");
    }
    if (o->close) {
        PUT_LIT(w, "Connection: close\r\n\r\n");
    } else {
        PUT_LIT(w, "\r\n");
    }
    flush(w);
}

int http_head_write_request(const struct http_head *h, const struct http_out *o,
                            struct buf_queue *q, struct buf_pool *pool)
{
    struct head_writer w;
    head_writer_init(&w, q, pool);
    puts_(&w, llhttp_method_name((llhttp_method_t)h->method));
    PUT_LIT(&w, " ");
    /* An absolute-form target goes on as its path, and its authority
     * replaces any Host the client sent (RFC 9112 3.2.2). */
    struct http_span scheme, authority, rest;
    bool absolute = head_absolute(h, &scheme, &authority, &rest);
    if (!absolute) {
        put(&w, h->buf + h->target.off, h->target.len);
    } else {
        if (rest.len == 0 || h->buf[rest.off] != '/') {
            PUT_LIT(&w, "/");
        }
        put(&w, h->buf + rest.off, rest.len);
    }
    PUT_LIT(&w, " HTTP/1.1\r\n");
    size_t hl;
    if (absolute) {
        PUT_LIT(&w, "Host: ");
        put(&w, h->buf + authority.off, authority.len);
        PUT_LIT(&w, "\r\n");
    } else if (o->host != NULL && http_head_find(h, HTTP_HDR_HOST, &hl) == NULL) {
        PUT_LIT(&w, "Host: "); /* an HTTP/1.0 client may omit it; 1.1 needs it */
        puts_(&w, o->host);
        PUT_LIT(&w, "\r\n");
    }
    put_fields(&w, h, o, h->has_length, absolute);
    return head_writer_end(&w);
}

int http_head_write_response(const struct http_head *h, const struct http_out *o,
                             struct buf_queue *q, struct buf_pool *pool)
{
    struct head_writer w;
    head_writer_init(&w, q, pool);
    PUT_LIT(&w, "HTTP/1.1 ");
    put_u64(&w, (uint64_t)h->status);
    PUT_LIT(&w, " ");
    put(&w, h->reason.len ? h->buf + h->reason.off : "", h->reason.len);
    PUT_LIT(&w, "\r\n");
    /* A response to HEAD, or a 304, keeps the length it announces; a 1xx
     * or 204 may announce none (RFC 9110 8.6). */
    put_fields(&w, h, o, h->has_length && h->status >= 200 && h->status != 204, false);
    return head_writer_end(&w);
}
