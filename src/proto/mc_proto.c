/* mc_proto: incremental memcached text protocol parsers (see mc_proto.h). */
#include "mc_proto.h"

#include <stdlib.h>
#include <string.h>

const struct mc_limits mc_default_limits = {
    .max_tokens = 1048576,
    .max_data = 512ull << 20,
    .max_request = 1ull << 30,
    .max_line = 1ull << 20,
};

/* ------------------------------------------------------------------ */
/* the commands legate forwards                                        */

enum { MC_ALL_KEYS = 0xff };

struct mc_cmd_def {
    const char *name;
    uint8_t kind;           /* enum mc_kind */
    uint8_t min_tok;        /* tokens, the command included */
    uint8_t max_tok;        /* 0: any number (keys of a get, meta flags) */
    uint8_t first_key;
    uint8_t nkeys;          /* 0, 1, or MC_ALL_KEYS: every token from first_key */
    int8_t bytes_tok;       /* the data block's length, or -1: none */
    uint8_t first_flag;     /* meta: the first flag token, else 0 */
};

static const struct mc_cmd_def mc_cmds[] = {
    { "get", MC_GET, 2, 0, 1, MC_ALL_KEYS, -1, 0 },
    { "gets", MC_GET, 2, 0, 1, MC_ALL_KEYS, -1, 0 },
    { "gat", MC_GAT, 3, 0, 2, MC_ALL_KEYS, -1, 0 },
    { "gats", MC_GAT, 3, 0, 2, MC_ALL_KEYS, -1, 0 },
    { "set", MC_STORE, 5, 6, 1, 1, 4, 0 },
    { "add", MC_STORE, 5, 6, 1, 1, 4, 0 },
    { "replace", MC_STORE, 5, 6, 1, 1, 4, 0 },
    { "append", MC_STORE, 5, 6, 1, 1, 4, 0 },
    { "prepend", MC_STORE, 5, 6, 1, 1, 4, 0 },
    { "cas", MC_STORE, 6, 7, 1, 1, 4, 0 },
    { "delete", MC_KEYED, 2, 4, 1, 1, -1, 0 },
    { "incr", MC_KEYED, 3, 4, 1, 1, -1, 0 },
    { "decr", MC_KEYED, 3, 4, 1, 1, -1, 0 },
    { "touch", MC_KEYED, 3, 4, 1, 1, -1, 0 },
    { "version", MC_VERSION, 1, 1, 0, 0, -1, 0 },
    { "quit", MC_QUIT, 1, 1, 0, 0, -1, 0 },
    { "mg", MC_META, 2, 0, 1, 1, -1, 2 },
    { "ms", MC_META, 3, 0, 1, 1, 2, 3 },
    { "md", MC_META, 2, 0, 1, 1, -1, 2 },
    { "ma", MC_META, 2, 0, 1, 1, -1, 2 },
    { "me", MC_META, 2, 0, 1, 1, -1, 2 },
    { "mn", MC_META_NOOP, 1, 0, 0, 0, -1, 0 },
};

static const struct mc_cmd_def *mc_cmd_find(const char *name)
{
    for (size_t i = 0; i < sizeof(mc_cmds) / sizeof(mc_cmds[0]); i++) {
        if (strcmp(mc_cmds[i].name, name) == 0) {
            return &mc_cmds[i];
        }
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* requests                                                            */

enum { RQ_LINE, RQ_CR, RQ_DATA, RQ_DATA_CR, RQ_DATA_LF };

void mc_req_init(struct mc_req *r)
{
    memset(r, 0, sizeof(*r));
}

void mc_req_reset(struct mc_req *r)
{
    struct mc_tok *tok = r->tok;
    uint32_t cap = r->cap;
    memset(r, 0, sizeof(*r));
    r->tok = tok;
    r->cap = cap;
}

void mc_req_free(struct mc_req *r)
{
    free(r->tok);
    mc_req_init(r);
}

const char mc_no_memory[] = "out of memory";

static int mc_req_fail(struct mc_req *r, const char *why)
{
    r->error = why;
    return MC_ERROR;
}

/* A token begins at request offset `at`. Returns 0, or MC_ERROR. */
static int mc_tok_begin(struct mc_req *r, uint64_t at, const struct mc_limits *lim)
{
    if (r->ntok >= lim->max_tokens) {
        return mc_req_fail(r, "too many keys in the command line");
    }
    if (r->ntok == r->cap) {
        uint32_t cap = r->cap ? r->cap * 2 : 8;
        struct mc_tok *t = realloc(r->tok, cap * sizeof(*t));
        if (t == NULL) {
            return mc_req_fail(r, mc_no_memory);
        }
        r->tok = t;
        r->cap = cap;
    }
    r->tok[r->ntok++] = (struct mc_tok){ .off = at, .numeric = true, .noreply = true };
    r->in_tok = true;
    return 0;
}

static void mc_tok_byte(struct mc_req *r, uint8_t c)
{
    static const char noreply[] = "noreply";
    struct mc_tok *t = &r->tok[r->ntok - 1];
    if (r->ntok == 1 && t->len < MC_NAME_MAX) {
        r->name[t->len] = (char)c;
    }
    t->noreply = t->noreply && t->len < 7 && c == (uint8_t)noreply[t->len];
    if (t->len == 0) {
        t->first = c;
    }
    t->len++;
    if (c >= '0' && c <= '9' && t->numeric && t->num <= (UINT64_MAX - 9) / 10) {
        t->num = t->num * 10 + (uint64_t)(c - '0');
    } else {
        t->numeric = false;
    }
}

static void mc_tok_end(struct mc_req *r)
{
    if (r->in_tok) {
        struct mc_tok *t = &r->tok[r->ntok - 1];
        t->noreply = t->noreply && t->len == 7;
        if (r->ntok == 1 && t->len > MC_NAME_MAX) {
            r->name[0] = '\0'; /* too long to be a command: unknown */
        }
        r->in_tok = false;
    }
}

/* The command line ended: decide what it is and whether data follows.
 * Returns MC_DONE, MC_AGAIN (a data block follows) or MC_ERROR. */
static int mc_req_line_done(struct mc_req *r, const struct mc_limits *lim)
{
    const struct mc_cmd_def *d = r->ntok > 0 ? mc_cmd_find(r->name) : NULL;
    if (d == NULL) {
        r->kind = MC_UNKNOWN;
        return MC_DONE;
    }
    if (r->ntok < d->min_tok || (d->max_tok != 0 && r->ntok > d->max_tok)) {
        return mc_req_fail(r, "bad command line format");
    }
    r->kind = (enum mc_kind)d->kind;
    r->first_key = d->first_key;
    r->nkeys = d->nkeys == MC_ALL_KEYS ? r->ntok - d->first_key : d->nkeys;
    for (uint32_t f = d->first_flag; f != 0 && f < r->ntok; f++) {
        r->quiet = r->quiet || (r->tok[f].len == 1 && r->tok[f].first == 'q');
        r->b64 = r->b64 || (r->tok[f].len == 1 && r->tok[f].first == 'b');
    }
    for (uint32_t k = r->first_key; k < r->first_key + r->nkeys; k++) {
        if (r->tok[k].len > MC_KEY_MAX) {
            return mc_req_fail(r, "key longer than 250 bytes");
        }
    }
    r->noreply = d->max_tok != 0 && r->ntok > d->min_tok && r->tok[r->ntok - 1].noreply;
    if (d->bytes_tok < 0) {
        return MC_DONE;
    }
    const struct mc_tok *b = &r->tok[d->bytes_tok];
    if (!b->numeric) {
        return mc_req_fail(r, "bad data chunk");
    }
    if (b->num > lim->max_data) {
        return mc_req_fail(r, "data block too large");
    }
    if (r->line + b->num + 2 > lim->max_request) {
        return mc_req_fail(r, "request too large");
    }
    r->data_left = b->num;
    r->phase = RQ_DATA;
    return MC_AGAIN;
}

/* Skip up to `avail` bytes of a data block that has *left bytes to go
 * (they are never looked at), counting them in *size; returns how many. */
static size_t mc_skip_data(uint64_t *left, uint64_t *size, size_t avail)
{
    uint64_t take = avail < *left ? avail : *left;
    *left -= take;
    *size += take;
    return (size_t)take;
}

int mc_req_feed(struct mc_req *r, const uint8_t *data, size_t n, size_t *used,
                const struct mc_limits *lim)
{
    size_t i = 0;
    int rc = MC_AGAIN;
    while (i < n && rc == MC_AGAIN) {
        uint8_t c = data[i];
        switch (r->phase) {
        case RQ_LINE:
            if (r->size + 1 > lim->max_line) {
                rc = mc_req_fail(r, "command line too long");
            } else if (c == '\r' || c == '\n') {
                mc_tok_end(r);
                if (c == '\r') {
                    r->phase = RQ_CR;
                    break;
                }
                r->line = r->size + 1;
                rc = mc_req_line_done(r, lim);
            } else if (c == ' ') {
                mc_tok_end(r);
            } else if (c == '\0') {
                /* Other control bytes are key bytes, as memcached and
                 * nutcracker take them (libmemcached's memaslap sends
                 * them); a NUL is refused, whatever C code sees it next. */
                rc = mc_req_fail(r, "NUL byte in the command line");
            } else {
                if (!r->in_tok && mc_tok_begin(r, r->size, lim) == MC_ERROR) {
                    rc = MC_ERROR;
                } else {
                    mc_tok_byte(r, c);
                }
            }
            break;
        case RQ_CR:
            if (c != '\n') {
                rc = mc_req_fail(r, "CR without LF in the command line");
                break;
            }
            if (r->size + 1 > lim->max_line) {
                rc = mc_req_fail(r, "command line too long");
                break;
            }
            r->line = r->size + 1;
            rc = mc_req_line_done(r, lim);
            break;
        case RQ_DATA:
            i += mc_skip_data(&r->data_left, &r->size, n - i);
            if (r->data_left == 0) {
                r->phase = RQ_DATA_CR;
            }
            continue; /* size and i moved already */
        case RQ_DATA_CR:
            if (c != '\r') {
                rc = mc_req_fail(r, "bad data chunk");
                break;
            }
            r->phase = RQ_DATA_LF;
            break;
        default: /* RQ_DATA_LF */
            rc = c == '\n' ? MC_DONE : mc_req_fail(r, "bad data chunk");
            break;
        }
        if (rc != MC_ERROR) {
            r->size++;
            i++;
        }
    }
    *used = i;
    return rc;
}

/* ------------------------------------------------------------------ */
/* responses                                                           */

enum { RS_LINE, RS_CR, RS_DATA, RS_DATA_CR, RS_DATA_LF };

void mc_rsp_init(struct mc_rsp *r)
{
    memset(r, 0, sizeof(*r));
}

static int mc_rsp_fail(struct mc_rsp *r, const char *why)
{
    r->error = why;
    return MC_ERROR;
}

static bool mc_first_is(const struct mc_rsp *r, const char *s)
{
    return r->nfirst < sizeof(r->first) && strlen(s) == r->nfirst &&
           memcmp(r->first, s, r->nfirst) == 0;
}

/* The one-line replies memcached sends (the classic ones, then meta's). */
static const char *const mc_single[] = {
    "STORED", "NOT_STORED", "EXISTS", "NOT_FOUND", "DELETED", "TOUCHED", "OK", "VERSION",
    "HD", "NS", "EX", "NF", "EN", "MN", "ME",
};
static const char *const mc_errors[] = { "ERROR", "CLIENT_ERROR", "SERVER_ERROR" };

static bool mc_first_numeric(const struct mc_rsp *r)
{
    if (r->nfirst == 0 || r->nfirst >= sizeof(r->first)) {
        return false;
    }
    for (uint8_t i = 0; i < r->nfirst; i++) {
        if (r->first[i] < '0' || r->first[i] > '9') {
            return false;
        }
    }
    return true;
}

/* A reply ended (`mn`: it was an MN line). Under until_mn it is whole only
 * with its MN: a reply before the MN is kept, and only one. */
static int mc_rsp_reply_done(struct mc_rsp *r, bool mn)
{
    if (!r->until_mn) {
        return MC_DONE;
    }
    if (mn) {
        r->tail = 4; /* "MN\r\n" */
        return MC_DONE;
    }
    if (r->replied) {
        return mc_rsp_fail(r, "two replies to one quiet request");
    }
    r->replied = true;
    r->values = 0;
    return MC_AGAIN;
}

/* A reply line ended. Returns MC_DONE, MC_AGAIN (more lines or a data
 * block follow) or MC_ERROR. */
static int mc_rsp_line_done(struct mc_rsp *r)
{
    int rc = MC_ERROR;
    if (mc_first_is(r, "VALUE")) {
        if (r->tokidx < 4 || r->tokidx > 5 || !r->bytes_ok) {
            return mc_rsp_fail(r, "malformed VALUE line");
        }
        r->values++;
        r->data_left = r->bytes;
        r->phase = RS_DATA;
        rc = MC_AGAIN;
    } else if (mc_first_is(r, "VA") && r->values == 0) {
        if (r->tokidx < 2 || !r->bytes_ok) {
            return mc_rsp_fail(r, "malformed VA line");
        }
        r->data_left = r->bytes;
        r->phase = RS_DATA;
        r->va = true; /* the reply ends with its data block */
        rc = MC_AGAIN;
    } else if (mc_first_is(r, "END")) {
        rc = MC_DONE;
    } else if (r->values > 0) {
        return mc_rsp_fail(r, "neither VALUE nor END after a value");
    } else {
        for (size_t i = 0; i < sizeof(mc_errors) / sizeof(mc_errors[0]); i++) {
            if (mc_first_is(r, mc_errors[i])) {
                r->is_error = true;
                rc = MC_DONE;
            }
        }
        for (size_t i = 0; i < sizeof(mc_single) / sizeof(mc_single[0]); i++) {
            rc = mc_first_is(r, mc_single[i]) ? MC_DONE : rc;
        }
        rc = mc_first_numeric(r) ? MC_DONE : rc;
        if (rc == MC_ERROR) {
            return mc_rsp_fail(r, "unknown reply");
        }
    }
    bool mn = r->until_mn && mc_first_is(r, "MN"); /* only looked at then */
    r->nfirst = 0;
    r->tokidx = 0;
    r->in_tok = false;
    r->line = 0;
    return rc == MC_DONE ? mc_rsp_reply_done(r, mn) : rc;
}

static void mc_rsp_byte(struct mc_rsp *r, uint8_t c)
{
    if (c == ' ') {
        r->in_tok = false;
        return;
    }
    if (!r->in_tok) {
        r->in_tok = true;
        r->tokidx++;
        if (r->tokidx == 2) {
            r->bytes_tok = mc_first_is(r, "VA") ? 2 : 4;
        }
        if (r->tokidx == r->bytes_tok) {
            r->bytes = 0;
            r->bytes_ok = true;
        }
    }
    if (r->tokidx == 1 && r->nfirst < sizeof(r->first)) {
        r->first[r->nfirst++] = (char)c;
    } else if (r->tokidx == 1) {
        r->nfirst = sizeof(r->first); /* too long to be known */
    } else if (r->tokidx == r->bytes_tok) {
        if (c >= '0' && c <= '9' && r->bytes <= (UINT64_MAX - 9) / 10 - 2) {
            r->bytes = r->bytes * 10 + (uint64_t)(c - '0');
        } else {
            r->bytes_ok = false;
        }
    }
}

int mc_rsp_feed(struct mc_rsp *r, const uint8_t *data, size_t n, size_t *used)
{
    size_t i = 0;
    int rc = MC_AGAIN;
    while (i < n && rc == MC_AGAIN) {
        uint8_t c = data[i];
        switch (r->phase) {
        case RS_LINE:
            if (c == '\r') {
                r->phase = RS_CR;
            } else if (c == '\n' || c == '\0') {
                /* a VALUE line repeats the key: its control bytes pass */
                rc = mc_rsp_fail(r, "malformed reply line");
            } else if (++r->line > MC_RSP_LINE_MAX) {
                rc = mc_rsp_fail(r, "reply line too long");
            } else {
                mc_rsp_byte(r, c);
            }
            break;
        case RS_CR:
            if (c != '\n') {
                rc = mc_rsp_fail(r, "CR without LF in a reply line");
                break;
            }
            r->phase = RS_LINE;
            rc = mc_rsp_line_done(r);
            break;
        case RS_DATA:
            i += mc_skip_data(&r->data_left, &r->size, n - i);
            if (r->data_left == 0) {
                r->phase = RS_DATA_CR;
            }
            continue; /* size and i moved already */
        case RS_DATA_CR:
            if (c != '\r') {
                rc = mc_rsp_fail(r, "value not followed by CRLF");
                break;
            }
            r->phase = RS_DATA_LF;
            break;
        default: /* RS_DATA_LF */
            if (c != '\n') {
                rc = mc_rsp_fail(r, "value not followed by CRLF");
                break;
            }
            r->phase = RS_LINE;
            if (r->va) {
                r->va = false;
                rc = mc_rsp_reply_done(r, false);
            }
            break;
        }
        if (rc != MC_ERROR) {
            r->size++;
            i++;
        }
    }
    *used = i;
    return rc;
}

static int mc_b64_value(uint8_t c)
{
    return c >= 'A' && c <= 'Z'   ? c - 'A'
           : c >= 'a' && c <= 'z' ? c - 'a' + 26
           : c >= '0' && c <= '9' ? c - '0' + 52
           : c == '+'             ? 62
           : c == '/'             ? 63
                                  : -1;
}

int mc_b64_decode(const uint8_t *in, size_t n, uint8_t *out, size_t *outlen)
{
    if (n % 4 != 0) {
        return -1;
    }
    size_t o = 0;
    for (size_t i = 0; i < n; i += 4) {
        bool last = i + 4 == n;
        int pad = last && in[i + 3] == '=' ? (in[i + 2] == '=' ? 2 : 1) : 0;
        uint32_t v = 0;
        for (int j = 0; j < 4; j++) {
            int d = j >= 4 - pad ? 0 : mc_b64_value(in[i + (size_t)j]);
            if (d < 0) {
                return -1;
            }
            v = v << 6 | (uint32_t)d;
        }
        out[o++] = (uint8_t)(v >> 16);
        if (pad < 2) {
            out[o++] = (uint8_t)(v >> 8);
        }
        if (pad < 1) {
            out[o++] = (uint8_t)v;
        }
    }
    *outlen = o;
    return 0;
}

int mc_value_line(const char *line, size_t n, size_t *off, size_t *len, uint64_t *bytes)
{
    /* tokens: VALUE <key> <flags> <bytes> [<cas>] */
    size_t start[5], end[5], ntok = 0;
    for (size_t i = 0; i < n;) {
        while (i < n && line[i] == ' ') {
            i++;
        }
        if (i == n) {
            break;
        }
        if (ntok == 5) {
            return -1;
        }
        start[ntok] = i;
        while (i < n && line[i] != ' ') {
            i++;
        }
        end[ntok++] = i;
    }
    if (ntok < 4 || end[0] - start[0] != 5 || memcmp(line, "VALUE", 5) != 0) {
        return -1;
    }
    uint64_t v = 0;
    for (size_t i = start[3]; i < end[3]; i++) {
        if (line[i] < '0' || line[i] > '9' || v > (UINT64_MAX - 9) / 10) {
            return -1;
        }
        v = v * 10 + (uint64_t)(line[i] - '0');
    }
    *off = start[1];
    *len = end[1] - start[1];
    *bytes = v;
    return 0;
}
