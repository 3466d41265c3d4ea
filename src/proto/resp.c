/* resp: incremental RESP request and response parsers (see resp.h). */
#include "resp.h"

#include <stdlib.h>
#include <string.h>

const struct resp_limits resp_default_limits = {
    .max_args = 1024 * 1024,
    .max_bulk = 512ull * 1024 * 1024,
    .max_request = 1024ull * 1024 * 1024,
    .max_inline = 64 * 1024,
};

/* ------------------------------------------------------------------ */
/* requests                                                            */

enum {
    RQ_START,
    RQ_COUNT,
    RQ_COUNT_LF,
    RQ_DOLLAR,
    RQ_LEN,
    RQ_LEN_LF,
    RQ_DATA,
    RQ_DATA_CR,
    RQ_DATA_LF,
    RQ_INLINE,
};

void resp_req_init(struct resp_req *r)
{
    memset(r, 0, sizeof(*r));
}

void resp_req_reset(struct resp_req *r)
{
    struct resp_arg *args = r->args;
    uint32_t cap = r->cap;
    memset(r, 0, sizeof(*r));
    r->args = args;
    r->cap = cap;
}

void resp_req_shed(struct resp_req *r, struct resp_args_spare *s)
{
    if (r->args == NULL || r->phase != 0 || r->nargs != 0) {
        return;
    }
    if (s->args == NULL) {
        s->args = r->args;
        s->cap = r->cap;
    } else {
        free(r->args);
    }
    r->args = NULL;
    r->cap = 0;
}

void resp_req_adopt(struct resp_req *r, struct resp_args_spare *s)
{
    if (r->args != NULL || s->args == NULL) {
        return;
    }
    r->args = s->args;
    r->cap = s->cap;
    s->args = NULL;
    s->cap = 0;
}

void resp_req_free(struct resp_req *r)
{
    free(r->args);
    r->args = NULL;
    r->cap = 0;
}

const char resp_no_memory[] = "out of memory";

static int resp_req_fail(struct resp_req *r, const char *why)
{
    r->error = why;
    return RESP_ERROR;
}

/* Room for argument number r->nargs; grows geometrically up to the limit. */
static int resp_req_grow(struct resp_req *r, uint32_t want)
{
    if (want <= r->cap) {
        return 0;
    }
    uint32_t cap = r->cap ? r->cap : 8;
    while (cap < want) {
        cap = cap > UINT32_MAX / 2 ? want : cap * 2;
    }
    struct resp_arg *a = realloc(r->args, (size_t)cap * sizeof(*a));
    if (a == NULL) {
        return -1;
    }
    r->args = a;
    r->cap = cap;
    return 0;
}

/* Append a decimal digit to r->num, refusing values above `max`. */
static int resp_digit(uint64_t *num, bool *digits, uint8_t c, uint64_t max)
{
    if (c < '0' || c > '9') {
        return -1;
    }
    uint64_t v = *num * 10 + (uint64_t)(c - '0');
    if (*num > (UINT64_MAX - 9) / 10 || v > max) {
        return -2;
    }
    *num = v;
    *digits = true;
    return 0;
}

/* A name with a NUL byte, or longer than RESP_NAME_MAX, matches no command
 * (so "GET\0X" can never pass for GET). */
static void resp_req_name_byte(struct resp_req *r, uint64_t index, uint8_t c)
{
    if (index >= RESP_NAME_MAX || c == '\0') {
        r->name_too_long = true;
        return;
    }
    r->name[index] = (char)(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
}

/* Inline form: arguments separated by spaces, ended by LF (CR ignored). */
static int resp_req_inline(struct resp_req *r, uint8_t c, const struct resp_limits *lim,
                           uint64_t here)
{
    if (here >= lim->max_inline) {
        return resp_req_fail(r, "inline command too long");
    }
    if (c == '\n') {
        r->size = here + 1;
        return RESP_DONE;
    }
    if (c == '"' || c == '\'') {
        return resp_req_fail(r, "quoted inline arguments are not supported");
    }
    if (c == '\0') {
        return resp_req_fail(r, "NUL byte in an inline command");
    }
    bool space = c == ' ' || c == '\t' || c == '\r';
    if (space) {
        r->digits = false; /* between arguments */
        return RESP_AGAIN;
    }
    if (!r->digits) { /* a new argument starts */
        if (r->nargs >= lim->max_args) {
            return resp_req_fail(r, "too many arguments");
        }
        if (resp_req_grow(r, r->nargs + 1) == -1) {
            return resp_req_fail(r, resp_no_memory);
        }
        r->args[r->nargs].off = here;
        r->args[r->nargs].len = 0;
        r->args[r->nargs].hdr = 0;
        r->nargs++;
        r->digits = true;
    }
    struct resp_arg *a = &r->args[r->nargs - 1];
    if (r->nargs == 1) {
        resp_req_name_byte(r, a->len, c);
    }
    a->len++;
    return RESP_AGAIN;
}

/* Fast path for the common case: one whole bulk string "$<len>\r\n<data>\r\n"
 * lies in p[0..avail). Fills the next argument and returns the bytes it
 * took, or returns 0 to leave the input to the byte-wise machine below,
 * which accepts the same inputs and reports every error at its byte. */
static size_t resp_req_bulk_fast(struct resp_req *r, const uint8_t *p, size_t avail,
                                 const struct resp_limits *lim)
{
    enum { DIGITS_MAX = 18 }; /* beyond: let the careful path judge */
    if (avail < 6 || p[0] != '$') {
        return 0;
    }
    size_t stop = avail < DIGITS_MAX + 1 ? avail : DIGITS_MAX + 1;
    size_t j = 1;
    uint64_t len = 0;
    unsigned d;
    while (j < stop && (d = (unsigned)p[j] - '0') < 10) {
        len = len * 10 + d;
        j++;
    }
    if (j == 1 || j > DIGITS_MAX || len > lim->max_bulk || avail - j < 2 || p[j] != '\r' ||
        p[j + 1] != '\n') {
        return 0;
    }
    size_t hdr = j + 2;
    if (avail - hdr < len + 2 || p[hdr + len] != '\r' || p[hdr + len + 1] != '\n') {
        return 0;
    }
    /* locals: the stores to *a below may alias r's fields for the compiler */
    uint64_t size = r->size;
    uint64_t total = hdr + len + 2;
    if (size + total > lim->max_request) {
        return 0;
    }
    uint32_t k = r->nargs;
    if (k == 0) {
        for (uint64_t b = 0; b < len && b <= RESP_NAME_MAX; b++) {
            resp_req_name_byte(r, b, p[hdr + b]);
        }
    }
    struct resp_arg *a = &r->args[k];
    a->off = size + hdr;
    a->len = len;
    a->hdr = hdr;
    r->nargs = k + 1;
    r->size = size + total;
    return (size_t)total;
}

int resp_req_feed(struct resp_req *r, const uint8_t *data, size_t n, size_t *used,
                  const struct resp_limits *lim)
{
    size_t i = 0;
    int rc = RESP_AGAIN;
    while (i < n && rc == RESP_AGAIN) {
        if (r->phase == RQ_DOLLAR) {
            size_t k = resp_req_bulk_fast(r, data + i, n - i, lim);
            if (k > 0) {
                i += k;
                if (--r->left == 0) {
                    rc = RESP_DONE;
                }
                continue;
            }
        }
        uint8_t c = data[i];
        uint64_t here = r->size; /* offset of data[i] in the request */
        if (here >= lim->max_request) {
            rc = resp_req_fail(r, "request too large");
            break;
        }
        switch (r->phase) {
        case RQ_START:
            if (c == '*') {
                r->phase = RQ_COUNT;
            } else {
                r->phase = RQ_INLINE;
                r->inline_form = true;
                rc = resp_req_inline(r, c, lim, here);
            }
            break;
        case RQ_COUNT:
            if (c == '\r' && r->digits) {
                r->phase = RQ_COUNT_LF;
            } else if (c == '-' && !r->digits) {
                rc = resp_req_fail(r, "negative multibulk count");
            } else {
                int d = resp_digit(&r->num, &r->digits, c, lim->max_args);
                if (d != 0) {
                    rc = resp_req_fail(r, d == -2 ? "too many arguments"
                                                  : "invalid multibulk count");
                }
            }
            break;
        case RQ_COUNT_LF:
            if (c != '\n') {
                rc = resp_req_fail(r, "expected LF after multibulk count");
            } else if (r->num == 0) {
                r->size = here + 1;
                rc = RESP_DONE; /* *0: nothing to do, as Redis */
            } else if (resp_req_grow(r, (uint32_t)r->num) == -1) {
                rc = resp_req_fail(r, resp_no_memory);
            } else {
                r->left = (uint32_t)r->num;
                r->phase = RQ_DOLLAR;
            }
            break;
        case RQ_DOLLAR:
            if (c != '$') {
                rc = resp_req_fail(r, "expected '$' for a bulk string");
            } else {
                r->num = 0;
                r->digits = false;
                r->dollar = here;
                r->phase = RQ_LEN;
            }
            break;
        case RQ_LEN:
            if (c == '\r' && r->digits) {
                r->phase = RQ_LEN_LF;
            } else {
                int d = resp_digit(&r->num, &r->digits, c, lim->max_bulk);
                if (d != 0) {
                    rc = resp_req_fail(r, d == -2 ? "bulk string too long"
                                                  : "invalid bulk length");
                }
            }
            break;
        case RQ_LEN_LF:
            if (c != '\n') {
                rc = resp_req_fail(r, "expected LF after bulk length");
                break;
            }
            r->args[r->nargs].off = here + 1;
            r->args[r->nargs].len = r->num;
            r->args[r->nargs].hdr = here + 1 - r->dollar;
            r->bulk_left = r->num;
            r->phase = r->num == 0 ? RQ_DATA_CR : RQ_DATA;
            break;
        case RQ_DATA: {
            size_t k = n - i;
            if (k > r->bulk_left) {
                k = (size_t)r->bulk_left;
            }
            if (r->nargs == 0) { /* the command name: keep it, upper-cased */
                uint64_t at = r->args[0].len - r->bulk_left;
                for (size_t j = 0; j < k && at + j <= RESP_NAME_MAX; j++) {
                    resp_req_name_byte(r, at + j, data[i + j]);
                }
            }
            r->bulk_left -= k;
            r->size += k;
            i += k;
            if (r->bulk_left == 0) {
                r->phase = RQ_DATA_CR;
            }
            continue; /* size and i already advanced */
        }
        case RQ_DATA_CR:
            if (c != '\r') {
                rc = resp_req_fail(r, "expected CRLF after bulk string");
            } else {
                r->phase = RQ_DATA_LF;
            }
            break;
        case RQ_DATA_LF:
            if (c != '\n') {
                rc = resp_req_fail(r, "expected CRLF after bulk string");
                break;
            }
            r->nargs++;
            if (--r->left == 0) {
                r->size = here + 1;
                rc = RESP_DONE;
            } else {
                r->phase = RQ_DOLLAR;
            }
            break;
        case RQ_INLINE:
            rc = resp_req_inline(r, c, lim, here);
            break;
        default:
            rc = resp_req_fail(r, "parser state corrupt");
            break;
        }
        if (rc != RESP_DONE) {
            r->size++;
        }
        i++;
    }
    *used = i;
    return rc;
}

/* ------------------------------------------------------------------ */
/* responses                                                           */

enum {
    RS_TYPE,
    RS_LINE,
    RS_LINE_LF,
    RS_LEN,
    RS_LEN_LF,
    RS_BULK,
    RS_BULK_CR,
    RS_BULK_LF,
};

void resp_rsp_init(struct resp_rsp *r)
{
    memset(r, 0, offsetof(struct resp_rsp, left));
}

static int resp_rsp_fail(struct resp_rsp *r, const char *why)
{
    r->error = why;
    return RESP_ERROR;
}

static bool resp_is_line_type(uint8_t t)
{
    return t == '+' || t == '-' || t == ':' || t == '_' || t == ',' || t == '#' || t == '(';
}

static bool resp_is_blob_type(uint8_t t)
{
    return t == '$' || t == '!' || t == '=';
}

static bool resp_is_aggregate_type(uint8_t t)
{
    return t == '*' || t == '%' || t == '~' || t == '>' || t == '|';
}

/* One element (scalar or finished aggregate) ended: count it against the
 * enclosing aggregates. Returns RESP_DONE when the whole reply ended. */
static int resp_rsp_element(struct resp_rsp *r, bool was_attribute)
{
    for (;;) {
        if (r->depth == 0) {
            if (was_attribute) { /* the reply itself follows the attribute */
                r->phase = RS_TYPE;
                return RESP_AGAIN;
            }
            return RESP_DONE;
        }
        if (!was_attribute) {
            r->left[r->depth - 1]--;
        }
        if (r->left[r->depth - 1] > 0) {
            r->phase = RS_TYPE;
            return RESP_AGAIN;
        }
        r->depth--; /* the aggregate is complete: it is an element itself */
        was_attribute = r->attr[r->depth];
    }
}

static int resp_rsp_type(struct resp_rsp *r, uint8_t c)
{
    if (!resp_is_line_type(c) && !resp_is_blob_type(c) && !resp_is_aggregate_type(c)) {
        return resp_rsp_fail(r, "unknown reply type");
    }
    r->cur = c;
    r->num = 0;
    r->digits = false;
    r->neg = false;
    r->line = 0;
    if (r->depth == 0 && c != '|' && !r->top_seen) {
        r->top_seen = true;
        r->type = c;
        r->is_error = c == '-' || c == '!';
        r->is_null = c == '_';
    }
    r->phase = resp_is_line_type(c) ? RS_LINE : RS_LEN;
    return RESP_AGAIN;
}

static int resp_rsp_line(struct resp_rsp *r, uint8_t c, const struct resp_limits *lim)
{
    if (c == '\r') {
        if (r->cur == ':' && !r->digits) {
            return resp_rsp_fail(r, "empty integer reply");
        }
        if (r->cur == '_' && r->line != 0) {
            return resp_rsp_fail(r, "null reply with content");
        }
        if (r->cur == ':' && r->depth == 0 && r->type == ':') {
            r->integer = r->neg ? -(int64_t)r->num : (int64_t)r->num;
        }
        r->phase = RS_LINE_LF;
        return RESP_AGAIN;
    }
    if (c == '\n') {
        return resp_rsp_fail(r, "bare LF in a reply line");
    }
    if (++r->line > lim->max_inline) {
        return resp_rsp_fail(r, "reply line too long");
    }
    if (r->cur == ':') {
        if (c == '-' && r->line == 1) {
            r->neg = true;
            return RESP_AGAIN;
        }
        if (resp_digit(&r->num, &r->digits, c, (uint64_t)INT64_MAX) != 0) {
            return resp_rsp_fail(r, "invalid integer reply");
        }
    }
    return RESP_AGAIN;
}

static int resp_rsp_len_done(struct resp_rsp *r, const struct resp_limits *lim)
{
    if (r->neg) { /* only -1, only for $ and * (RESP2 nulls) */
        if (r->num != 1 || (r->cur != '$' && r->cur != '*')) {
            return resp_rsp_fail(r, "invalid negative length");
        }
        if (r->depth == 0 && r->type == r->cur) {
            r->is_null = true;
            r->count = -1;
        }
        return resp_rsp_element(r, false);
    }
    if (resp_is_blob_type(r->cur)) {
        if (r->num > lim->max_bulk) {
            return resp_rsp_fail(r, "bulk reply too long");
        }
        r->bulk_left = r->num;
        r->phase = r->num == 0 ? RS_BULK_CR : RS_BULK;
        return RESP_AGAIN;
    }
    uint64_t elems = r->num;
    if (r->cur == '%' || r->cur == '|') {
        if (elems > UINT64_MAX / 2) {
            return resp_rsp_fail(r, "aggregate too large");
        }
        elems *= 2;
    }
    if (r->depth == 0 && r->cur != '|') {
        r->count = (int64_t)r->num;
    }
    if (elems == 0) {
        return resp_rsp_element(r, r->cur == '|');
    }
    if (r->depth >= RESP_MAX_DEPTH) {
        return resp_rsp_fail(r, "reply nested too deeply");
    }
    r->left[r->depth] = elems;
    r->attr[r->depth] = r->cur == '|';
    r->depth++;
    r->phase = RS_TYPE;
    return RESP_AGAIN;
}

/* The most common replies, a whole "+..." or "-..." line at the start of a
 * reply ("+OK\r\n"), framed in one scan. Returns RESP_DONE with *used set,
 * or RESP_AGAIN to leave it to the byte loop (a line not all here, too long
 * or malformed: that loop makes the same checks and gives the error). */
static int resp_rsp_simple(struct resp_rsp *r, const uint8_t *data, size_t n, size_t *used,
                           const struct resp_limits *lim)
{
    if (r->phase != RS_TYPE || r->depth != 0 || r->top_seen || n < 3 ||
        (data[0] != '+' && data[0] != '-')) {
        return RESP_AGAIN;
    }
    size_t end = (size_t)lim->max_inline + 2; /* the CR may follow max_inline bytes */
    if (end > n) {
        end = n;
    }
    size_t j = 1;
    while (j < end && data[j] != '\r' && data[j] != '\n') {
        j++;
    }
    if (j == end || j + 1 == n || data[j] != '\r' || data[j + 1] != '\n') {
        return RESP_AGAIN;
    }
    resp_rsp_type(r, data[0]);
    r->line = j - 1;
    r->phase = RS_LINE_LF;
    r->size += j + 2;
    *used = j + 2;
    return RESP_DONE;
}

int resp_rsp_feed(struct resp_rsp *r, const uint8_t *data, size_t n, size_t *used,
                  const struct resp_limits *lim)
{
    if (resp_rsp_simple(r, data, n, used, lim) == RESP_DONE) {
        return RESP_DONE;
    }
    size_t i = 0;
    int rc = RESP_AGAIN;
    while (i < n && rc == RESP_AGAIN) {
        uint8_t c = data[i];
        switch (r->phase) {
        case RS_TYPE:
            rc = resp_rsp_type(r, c);
            break;
        case RS_LINE:
            rc = resp_rsp_line(r, c, lim);
            break;
        case RS_LINE_LF:
            rc = c == '\n' ? resp_rsp_element(r, false)
                           : resp_rsp_fail(r, "expected LF after CR");
            break;
        case RS_LEN:
            if (c == '\r' && r->digits) {
                r->phase = RS_LEN_LF;
            } else if (c == '-' && !r->digits && !r->neg) {
                r->neg = true;
            } else if (resp_digit(&r->num, &r->digits, c, UINT64_MAX / 10) != 0) {
                rc = resp_rsp_fail(r, "invalid length");
            }
            break;
        case RS_LEN_LF:
            rc = c == '\n' ? resp_rsp_len_done(r, lim)
                           : resp_rsp_fail(r, "expected LF after length");
            break;
        case RS_BULK: {
            size_t k = n - i;
            if (k > r->bulk_left) {
                k = (size_t)r->bulk_left;
            }
            r->bulk_left -= k;
            r->size += k;
            i += k;
            if (r->bulk_left == 0) {
                r->phase = RS_BULK_CR;
            }
            continue;
        }
        case RS_BULK_CR:
            if (c == '\r') {
                r->phase = RS_BULK_LF;
            } else {
                rc = resp_rsp_fail(r, "expected CRLF after bulk reply");
            }
            break;
        case RS_BULK_LF:
            rc = c == '\n' ? resp_rsp_element(r, false)
                           : resp_rsp_fail(r, "expected CRLF after bulk reply");
            break;
        default:
            rc = resp_rsp_fail(r, "parser state corrupt");
            break;
        }
        r->size++;
        i++;
    }
    *used = i;
    return rc;
}

size_t resp_header(char *out, char type, uint64_t n)
{
    char digits[20];
    size_t nd = 0;
    do {
        digits[nd++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    size_t len = 0;
    out[len++] = type;
    while (nd > 0) {
        out[len++] = digits[--nd];
    }
    out[len++] = '\r';
    out[len++] = '\n';
    return len;
}

size_t resp_command_prefix(char *out, uint64_t nargs, const char *name, size_t len)
{
    size_t n = resp_header(out, '*', nargs);
    n += resp_header(out + n, '$', len);
    memcpy(out + n, name, len);
    n += len;
    out[n++] = '\r';
    out[n++] = '\n';
    return n;
}
