/* resp: incremental RESP parsers (Redis protocol), requests and responses.
 *
 * Both are state machines fed the bytes of a stream in any pieces: each
 * call continues where the last one stopped, so no byte is looked at twice
 * and a split anywhere (even byte by byte) gives the same result. Bulk
 * payloads are skipped by arithmetic, not scanned. Nothing is copied:
 * arguments are recorded as offsets from the start of the request, so the
 * caller can find them in whatever buffers hold the bytes.
 *
 * Feed contract: resp_*_feed(x, data, n, &used, limits) consumes up to n
 * bytes and sets *used. Returns RESP_DONE when a whole message ended
 * (*used counts only its bytes; feed the rest to the next message after a
 * reset), RESP_AGAIN when all n bytes were consumed and more are needed,
 * RESP_ERROR on malformed input or a limit (x->error says which; the
 * connection must be closed). */
#ifndef LEGATE_RESP_H
#define LEGATE_RESP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { RESP_DONE = 0, RESP_ERROR = -1, RESP_AGAIN = -2 };

enum {
    RESP_NAME_MAX = 32,   /* longest command name kept (longer: unknown) */
    RESP_MAX_DEPTH = 32,  /* response nesting */
    RESP_HEADER_MAX = 24, /* "*" + 20 digits + CRLF, with room to spare */
};

struct resp_limits {
    uint32_t max_args;     /* arguments in one request */
    uint64_t max_bulk;     /* one bulk string */
    uint64_t max_request;  /* whole request, bytes */
    uint32_t max_inline;   /* inline command line, and any +/-/: line */
};

/* Defaults: Redis's own proto-max-bulk-len (512 MiB) and inline limit
 * (64 KiB); a million arguments. */
extern const struct resp_limits resp_default_limits;

struct resp_arg {
    uint64_t off;          /* from the request's first byte */
    uint64_t len;
    uint64_t hdr;          /* bytes of its "$<len>\r\n" just before `off`,
                            * as the client wrote it; 0 in an inline command */
};

struct resp_req {
    /* result, valid after RESP_DONE */
    uint32_t nargs;        /* 0: an empty request (*0, blank inline): skip it */
    uint32_t cap;          /* (parse state, here to fill the hole) */
    struct resp_arg *args;
    char name[RESP_NAME_MAX + 1]; /* first argument, upper-cased, if short */
    bool name_too_long;
    bool inline_form;
    bool digits;           /* (parse state) */
    uint64_t size;         /* bytes of the whole request */
    const char *error;     /* after RESP_ERROR: a short reason */

    /* parse state (with cap and digits above; the order packs a client
     * struct per idle connection) */
    int phase;
    uint32_t left;         /* arguments still to come */
    uint64_t num;
    uint64_t bulk_left;
    uint64_t dollar;       /* offset of the current bulk's '$' */
};

/* The `error` of a request the parser had no memory for: legate's
 * shortage, not the client's mistake. */
extern const char resp_no_memory[];

void resp_req_init(struct resp_req *r);
/* Get ready for the next request (keeps the argument array). */
void resp_req_reset(struct resp_req *r);

/* One argument array kept between clients (per worker and pool), so an idle
 * client holds none: resp_req_shed gives a client's array to the spare
 * when nothing of a request is parsed (or frees it, when the spare is
 * taken); resp_req_adopt takes it back before parsing. */
struct resp_args_spare {
    struct resp_arg *args;
    uint32_t cap;
};
void resp_req_shed(struct resp_req *r, struct resp_args_spare *s);
void resp_req_adopt(struct resp_req *r, struct resp_args_spare *s);
void resp_req_free(struct resp_req *r);
int resp_req_feed(struct resp_req *r, const uint8_t *data, size_t n, size_t *used,
                  const struct resp_limits *lim);

/* One response, RESP2 or RESP3: + - : $ * and _ , # ! = ( % ~ > | */
struct resp_rsp {
    /* result, valid after RESP_DONE */
    uint8_t type;          /* first byte of the reply (after attributes) */
    bool is_error;         /* - or ! */
    bool is_null;          /* $-1, *-1 or _ */
    int64_t integer;       /* for ':' */
    int64_t count;         /* elements of a top-level aggregate */
    uint64_t size;
    const char *error;

    /* parse state */
    int phase;
    int depth;
    uint8_t cur;                     /* type being read */
    uint64_t num;
    bool digits;
    bool neg;
    uint64_t line;                   /* bytes of the current line */
    uint64_t bulk_left;
    bool top_seen;
    /* last: written when a level opens, so init need not clear them */
    uint64_t left[RESP_MAX_DEPTH];   /* elements still due per level */
    bool attr[RESP_MAX_DEPTH];       /* level is an attribute map */
};

void resp_rsp_init(struct resp_rsp *r);
int resp_rsp_feed(struct resp_rsp *r, const uint8_t *data, size_t n, size_t *used,
                  const struct resp_limits *lim);

/* Write the header "<type><n>\r\n" (type '*', '$', ':') into `out`, which
 * holds RESP_HEADER_MAX bytes; returns its length. No NUL is written. */
size_t resp_header(char *out, char type, uint64_t n);

/* Write the start of a command of `nargs` arguments, "*<nargs>\r\n" and the
 * name as a bulk string, into `out`, which holds RESP_COMMAND_PREFIX_MAX
 * bytes; `name` is at most RESP_NAME_MAX bytes. Returns the length. */
enum { RESP_COMMAND_PREFIX_MAX = 2 * RESP_HEADER_MAX + RESP_NAME_MAX + 2 };
size_t resp_command_prefix(char *out, uint64_t nargs, const char *name, size_t len);

#endif
