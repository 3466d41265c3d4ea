/* redis: the sharding Redis proxy's clients — reading, parsing, routing
 * and the commands legate answers itself (see redis.h for the picture and
 * redis_int.h for how the files divide the work). */
#include "redis_int.h"
#include "../version.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void redis_client_pump(struct redis_client *cl);

/* ---------------------------------------------------------------- */
/* routing                                                           */

const uint8_t *redis_client_bytes(struct redis_client *cl, uint64_t off, uint64_t len)
{
    uint64_t at = off;
    const struct buf *b = buf_queue_find(&cl->in, &at);
    if (b != NULL && at + len <= buf_unread(b)) {
        return b->pos + at;
    }
    struct redis_pool *rp = cl->rp;
    if (len > rp->scratch_cap) {
        size_t cap = len > REDIS_SCRATCH_MIN ? (size_t)len : REDIS_SCRATCH_MIN;
        uint8_t *s = realloc(rp->scratch, cap);
        if (s == NULL) {
            return NULL;
        }
        rp->scratch = s;
        rp->scratch_cap = cap;
    }
    buf_queue_peek(&cl->in, off, rp->scratch, (size_t)len);
    return rp->scratch;
}

/* The bytes of argument `a` of the request at the head of cl->in. */
static const uint8_t *redis_arg(struct redis_client *cl, const struct resp_arg *a)
{
    return redis_client_bytes(cl, a->off, a->len);
}

int redis_client_key_server(struct redis_client *cl, uint64_t off, uint64_t len)
{
    const uint8_t *k = redis_client_bytes(cl, off, len);
    return k == NULL ? -1 : redis_key_bytes_server(cl->rp, k, (size_t)len);
}

int redis_key_bytes_server(struct redis_pool *rp, const uint8_t *k, size_t len)
{
    struct pool *p = rp->pool;
    const struct ring *ring = &rp->ring;
    int s = ring_pick(ring, k, len, ring_uses_random(ring) ? bal_random(&p->bal) : 0);
    /* Health checks hold a server out; without auto_eject_hosts its keys
     * stay with it and fail fast until it is back. */
    return s >= 0 && p->down[s] ? -1 : s;
}

static int redis_key_server(struct redis_client *cl, const struct resp_arg *a)
{
    return redis_client_key_server(cl, a->off, a->len);
}

/* Copy the whole request at the head of cl->in to server `srv`. */
static int redis_forward(struct redis_client *cl, struct redis_msg *m, int srv)
{
    struct redis_pool *rp = cl->rp;
    struct redis_sconn *sc = redis_pick_conn(cl, (size_t)srv);
    if (buf_queue_append_range(&sc->out, &rp->wk->bufs, &cl->in, 0, cl->req.size) == -1) {
        return -1;
    }
    redis_sconn_push(sc, m, cl->req.size);
    redis_sconn_kick(sc);
    return 0;
}

/* Append arguments args[0..n) to `out` as bulk strings. Arguments that
 * came in multibulk form are copied with their own headers in one range
 * (they are contiguous in the request); inline ones get headers made. */
static int redis_copy_args(struct redis_client *cl, struct buf_queue *out,
                           const struct resp_arg *args, uint32_t n)
{
    struct buf_pool *bufs = &cl->rp->wk->bufs;
    if (args[0].hdr > 0) {
        uint64_t from = args[0].off - args[0].hdr;
        uint64_t to = args[n - 1].off + args[n - 1].len + 2;
        return buf_queue_append_range(out, bufs, &cl->in, from, to - from);
    }
    for (uint32_t j = 0; j < n; j++) {
        char hdr[RESP_HEADER_MAX];
        size_t hn = resp_header(hdr, '$', args[j].len);
        if (buf_queue_append(out, bufs, hdr, hn) == -1 ||
            buf_queue_append_range(out, bufs, &cl->in, args[j].off, args[j].len) == -1 ||
            buf_queue_append(out, bufs, "\r\n", 2) == -1) {
            return -1;
        }
    }
    return 0;
}

/* Pools of up to this many servers count keys per server on the stack. */
enum { REDIS_SPLIT_INLINE = 64 };

static void redis_split_count_free(uint32_t *count, uint32_t *count_small)
{
    if (count != count_small) {
        free(count);
    }
}

/* Split a multi-key command into one fragment per server. `per` is 1 for
 * keys alone, 2 for key/value pairs (MSET). */
static int redis_split(struct redis_client *cl, struct redis_msg *m, const struct redis_cmd *cmd,
                       const int *where, uint32_t nkeys, uint32_t per)
{
    struct redis_pool *rp = cl->rp;
    const struct resp_req *r = &cl->req;
    m->kind = cmd->kind;
    m->nkeys = nkeys;
    uint32_t count_small[REDIS_SPLIT_INLINE] = { 0 };
    uint32_t *count = rp->nservers <= REDIS_SPLIT_INLINE
                          ? count_small : calloc(rp->nservers, sizeof(*count));
    /* One block: the fragment pointers, then the key positions (each
     * fragment takes a slice); freed with m->frags. */
    m->frags = malloc(rp->nservers * sizeof(*m->frags) + nkeys * sizeof(*m->keyidx));
    if (count == NULL || m->frags == NULL) {
        redis_split_count_free(count, count_small);
        return -1;
    }
    m->keyidx = (uint32_t *)(void *)(m->frags + rp->nservers);
    uint32_t slice = 0;
    for (uint32_t k = 0; k < nkeys; k++) {
        count[where[k]]++;
    }
    for (size_t s = 0; s < rp->nservers; s++) {
        if (count[s] == 0) {
            continue;
        }
        struct redis_msg *fr = redis_msg_new(rp, NULL);
        if (fr == NULL) {
            redis_split_count_free(count, count_small);
            return -1;
        }
        fr->keyidx = m->keyidx + slice;
        slice += count[s];
        fr->parent = m;
        struct redis_sconn *sc = redis_pick_conn(cl, s);
        uint64_t before = sc->out.bytes;
        struct buf_mark mark = buf_queue_mark(&sc->out);
        char pre[RESP_COMMAND_PREFIX_MAX];
        size_t n = resp_command_prefix(pre, 1 + (uint64_t)count[s] * per, cmd->name,
                                       strlen(cmd->name));
        int bad = buf_queue_append(&sc->out, &rp->wk->bufs, pre, n) == -1;
        /* Runs of neighbouring keys for this server go over as one range. */
        for (uint32_t k = 0; k < nkeys && !bad;) {
            if ((size_t)where[k] != s) {
                k++;
                continue;
            }
            uint32_t run = k;
            while (run < nkeys && (size_t)where[run] == s) {
                fr->keyidx[fr->nfragkeys++] = run++;
            }
            bad = redis_copy_args(cl, &sc->out, &r->args[1 + k * per], (run - k) * per) == -1;
            k = run;
        }
        if (bad) {
            /* Half a command would run into the next one at the server:
             * none of it goes, and the fragment is not waited for. */
            buf_queue_rewind(&sc->out, &rp->wk->bufs, mark);
            redis_msg_free(rp, fr);
            redis_split_count_free(count, count_small);
            return -1;
        }
        m->frags[m->nallfrags++] = fr;
        m->nfrags++;
        stats_add(&rp->pool->stats->f[SP_FRAGMENTS], 1);
        redis_sconn_push(sc, fr, sc->out.bytes - before);
        redis_sconn_kick(sc);
    }
    redis_split_count_free(count, count_small);
    return 0;
}

/* Whether argument `a` of the current request equals `s`, compared in
 * time independent of where they differ. */
static bool redis_arg_equals(struct redis_client *cl, const struct resp_arg *a, const char *s)
{
    size_t n = strlen(s);
    const uint8_t *v = redis_arg(cl, a);
    if (v == NULL || a->len != n) {
        return false;
    }
    uint8_t diff = 0;
    for (size_t i = 0; i < n; i++) {
        diff |= (uint8_t)(v[i] ^ (uint8_t)s[i]);
    }
    return diff == 0;
}

/* Check AUTH [user] password given in `count` arguments starting at
 * argument `at`; sets the reply (unless ok_silent) and cl->authed. */
static bool redis_check_auth(struct redis_client *cl, struct redis_msg *m, uint32_t at,
                             uint32_t count, bool ok_silent)
{
    struct redis_pool *rp = cl->rp;
    const struct conf_pool *cp = rp->cp;
    const struct resp_req *r = &cl->req;
    if (cp->redis_auth == NULL) {
        redis_reply_text(rp, m, "-ERR AUTH <password> called without any password configured "
                                "for the default user. Are you sure your configuration is "
                                "correct?\r\n");
        return false;
    }
    if (count != 1 && count != 2) {
        redis_reply_text(rp, m, "-ERR syntax error\r\n");
        return false;
    }
    const char *user = cp->redis_user ? cp->redis_user : "default";
    bool ok = redis_arg_equals(cl, &r->args[at + count - 1], cp->redis_auth) &&
              (count == 1 || redis_arg_equals(cl, &r->args[at], user));
    if (!ok) {
        redis_reply_text(rp, m, "-WRONGPASS invalid username-password pair or user is "
                                "disabled.\r\n");
        return false;
    }
    cl->authed = true;
    if (!ok_silent) {
        redis_reply_text(rp, m, "+OK\r\n");
    }
    return true;
}

static void redis_auth(struct redis_client *cl, struct redis_msg *m, uint32_t at, uint32_t count)
{
    (void)redis_check_auth(cl, m, at, count, false);
}

/* HELLO [protover [AUTH user pass] [SETNAME name]]: RESP2 only. */
static void redis_hello(struct redis_client *cl, struct redis_msg *m)
{
    struct redis_pool *rp = cl->rp;
    const struct resp_req *r = &cl->req;
    if (r->nargs >= 2 && !redis_arg_equals(cl, &r->args[1], "2")) {
        redis_reply_text(rp, m, "-NOPROTO legate speaks RESP2 only: use HELLO 2 (RESP3 "
                                "replies are not supported)\r\n");
        return;
    }
    for (uint32_t i = 2; i < r->nargs; i++) {
        char opt[16] = "";
        size_t n = r->args[i].len < sizeof(opt) - 1 ? (size_t)r->args[i].len : sizeof(opt) - 1;
        buf_queue_peek(&cl->in, r->args[i].off, opt, n);
        for (size_t k = 0; k < n; k++) {
            opt[k] = (char)(opt[k] >= 'a' && opt[k] <= 'z' ? opt[k] - 32 : opt[k]);
        }
        if (strcmp(opt, "AUTH") == 0 && i + 2 < r->nargs) {
            if (!redis_check_auth(cl, m, i + 1, 2, true)) {
                return;
            }
            i += 2;
        } else if (strcmp(opt, "SETNAME") == 0 && i + 1 < r->nargs) {
            i += 1;
        } else {
            redis_reply_text(rp, m, "-ERR syntax error in HELLO option\r\n");
            return;
        }
    }
    if (!cl->authed) {
        redis_reply_text(rp, m, "-NOAUTH HELLO must be called with the client already "
                                "authenticated, otherwise the HELLO <proto> AUTH <user> <pass> "
                                "option can be used to authenticate the client and select the "
                                "RESP protocol version at the same time\r\n");
        return;
    }
    redis_reply_text(rp, m, "*14\r\n$6\r\nserver\r\n$6\r\nlegate\r\n$7\r\nversion\r\n"
                            "$5\r\n" LEGATE_VERSION "\r\n$5\r\nproto\r\n:2\r\n$2\r\nid\r\n:0\r\n"
                            "$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n"
                            "$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n");
}

/* Answer a command legate handles itself. */
static void redis_local(struct redis_client *cl, struct redis_msg *m, const struct redis_cmd *cmd)
{
    struct redis_pool *rp = cl->rp;
    const struct resp_req *r = &cl->req;
    switch (cmd->local) {
    case REDIS_LOCAL_PING:
        if (r->nargs == 1) {
            redis_reply_text(rp, m, "+PONG\r\n");
        } else if (r->nargs == 2) {
            const uint8_t *a = redis_arg(cl, &r->args[1]);
            if (a == NULL || redis_append_bulk(rp, &m->reply, a, (size_t)r->args[1].len) == -1) {
                redis_reply_text(rp, m, "-ERR legate: out of memory\r\n");
            }
        } else {
            redis_reply_text(rp, m, "-ERR wrong number of arguments for 'ping' command\r\n");
        }
        break;
    case REDIS_LOCAL_ECHO: {
        const uint8_t *a = redis_arg(cl, &r->args[1]);
        if (a == NULL || redis_append_bulk(rp, &m->reply, a, (size_t)r->args[1].len) == -1) {
            redis_reply_text(rp, m, "-ERR legate: out of memory\r\n");
        }
        break;
    }
    case REDIS_LOCAL_QUIT:
        redis_reply_text(rp, m, "+OK\r\n");
        cl->quit = true;
        break;
    case REDIS_LOCAL_SELECT: {
        char db[8] = "";
        size_t n = r->args[1].len < sizeof(db) - 1 ? (size_t)r->args[1].len : sizeof(db) - 1;
        buf_queue_peek(&cl->in, r->args[1].off, db, n);
        if (r->args[1].len == 1 && db[0] == '0') {
            redis_reply_text(rp, m, "+OK\r\n");
        } else {
            redis_reply_text(rp, m, "-ERR legate: only database 0 is available through a "
                                    "sharding proxy\r\n");
        }
        break;
    }
    case REDIS_LOCAL_AUTH:
        redis_auth(cl, m, 1, r->nargs - 1);
        break;
    case REDIS_LOCAL_HELLO:
        redis_hello(cl, m);
        break;
    default:
        redis_reply_text(rp, m, "-ERR legate: internal error\r\n");
        break;
    }
    m->done = true;
}

/* Argument `i`, upper-cased into `out` when it is a short word (NUL-ended;
 * "" when longer than `cap` - 1 bytes). */
static void redis_arg_word(struct redis_client *cl, uint32_t i, char *out, size_t cap)
{
    const struct resp_arg *a = &cl->req.args[i];
    size_t n = a->len < cap ? (size_t)a->len : 0;
    buf_queue_peek(&cl->in, a->off, out, n);
    out[n] = '\0';
    for (size_t k = 0; k < n; k++) {
        out[k] = (char)(out[k] >= 'a' && out[k] <= 'z' ? out[k] - 'a' + 'A' : out[k]);
    }
}

/* What a SORT BY or GET pattern names. */
enum redis_pattern {
    REDIS_PATTERN_NO_MEMORY = -1,
    REDIS_PATTERN_CONSTANT,   /* no '*': one key (BY: none, the sort is skipped) */
    REDIS_PATTERN_TAGGED,     /* '*' outside a hash tag: keys on the pattern's server */
    REDIS_PATTERN_SPREAD,     /* keys that may be on any server */
};

static enum redis_pattern redis_pattern_kind(struct redis_client *cl, uint32_t i)
{
    const struct resp_arg *a = &cl->req.args[i];
    const uint8_t *p = redis_arg(cl, a);
    if (p == NULL) {
        return REDIS_PATTERN_NO_MEMORY;
    }
    if (memchr(p, '*', (size_t)a->len) == NULL) {
        return REDIS_PATTERN_CONSTANT;
    }
    const uint8_t *tag;
    size_t tlen;
    ring_key_span(&cl->rp->ring, p, (size_t)a->len, &tag, &tlen);
    return tlen < a->len && memchr(tag, '*', tlen) == NULL ? REDIS_PATTERN_TAGGED
                                                            : REDIS_PATTERN_SPREAD;
}

/* The keys SORT's and GEORADIUS' options name, from argument `from`: the
 * key after STORE or STOREDIST, and SORT's BY and GET patterns (a pattern
 * hashes as the keys it forms when its '*' is outside a hash tag; GET's
 * "#" and a BY with no '*' name no key). Positions go to `pos` (room for
 * `cap`). Returns how many, or -1 with a reply on `m`. */
static int redis_option_keys(struct redis_client *cl, struct redis_msg *m, uint32_t from,
                             uint32_t *pos, uint32_t cap)
{
    struct redis_pool *rp = cl->rp;
    uint32_t nargs = cl->req.nargs, n = 0;
    for (uint32_t i = from; i + 1 < nargs;) {
        char w[12];
        redis_arg_word(cl, i, w, sizeof(w));
        bool store = strcmp(w, "STORE") == 0 || strcmp(w, "STOREDIST") == 0;
        bool by = strcmp(w, "BY") == 0, get = strcmp(w, "GET") == 0;
        bool key = store;
        if (by || get) {
            enum redis_pattern kind = redis_pattern_kind(cl, i + 1);
            if (kind == REDIS_PATTERN_NO_MEMORY) {
                redis_reply_text(rp, m, "-ERR legate: out of memory\r\n");
                return -1;
            }
            if (kind == REDIS_PATTERN_SPREAD && rp->nservers > 1) {
                redis_reply_text(rp, m, "-ERR legate: a BY or GET pattern names keys on "
                                        "other servers (put its '*' outside a hash tag)\r\n");
                return -1;
            }
            char hash[2];
            redis_arg_word(cl, i + 1, hash, sizeof(hash));
            key = by ? kind == REDIS_PATTERN_TAGGED : strcmp(hash, "#") != 0;
        }
        if (key) {
            if (n == cap) {
                redis_reply_text(rp, m, "-ERR legate: too many STORE, BY or GET options\r\n");
                return -1;
            }
            pos[n++] = i + 1;
        }
        i += store || by || get || strcmp(w, "COUNT") == 0 ? 2 : strcmp(w, "LIMIT") == 0 ? 3 : 1;
    }
    return (int)n;
}

/* How many keys argument `at` counts (EVAL's numkeys), or -1 with a reply
 * on `m` when it is not a number of the arguments that follow. */
static int64_t redis_counted_keys(struct redis_client *cl, struct redis_msg *m, uint32_t at)
{
    const struct resp_req *r = &cl->req;
    char num[24] = "";
    const struct resp_arg *a = &r->args[at];
    size_t n = a->len < sizeof(num) - 1 ? (size_t)a->len : sizeof(num) - 1;
    buf_queue_peek(&cl->in, a->off, num, n);
    char *end;
    long long nk = strtoll(num, &end, 10);
    if (n == 0 || *end != '\0' || nk < 0 || (uint64_t)nk > r->nargs - at - 1) {
        redis_reply_text(cl->rp, m, "-ERR Number of keys can't be greater than number of args "
                                    "or negative\r\n");
        return -1;
    }
    return nk;
}

/* Most keys SORT's and GEORADIUS' options may name. */
enum { REDIS_OPTION_KEYS = 8 };

/* The server of every key of `cmd`, in *where_out: `small` (room for
 * REDIS_KEYS_INLINE) when the keys fit, else a malloc'd array the caller
 * frees if it differs from `small`. Keys are the fixed run first..last by
 * step, then those counted by cmd->numkeys, then those named in options.
 * Returns the number of keys, or -1 (reply already set on `m`). */
static int redis_keys(struct redis_client *cl, struct redis_msg *m, const struct redis_cmd *cmd,
                      int *small, int **where_out)
{
    struct redis_pool *rp = cl->rp;
    const struct resp_req *r = &cl->req;
    *where_out = NULL;
    uint32_t first = (uint32_t)cmd->first, step = (uint32_t)cmd->step;
    uint32_t last = cmd->last < 0 ? (uint32_t)((int64_t)r->nargs + cmd->last)
                                  : (uint32_t)cmd->last;
    uint32_t nfixed = first == 0 || last >= r->nargs || last < first ? 0
                                                                      : (last - first) / step + 1;
    uint32_t counted = 0;
    if (cmd->numkeys != 0) {
        int64_t nk = redis_counted_keys(cl, m, (uint32_t)cmd->numkeys);
        if (nk < 0) {
            return -1;
        }
        counted = (uint32_t)nk;
    }
    uint32_t opt[REDIS_OPTION_KEYS];
    int nopt = cmd->options == 0 ? 0 : redis_option_keys(cl, m, (uint32_t)cmd->options, opt,
                                                         REDIS_OPTION_KEYS);
    if (nopt < 0) {
        return -1;
    }
    uint32_t nkeys = nfixed + counted + (uint32_t)nopt;
    if (nkeys == 0) {
        return 0;
    }
    int *where = nkeys <= REDIS_KEYS_INLINE ? small : malloc(nkeys * sizeof(*where));
    if (where == NULL) {
        redis_reply_text(rp, m, "-ERR legate: out of memory\r\n");
        return -1;
    }
    for (uint32_t k = 0; k < nkeys; k++) {
        uint32_t at = k < nfixed ? first + k * step
                    : k < nfixed + counted ? (uint32_t)cmd->numkeys + 1 + (k - nfixed)
                    : opt[k - nfixed - counted];
        where[k] = redis_key_server(cl, &r->args[at]);
        if (where[k] < 0) {
            if (where != small) {
                free(where);
            }
            redis_reply_text(rp, m, "-ERR legate: server unavailable (no live server for the "
                                    "key)\r\n");
            return -1;
        }
    }
    *where_out = where;
    return (int)nkeys;
}

struct redis_msg *redis_route_msg(struct redis_client *cl)
{
    struct redis_pool *rp = cl->rp;
    struct redis_msg *m = redis_msg_new(rp, cl);
    if (m == NULL) {
        log_error(rp->wk->log, "pool '%s': out of memory for a request", rp->cp->name);
        cl->quit = true;
        return NULL;
    }
    redis_client_link(cl, m);
    return m;
}

bool redis_pending_admit(struct redis_pool *rp, struct redis_msg *m)
{
    if (rp->cp->max_pending == 0) {
        return true;
    }
    if (!pool_pending_begin(rp->pool)) {
        stats_add(&rp->pool->stats->x[SX_REJECTED], 1);
        redis_reply_fmt(rp, m, "%s legate: pool busy: %u requests in flight (max_pending)\r\n",
                        rp->mc ? "SERVER_ERROR" : "-ERR", rp->cp->max_pending);
        m->done = true;
        return false;
    }
    m->counted = true;
    return true;
}

/* Route the complete request at the head of cl->in. The request bytes are
 * consumed by the caller afterwards. */
static void redis_route(struct redis_client *cl)
{
    struct redis_pool *rp = cl->rp;
    const struct resp_req *r = &cl->req;
    struct redis_msg *m = redis_route_msg(cl);
    if (m == NULL || !redis_pending_admit(rp, m)) {
        return;
    }
    const struct redis_cmd *cmd = rp->last_cmd;
    if (r->name_too_long) {
        cmd = NULL;
    } else if (cmd == NULL || strcmp(cmd->name, r->name) != 0) {
        cmd = redis_cmd_find(r->name);
        if (cmd != NULL) {
            rp->last_cmd = cmd;
        }
    }
    if (cmd == NULL || cmd->kind == REDIS_UNSUPPORTED) {
        redis_reply_fmt(rp, m, "-ERR legate: unsupported command '%.64s'\r\n",
                        r->name_too_long ? "(too long)" : r->name);
        m->done = true;
        return;
    }
    if (!cl->authed && cmd->local != REDIS_LOCAL_AUTH && cmd->local != REDIS_LOCAL_HELLO &&
        cmd->local != REDIS_LOCAL_QUIT) {
        redis_reply_text(rp, m, "-NOAUTH Authentication required.\r\n");
        m->done = true;
        return;
    }
    if (!redis_cmd_arity_ok(cmd, r->nargs) ||
        (cmd->kind == REDIS_SPLIT_PAIRS && (r->nargs - 1) % 2 != 0)) {
        char lower[RESP_NAME_MAX + 1];
        size_t i = 0;
        for (; r->name[i] != '\0'; i++) {
            lower[i] = (char)(r->name[i] >= 'A' && r->name[i] <= 'Z' ? r->name[i] + 32 : r->name[i]);
        }
        lower[i] = '\0';
        redis_reply_fmt(rp, m, "-ERR wrong number of arguments for '%s' command\r\n", lower);
        m->done = true;
        return;
    }
    if (cmd->kind == REDIS_LOCAL) {
        redis_local(cl, m, cmd);
        return;
    }
    if (cmd->kind == REDIS_ANY) {
        int s = ring_pick(&rp->ring, (const uint8_t *)"", 0, bal_random(&rp->pool->bal));
        if (s < 0 || redis_forward(cl, m, s) == -1) {
            redis_reply_text(rp, m, "-ERR legate: server unavailable\r\n");
            m->done = true;
        }
        return;
    }
    int small[REDIS_KEYS_INLINE];
    int *where = NULL;
    int nkeys = redis_keys(cl, m, cmd, small, &where);
    if (nkeys < 0) {
        m->done = true;
        return;
    }
    bool one_server = true;
    for (int k = 1; k < nkeys; k++) {
        one_server = one_server && where[k] == where[0];
    }
    int rc;
    if (nkeys == 0) {
        int s = ring_pick(&rp->ring, (const uint8_t *)"", 0, bal_random(&rp->pool->bal));
        rc = s < 0 ? -1 : redis_forward(cl, m, s);
    } else if (one_server) {
        rc = redis_forward(cl, m, where[0]);
    } else if (cmd->kind == REDIS_KEYED) {
        redis_reply_text(rp, m, "-ERR legate: keys in request don't hash to the same server "
                                "(use hash tags)\r\n");
        m->done = true;
        rc = 0;
    } else {
        rc = redis_split(cl, m, cmd, where, (uint32_t)nkeys,
                         cmd->kind == REDIS_SPLIT_PAIRS ? 2 : 1);
        if (rc == -1 && m->nfrags > 0) {
            /* Fragments already sent will complete; mark the rest failed. */
            m->failed = true;
            rc = 0;
        }
    }
    if (where != small) {
        free(where); /* NULL-safe */
    }
    if (rc == -1) {
        redis_reply_text(rp, m, "-ERR legate: out of memory\r\n");
        m->done = true;
    }
}

/* ---------------------------------------------------------------- */
/* clients: reading and lifecycle                                    */

static void redis_client_flush(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    struct redis_client *cl = d->data;
    redis_client_pump(cl); /* collects finished replies and writes them */
}

static void redis_client_release(struct ev_loop *loop, struct ev_defer *d)
{
    (void)loop;
    struct redis_client *cl = d->data;
    if (cl->rp->mc) {
        mc_req_free(&cl->mreq);
    } else {
        resp_req_free(&cl->req);
    }
    slab_free(&cl->rp->clients, cl);
}

/* Forget the client whose socket is closed or handed over. Messages still
 * out at servers are orphaned: their replies are read and dropped when they
 * come. */
static void redis_client_end(struct redis_client *cl, bool err)
{
    struct redis_pool *rp = cl->rp;
    cl->gone = true;
    ev_timer_stop(rp->wk->loop, &cl->linger_timer);
    ev_defer_cancel(rp->wk->loop, &cl->flush);
    struct redis_msg *m = cl->head;
    while (m != NULL) {
        struct redis_msg *next = m->cnext;
        if (m->done) {
            redis_msg_free(rp, m); /* no server holds it */
        } else {
            m->client = NULL;
            m->cnext = NULL;
        }
        m = next;
    }
    cl->head = cl->tail = NULL;
    buf_queue_clear(&cl->in, &rp->wk->bufs);
    buf_queue_clear(&cl->out, &rp->wk->bufs);
    pool_client_closed(rp->pool, err);
    wk_item_del(rp->wk, &cl->item);
    ev_defer(rp->wk->loop, &cl->release);
}

static void redis_client_close(struct redis_client *cl, bool err)
{
    if (cl->gone) {
        return;
    }
    conn_close(&cl->c, cl->rp->wk->loop);
    redis_client_end(cl, err);
}

/* Nothing of the client is in flight during a reload: its socket and the
 * request it has begun go to the newest generation (handoff.h), or it is
 * closed when there is none. */
static void redis_client_hand_off(struct redis_client *cl)
{
    struct redis_pool *rp = cl->rp;
    handoff_conn(&rp->pool->shared->box, &cl->c, rp->wk->loop, cl->authed, &cl->in);
    redis_client_end(cl, false);
}

static void redis_client_abort(struct wk_item *it)
{
    redis_client_close((struct redis_client *)it, false);
}

/* Stopping. On a reload with a successor for the pool, the client reads
 * no more: what it has in flight is answered, then it is handed over with
 * whatever is still in its socket. Otherwise a client with nothing in
 * flight is closed now, the others as soon as their last reply is written;
 * requests already in the socket are in flight too, so it reads once
 * before judging (their event may not have been seen yet), and they are
 * answered rather than reset. */
static void redis_client_drain(struct wk_item *it)
{
    struct redis_client *cl = (struct redis_client *)it;
    cl->draining = true;
    cl->handoff = handoff_linked(&cl->rp->pool->shared->box);
    if (!cl->handoff) {
        cl->c.readable = true;
    }
    redis_client_pump(cl);
}

/* End the client after one last reply, `line` (queued behind the replies
 * it is still owed): its unread input is dropped and it lingers once every
 * reply is written (see redis_client_linger). */
static void redis_client_end_with(struct redis_client *cl, const char *line)
{
    struct redis_pool *rp = cl->rp;
    buf_queue_clear(&cl->in, &rp->wk->bufs); /* first: it may hold the memory the reply needs */
    buf_cursor_reset(&cl->cur, &cl->in);
    cl->quit = true;
    cl->linger = true;
    struct redis_msg *m = redis_msg_new(rp, cl);
    if (m != NULL) {
        redis_client_link(cl, m);
        redis_reply_text(rp, m, line);
        m->done = true;
    }
}

void redis_client_protocol_error(struct redis_client *cl, const char *why)
{
    struct redis_pool *rp = cl->rp;
    if (why == resp_no_memory || why == mc_no_memory) {
        pool_warn(rp->pool, "out of memory for a client's request; closing it");
        redis_client_end_with(cl, redis_oom_reply(rp));
        return;
    }
    char line[160];
    snprintf(line, sizeof(line), rp->mc ? "CLIENT_ERROR legate: %s\r\n"
                                        : "-ERR legate: protocol error: %s\r\n", why);
    log_info(rp->wk->log, "pool '%s': closing a client after a protocol error: %s",
             rp->cp->name, why);
    redis_client_end_with(cl, line);
}

/* Parse and route every complete request in cl->in. */
static void redis_client_parse(struct redis_client *cl)
{
    struct redis_pool *rp = cl->rp;
    while (!cl->quit && cl->pending < REDIS_MAX_PENDING) {
        size_t avail = buf_cursor_avail(&cl->cur, &cl->in);
        if (avail == 0) {
            resp_req_shed(&cl->req, &rp->spare_args); /* between requests: hold none */
            return;
        }
        resp_req_adopt(&cl->req, &rp->spare_args);
        size_t used;
        int rc = resp_req_feed(&cl->req, cl->cur.p, avail, &used, &rp->limits);
        cl->cur.p += used;
        if (rc == RESP_AGAIN) {
            continue;
        }
        if (rc == RESP_ERROR) {
            redis_client_protocol_error(cl, cl->req.error);
            return;
        }
        if (cl->req.nargs > 0) {
            redis_route(cl);
        }
        buf_queue_consume(&cl->in, &rp->wk->bufs, (size_t)cl->req.size);
        buf_cursor_reset(&cl->cur, &cl->in);
        resp_req_reset(&cl->req);
    }
}

static void redis_client_linger_timer(struct ev_loop *loop, struct ev_timer *t)
{
    (void)loop;
    redis_client_close(t->data, false);
}

/* Every reply is written after an error that ends the client: linger (see
 * conn_linger) rather than close on what it may still be sending. */
static void redis_client_linger(struct redis_client *cl)
{
    struct redis_pool *rp = cl->rp;
    if (cl->draining) {
        redis_client_close(cl, false);
        return;
    }
    enum conn_linger step = conn_linger(&cl->c, rp->wk->loop, &cl->linger_timer);
    if (step == CONN_LINGER_AGAIN) {
        ev_defer(rp->wk->loop, &cl->flush);
    } else if (step != CONN_LINGER_WAIT) {
        redis_client_close(cl, step == CONN_LINGER_FAILED);
    }
}

/* Whether replies ready for `cl` wait: a client with more requests still
 * at servers (a pipeline spread over shards) waits for their replies, so
 * that what one read brought is mostly answered by one write. Each write is
 * a TCP segment and, often, a wake-up of the client; the replies of a batch
 * otherwise leave in as many writes as there were iterations in which its
 * shards answered. The wait ends after REDIS_HOLD_ITERS loop iterations, at
 * the first iteration whose poll found nothing (the rest is not about to
 * come), or once REDIS_HOLD_MAX bytes are ready; a client with nothing else
 * in flight (every -P 1 client), or quitting, draining or being handed
 * over, never waits. While it waits, its flush is queued for the next
 * iteration, whose poll then does not block. */
static bool redis_client_hold(struct redis_client *cl)
{
    struct ev_loop *loop = cl->rp->wk->loop;
    uint8_t now = (uint8_t)ev_iteration(loop);
    if (cl->head == NULL || cl->out.bytes >= REDIS_HOLD_MAX || cl->quit || cl->draining ||
        cl->handoff || (cl->holding && ((uint8_t)(now - cl->hold_iter) >= REDIS_HOLD_ITERS ||
                                        ev_events(loop) == 0))) {
        cl->holding = false;
        return false;
    }
    if (!cl->holding) {
        cl->holding = true;
        cl->hold_iter = now;
    }
    ev_defer_next(loop, &cl->flush);
    return true;
}

static void redis_client_pump(struct redis_client *cl)
{
    struct redis_pool *rp = cl->rp;
    struct buf_pool *bufs = &rp->wk->bufs;
    for (;;) {
        if (cl->gone) {
            return;
        }
        if (cl->c.shut_wr) { /* lingering */
            redis_client_linger(cl);
            return;
        }
        bool moved = false;
        bool room = !cl->quit && cl->pending < REDIS_MAX_PENDING &&
                    cl->out.bytes < rp->wk->queue_limit &&
                    (!cl->handoff || cl->in.bytes > REDIS_HANDOFF_CARRY);
        if (room && cl->c.readable && !cl->c.eof) {
            /* The request being parsed may be large: allow it all in. */
            size_t limit = (size_t)(rp->mc ? cl->mreq.size : cl->req.size) + rp->wk->queue_limit;
            ssize_t r = conn_read(&cl->c, &cl->in, bufs, limit);
            if (r == -1 && errno == ENOMEM) {
                /* no room for the request: say so rather than vanish */
                pool_warn(rp->pool, "out of memory for a client's request; closing it");
                redis_client_end_with(cl, redis_oom_reply(rp));
                continue;
            }
            if (r == -1) {
                redis_client_close(cl, true);
                return;
            }
            moved = r >= 0;
        }
        if (rp->mc) {
            mc_client_parse(cl);
        } else {
            redis_client_parse(cl);
        }
        redis_client_collect(cl);
        if (cl->c.writable && cl->out.bytes > 0 && !redis_client_hold(cl)) {
            ssize_t w = conn_write(&cl->c, &cl->out, bufs);
            if (w == -1) {
                redis_client_close(cl, true);
                return;
            }
            moved = moved || w > 0;
        }
        if (cl->handoff && cl->pending == 0 && cl->out.bytes == 0 && !cl->quit &&
            !cl->c.eof && cl->in.bytes <= REDIS_HANDOFF_CARRY) {
            redis_client_hand_off(cl);
            return;
        }
        /* After QUIT, a protocol error or the client's FIN: close once every
         * reply is written (an unfinished request can never complete). */
        if (cl->pending == 0 && cl->out.bytes == 0 &&
            (cl->quit || cl->c.eof || (cl->draining && cl->in.bytes == 0))) {
            if (cl->linger && !cl->c.eof && !cl->draining) {
                redis_client_linger(cl);
            } else {
                redis_client_close(cl, false);
            }
            return;
        }
        if (!moved) {
            return;
        }
    }
}

static void redis_client_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)loop;
    struct redis_client *cl = io->data;
    conn_note_events(&cl->c, events);
    redis_client_pump(cl);
}

/* A client of pool `p` with nothing read yet, not yet on a socket; NULL
 * when out of memory (logged). */
static struct redis_client *redis_client_new(struct pool *p)
{
    struct redis_pool *rp = p->proto;
    struct redis_client *cl = slab_alloc(&rp->clients);
    if (cl == NULL) {
        log_error(rp->wk->log, "pool '%s': out of memory for a client", p->cp->name);
        return NULL;
    }
    cl->rp = rp;
    cl->authed = p->cp->redis_auth == NULL;
    buf_queue_init(&cl->in);
    buf_queue_init(&cl->out);
    if (rp->mc) {
        mc_req_init(&cl->mreq);
    } else {
        resp_req_init(&cl->req);
    }
    cl->flush = (struct ev_defer){ .fn = redis_client_flush, .data = cl };
    cl->release = (struct ev_defer){ .fn = redis_client_release, .data = cl };
    cl->linger_timer = (struct ev_timer){ .fn = redis_client_linger_timer, .data = cl };
    return cl;
}

/* Put `cl` on `fd` and into the worker's items. Returns 0, or -1 with `cl`
 * freed (the caller closes fd). */
static int redis_client_open(struct redis_client *cl, int fd)
{
    struct redis_pool *rp = cl->rp;
    net_set_nodelay(fd, &rp->cp->listen);
    if (conn_open(&cl->c, rp->wk->loop, fd, redis_client_io, cl) == -1) {
        log_error(rp->wk->log, "pool '%s': epoll: %s", rp->cp->name, strerror(errno));
        buf_queue_clear(&cl->in, &rp->wk->bufs);
        redis_client_release(rp->wk->loop, &cl->release);
        return -1;
    }
    cl->lane = rp->next_lane++;
    wk_item_add(rp->wk, &cl->item, redis_client_abort, redis_client_drain);
    return 0;
}

int redis_client_start(struct pool *p, int fd)
{
    struct redis_client *cl = redis_client_new(p);
    return cl == NULL ? -1 : redis_client_open(cl, fd);
}

int redis_client_adopt(struct pool *p, const struct handoff_item *it)
{
    struct redis_client *cl = redis_client_new(p);
    if (cl == NULL) {
        return -1;
    }
    struct redis_pool *rp = cl->rp;
    cl->authed = cl->authed || it->authed;
    if (it->len > 0 && buf_queue_append(&cl->in, &rp->wk->bufs, it->data, it->len) == -1) {
        log_error(rp->wk->log, "pool '%s': out of memory for a client", p->cp->name);
        redis_client_release(rp->wk->loop, &cl->release);
        return -1;
    }
    buf_cursor_reset(&cl->cur, &cl->in);
    if (redis_client_open(cl, it->fd) == -1) {
        return -1;
    }
    cl->c.readable = true; /* what it sent meanwhile waits in the socket */
    ev_defer(rp->wk->loop, &cl->flush);
    return 0;
}
