/* mc_proto: incremental parsers for the memcached text protocol, requests
 * and responses.
 *
 * Both are state machines fed the bytes of a stream in any pieces, with
 * the feed contract of resp.h: mc_*_feed(x, data, n, &used, ...) consumes
 * up to n bytes and sets *used; it returns MC_DONE when a whole message
 * ended (*used counts only its bytes), MC_AGAIN when all n bytes were
 * consumed and more are needed, MC_ERROR on malformed input or a limit
 * (x->error says which; the connection must be closed). No byte is looked
 * at twice and nothing is copied: tokens of a request are recorded as
 * offsets from its first byte, and data blocks are skipped by arithmetic.
 *
 * Requests: get, gets, gat, gats (several keys), set, add, replace,
 * append, prepend, cas (with a data block), delete, incr, decr, touch,
 * version, quit; the meta commands mg, ms (with a data block), md, ma, me
 * (one key, then flags: the `q` and `b` flags are noted) and mn. Any
 * other command line parses as MC_UNKNOWN: legate
 * answers it with memcached's own "ERROR" (it cannot know its framing).
 * Lines end in "\r\n" or "\n" as memcached accepts, and tokens are split
 * at spaces only: other control bytes (a tab, 0x10, ...) belong to the key,
 * as memcached and nutcracker take them. A CR elsewhere, a NUL, a key over
 * 250 bytes, a wrong token count or a data block not ending in "\r\n" is
 * malformed. */
#ifndef LEGATE_MC_PROTO_H
#define LEGATE_MC_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { MC_DONE = 0, MC_ERROR = -1, MC_AGAIN = -2 };

enum {
    MC_KEY_MAX = 250,       /* memcached's KEY_MAX_LENGTH */
    MC_NAME_MAX = 12,       /* longest command name kept (longer: unknown) */
    MC_RSP_LINE_MAX = 8192, /* a server's reply line (VALUE, errors) */
};

struct mc_limits {
    uint32_t max_tokens;    /* tokens of one command line (keys of a get) */
    uint64_t max_data;      /* one data block */
    uint64_t max_request;   /* command line and data block */
    uint64_t max_line;      /* command line */
};

/* Defaults: a million tokens, 512 MiB data blocks, 1 GiB requests, 1 MiB
 * command lines (a get of tens of thousands of keys). */
extern const struct mc_limits mc_default_limits;

enum mc_kind {
    MC_UNKNOWN,  /* not a command legate forwards: answer "ERROR" */
    MC_GET,      /* get, gets: keys from token 1 */
    MC_GAT,      /* gat, gats: exptime, then keys from token 2 */
    MC_STORE,    /* set add replace append prepend cas: one key, a data block */
    MC_KEYED,    /* delete incr decr touch: one key */
    MC_VERSION,
    MC_QUIT,
    MC_META,     /* mg ms md ma me: one key at token 1, then flags */
    MC_META_NOOP, /* mn: answered in order, by legate */
};

struct mc_tok {
    uint64_t off;           /* from the request's first byte */
    uint32_t len;
    bool numeric;           /* all digits, no overflow: `num` holds it */
    bool noreply;           /* the token is "noreply" */
    uint8_t first;          /* its first byte */
    uint64_t num;
};

struct mc_req {
    /* result, valid after MC_DONE */
    enum mc_kind kind;
    char name[MC_NAME_MAX + 1]; /* the command token, if short */
    uint32_t ntok;          /* tokens of the line, the command included */
    struct mc_tok *tok;
    uint32_t first_key;     /* token index of the first key */
    uint32_t nkeys;
    bool noreply;           /* the last token is "noreply" (not for gets) */
    bool quiet;             /* meta: a `q` flag (the server hides nominal replies) */
    bool b64;               /* meta: a `b` flag (the key is base64) */
    uint64_t line;          /* bytes of the command line, its end included */
    uint64_t size;          /* bytes of the whole request */
    const char *error;      /* after MC_ERROR: a short reason */

    /* parse state */
    int phase;
    uint32_t cap;
    bool in_tok;
    uint64_t data_left;
};

/* The `error` of a request the parser had no memory for: legate's
 * shortage, not the client's mistake. */
extern const char mc_no_memory[];

void mc_req_init(struct mc_req *r);
/* Get ready for the next request (keeps the token array). */
void mc_req_reset(struct mc_req *r);
void mc_req_free(struct mc_req *r);
int mc_req_feed(struct mc_req *r, const uint8_t *data, size_t n, size_t *used,
                const struct mc_limits *lim);

/* One reply: a single line (STORED, NOT_FOUND, a number, VERSION ...,
 * ERROR, CLIENT_ERROR ..., SERVER_ERROR ..., and the meta replies HD, NS,
 * EX, NF, EN, MN, ME ...), VALUE blocks then END, or a meta "VA <size>
 * <flags>*" line and its data block.
 *
 * With `until_mn` set before its first byte, the reply is whatever comes
 * up to and including an MN line: legate sends "mn" after a quiet meta
 * request, so the server's own rules decide whether a reply shows, and
 * the "MN\r\n" (`tail` bytes) is legate's to drop. */
struct mc_rsp {
    bool until_mn;          /* set by the caller at the start of a reply */
    /* result, valid after MC_DONE */
    bool is_error;          /* ERROR, CLIENT_ERROR or SERVER_ERROR */
    uint32_t values;        /* VALUE blocks */
    uint64_t size;
    uint64_t tail;          /* until_mn: bytes of the closing MN line */
    const char *error;

    /* parse state */
    int phase;
    char first[16];         /* the line's first token, if short */
    uint8_t nfirst;
    uint32_t tokidx;        /* tokens begun on this line */
    uint32_t bytes_tok;     /* the token with the data size: 4 (VALUE), 2 (VA) */
    bool in_tok;
    bool bytes_ok;          /* VALUE, VA: the size token is all digits */
    bool replied;           /* until_mn: a reply came before the MN */
    bool va;                /* in a VA reply's data block */
    uint64_t bytes;
    uint64_t line;
    uint64_t data_left;
};

void mc_rsp_init(struct mc_rsp *r);
int mc_rsp_feed(struct mc_rsp *r, const uint8_t *data, size_t n, size_t *used);

/* Decode base64 (the standard alphabet, padded to a multiple of 4) from
 * in[0, n) into out, which holds n / 4 * 3 bytes; sets *outlen and returns
 * 0, or -1 when `in` is not base64. For the keys of meta commands with the
 * `b` flag, which are placed by their decoded bytes. */
int mc_b64_decode(const uint8_t *in, size_t n, uint8_t *out, size_t *outlen);

/* The key and byte count of a "VALUE <key> <flags> <bytes> [<cas>]" line
 * in `line` (n bytes, without its end): sets *off, *len and *bytes and
 * returns 0, or -1 when the line is not one. */
int mc_value_line(const char *line, size_t n, size_t *off, size_t *len, uint64_t *bytes);

#endif
