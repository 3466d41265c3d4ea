/* mc: the sharding memcached proxy's requests — parsing, routing by key,
 * splitting multi-key gets and merging their replies in key order. It runs
 * on the redis pool's machinery (clients, messages in client order, server
 * connections, ejection; see redis.h): only what the text protocol changes
 * lives here.
 *
 * A request with `noreply` is forwarded without it and its reply dropped,
 * so every request on a server connection has exactly one reply and a
 * pipeline can never lose its place. A quiet meta request (flag `q`) is
 * forwarded as it came with an "mn" after it: the server's own rules
 * decide whether a reply shows, and its MN closes the reply either way
 * (mc_proto.h, until_mn). A client's own "mn" is answered by legate in
 * its place in the client's order, after every reply before it. */
#include "mc.h"
#include "redis_int.h"

#include <stdlib.h>
#include <string.h>

enum { MC_BAD_KEY = -2 };

/* The server for token `t`, or -1 (none live, or out of memory), or
 * MC_BAD_KEY. A base64 key (`b64`, meta's `b` flag) is placed by its
 * decoded bytes, where the same key sent plain would go. */
static int mc_key_server(struct redis_client *cl, const struct mc_tok *t, bool b64)
{
    if (!b64) {
        return redis_client_key_server(cl, t->off, t->len);
    }
    const uint8_t *k = redis_client_bytes(cl, t->off, t->len);
    uint8_t key[MC_KEY_MAX];
    size_t n;
    if (k == NULL) {
        return -1;
    }
    return mc_b64_decode(k, t->len, key, &n) == -1 ? MC_BAD_KEY
                                                    : redis_key_bytes_server(cl->rp, key, n);
}

/* Send the request at the head of cl->in to server `srv`: as it came, or
 * without its trailing "noreply" (then its reply is dropped on arrival). */
static int mc_forward(struct redis_client *cl, struct redis_msg *m, int srv)
{
    struct redis_pool *rp = cl->rp;
    const struct mc_req *r = &cl->mreq;
    struct redis_sconn *sc = redis_pick_conn(cl, (size_t)srv);
    struct buf_pool *bufs = &rp->wk->bufs;
    uint64_t before = sc->out.bytes;
    bool bad;
    if (r->kind == MC_META && r->quiet) {
        m->mn_tail = true;
        bad = buf_queue_append_range(&sc->out, bufs, &cl->in, 0, r->size) == -1 ||
              buf_queue_append(&sc->out, bufs, "mn\r\n", 4) == -1;
    } else if (!r->noreply) {
        bad = buf_queue_append_range(&sc->out, bufs, &cl->in, 0, r->size) == -1;
    } else {
        const struct mc_tok *prev = &r->tok[r->ntok - 2];
        m->quiet = true;
        bad = buf_queue_append_range(&sc->out, bufs, &cl->in, 0, prev->off + prev->len) == -1 ||
              buf_queue_append(&sc->out, bufs, "\r\n", 2) == -1 ||
              buf_queue_append_range(&sc->out, bufs, &cl->in, r->line, r->size - r->line) == -1;
    }
    if (bad) {
        return -1;
    }
    redis_sconn_push(sc, m, sc->out.bytes - before);
    redis_sconn_kick(sc);
    return 0;
}

/* The keys of a split get, kept with the parent message (in its frags
 * block) to put the values back in key order: offsets into `bytes`. */
struct mc_keys {
    uint32_t *off;          /* nkeys + 1 entries */
    uint8_t *bytes;
};

/* Split a get over several servers: one "<cmd> [exptime] keys..." per
 * server, the parent remembering every key. */
static int mc_split(struct redis_client *cl, struct redis_msg *m, const int *where)
{
    struct redis_pool *rp = cl->rp;
    const struct mc_req *r = &cl->mreq;
    uint32_t nkeys = r->nkeys;
    uint64_t keybytes = 0;
    for (uint32_t k = 0; k < nkeys; k++) {
        keybytes += r->tok[r->first_key + k].len;
    }
    m->kind = REDIS_SPLIT_VALUES;
    m->nkeys = nkeys;
    /* One block, each part aligned for what it holds: fragment pointers,
     * the keys' record, key positions, key offsets, key bytes. */
    size_t frags = rp->nservers * sizeof(*m->frags);
    size_t rec = sizeof(struct mc_keys);
    size_t idx = nkeys * sizeof(uint32_t);
    size_t offs = (nkeys + 1) * sizeof(uint32_t);
    m->frags = malloc(frags + rec + idx + offs + keybytes);
    uint32_t *count = calloc(rp->nservers, sizeof(*count));
    if (m->frags == NULL || count == NULL) {
        free(count);
        return -1;
    }
    char *block = (char *)m->frags;
    struct mc_keys *keys = (struct mc_keys *)(void *)(block + frags);
    m->keyidx = (uint32_t *)(void *)(block + frags + rec);
    keys->off = (uint32_t *)(void *)(block + frags + rec + idx);
    keys->bytes = (uint8_t *)(block + frags + rec + idx + offs);
    m->mkeys = keys;
    uint32_t at = 0;
    for (uint32_t k = 0; k < nkeys; k++) {
        const struct mc_tok *t = &r->tok[r->first_key + k];
        keys->off[k] = at;
        buf_queue_peek(&cl->in, t->off, keys->bytes + at, t->len);
        at += t->len;
        count[where[k]]++;
    }
    keys->off[nkeys] = at;
    /* the command and, for gat, its exptime: everything before the first key */
    uint64_t prefix = r->tok[r->first_key].off;
    uint32_t slice = 0;
    int rc = 0;
    for (size_t s = 0; s < rp->nservers && rc == 0; s++) {
        if (count[s] == 0) {
            continue;
        }
        struct redis_msg *fr = redis_msg_new(rp, NULL);
        if (fr == NULL) {
            rc = -1;
            break;
        }
        fr->keyidx = m->keyidx + slice;
        slice += count[s];
        fr->parent = m;
        struct redis_sconn *sc = redis_pick_conn(cl, s);
        uint64_t before = sc->out.bytes;
        struct buf_pool *bufs = &rp->wk->bufs;
        struct buf_mark mark = buf_queue_mark(&sc->out);
        bool bad = buf_queue_append_range(&sc->out, bufs, &cl->in, 0, prefix) == -1;
        for (uint32_t k = 0; k < nkeys && !bad; k++) {
            if ((size_t)where[k] == s) {
                const struct mc_tok *t = &r->tok[r->first_key + k];
                fr->keyidx[fr->nfragkeys++] = k;
                bad = (fr->nfragkeys > 1 && buf_queue_append(&sc->out, bufs, " ", 1) == -1) ||
                      buf_queue_append_range(&sc->out, bufs, &cl->in, t->off, t->len) == -1;
            }
        }
        if (bad || buf_queue_append(&sc->out, bufs, "\r\n", 2) == -1) {
            /* Half a command would run into the next one at the server:
             * none of it goes, and the fragment is not waited for. */
            buf_queue_rewind(&sc->out, bufs, mark);
            redis_msg_free(rp, fr);
            rc = -1;
            break;
        }
        m->frags[m->nallfrags++] = fr;
        m->nfrags++;
        stats_add(&rp->pool->stats->f[SP_FRAGMENTS], 1);
        redis_sconn_push(sc, fr, sc->out.bytes - before);
        redis_sconn_kick(sc);
    }
    free(count);
    return rc;
}

/* A get or gat: one server takes the request whole; several split it. */
static void mc_route_get(struct redis_client *cl, struct redis_msg *m)
{
    struct redis_pool *rp = cl->rp;
    const struct mc_req *r = &cl->mreq;
    int small[REDIS_KEYS_INLINE];
    int *where = r->nkeys <= REDIS_KEYS_INLINE ? small : malloc(r->nkeys * sizeof(*where));
    if (where == NULL) {
        redis_msg_error(rp, m, "out of memory");
        return;
    }
    bool one_server = true;
    for (uint32_t k = 0; k < r->nkeys; k++) {
        where[k] = mc_key_server(cl, &r->tok[r->first_key + k], false);
        if (where[k] < 0) {
            redis_msg_error(rp, m, "server unavailable");
            goto out;
        }
        one_server = one_server && where[k] == where[0];
    }
    /* (a get has at least one key: the parser sees to it) */
    int rc = one_server ? mc_forward(cl, m, r->nkeys > 0 ? where[0] : 0) : mc_split(cl, m, where);
    if (rc == -1 && m->nfrags > 0) {
        m->failed = true; /* fragments already sent complete the message */
    } else if (rc == -1) {
        redis_msg_error(rp, m, "out of memory");
    }
out:
    if (where != small) {
        free(where);
    }
}

/* Whether this worker has a working connection to server `i`. */
static bool mc_server_up(const struct redis_pool *rp, size_t i)
{
    const struct redis_server *sv = &rp->servers[i];
    for (unsigned k = 0; k < sv->nconns; k++) {
        if (sv->conns[k].state == SC_UP) {
            return true;
        }
    }
    return false;
}

/* The server for a request without a key (version): one in the ring, not
 * held out, that this worker is connected to, starting at a random one;
 * when there is none, the ring's pick for an empty key (it connects).
 * -1 when that one is held out too. */
static int mc_any_server(struct redis_pool *rp)
{
    uint64_t rnd = bal_random(&rp->pool->bal);
    for (size_t k = 0; k < rp->nservers; k++) {
        size_t i = (size_t)((rnd + k) % rp->nservers);
        if (rp->live[i] && !rp->pool->down[i] && mc_server_up(rp, i)) {
            return (int)i;
        }
    }
    int s = ring_pick(&rp->ring, (const uint8_t *)"", 0, rnd);
    return s >= 0 && rp->pool->down[s] ? -1 : s;
}

/* Route the request just parsed (cl->mreq, at the head of cl->in). */
static void mc_route(struct redis_client *cl)
{
    struct redis_pool *rp = cl->rp;
    const struct mc_req *r = &cl->mreq;
    struct redis_msg *m = redis_route_msg(cl);
    if (m == NULL) {
        return;
    }
    switch (r->kind) {
    case MC_UNKNOWN:
        redis_reply_text(rp, m, "ERROR\r\n"); /* what memcached says */
        m->done = true;
        return;
    case MC_QUIT:
        cl->quit = true; /* memcached closes without a reply */
        m->done = true;
        return;
    case MC_META_NOOP:
        redis_reply_text(rp, m, "MN\r\n");
        m->done = true;
        return;
    default:
        break;
    }
    if (!redis_pending_admit(rp, m)) {
        return;
    }
    if (r->kind == MC_GET || r->kind == MC_GAT) {
        mc_route_get(cl, m);
        return;
    }
    /* version has no key: a server answers with its own version, as
     * through nutcracker (clients such as libmemcached refuse a major
     * version 0 and gate features on what the servers run); a dead one
     * is passed over when a live one is connected. */
    int s = r->kind == MC_VERSION ? mc_any_server(rp)
                                  : mc_key_server(cl, &r->tok[r->first_key], r->b64);
    if (s == MC_BAD_KEY) {
        redis_reply_text(rp, m, "CLIENT_ERROR legate: key is not base64\r\n");
        m->done = true;
    } else if (s < 0) {
        redis_msg_error(rp, m, "server unavailable");
    } else if (mc_forward(cl, m, s) == -1) {
        redis_msg_error(rp, m, "out of memory");
    }
}

void mc_client_parse(struct redis_client *cl)
{
    struct redis_pool *rp = cl->rp;
    while (!cl->quit && cl->pending < REDIS_MAX_PENDING) {
        size_t avail = buf_cursor_avail(&cl->cur, &cl->in);
        if (avail == 0) {
            return;
        }
        size_t used;
        int rc = mc_req_feed(&cl->mreq, cl->cur.p, avail, &used, &rp->mlimits);
        cl->cur.p += used;
        if (rc == MC_AGAIN) {
            continue;
        }
        if (rc == MC_ERROR) {
            redis_client_protocol_error(cl, cl->mreq.error);
            return;
        }
        mc_route(cl);
        buf_queue_consume(&cl->in, &rp->wk->bufs, (size_t)cl->mreq.size);
        buf_cursor_reset(&cl->cur, &cl->in);
        mc_req_reset(&cl->mreq);
    }
}

bool mc_reply_is_error(const char *head, size_t n)
{
    static const char *const errors[] = { "ERROR\r\n", "CLIENT_ERROR ", "SERVER_ERROR " };
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        size_t len = strlen(errors[i]);
        if (n >= len && memcmp(head, errors[i], len) == 0) {
            return true;
        }
    }
    return n == 0;
}

/* Length of the line starting `off` bytes into `q`, its CRLF included, and
 * a copy of up to `cap` bytes of it in `line`; -1 when there is none. */
static int mc_peek_line(const struct buf_queue *q, uint64_t off, char *line, size_t cap,
                        size_t *n, uint64_t *total)
{
    size_t avail = q->bytes - off < cap ? (size_t)(q->bytes - off) : cap;
    buf_queue_peek(q, off, line, avail);
    for (size_t i = 0; i + 1 < avail; i++) {
        if (line[i] == '\r' && line[i + 1] == '\n') {
            *n = i;
            *total = i + 2;
            return 0;
        }
    }
    return -1;
}

int mc_merge(struct redis_pool *rp, struct redis_msg *p)
{
    const struct mc_keys *keys = p->mkeys;
    /* where each fragment's reply has been read to; the fragment of each key */
    uint64_t *at = calloc(p->nallfrags, sizeof(*at));
    uint32_t *owner = malloc(p->nkeys * sizeof(*owner));
    int rc = -1;
    struct buf_pool *bufs = &rp->wk->bufs;
    if (at == NULL || owner == NULL) {
        goto out;
    }
    for (uint32_t f = 0; f < p->nallfrags; f++) {
        struct redis_msg *fr = p->frags[f];
        for (uint32_t j = 0; j < fr->nfragkeys; j++) {
            owner[fr->keyidx[j]] = f;
        }
    }
    /* Walk the keys in request order; each fragment's values come in the
     * order of its own keys, a miss simply absent. */
    for (uint32_t k = 0; k < p->nkeys; k++) {
        uint32_t f = owner[k];
        const struct buf_queue *q = &p->frags[f]->reply;
        char line[MC_KEY_MAX + 64];
        size_t n;
        uint64_t linelen;
        size_t koff, klen;
        uint64_t bytes;
        if (mc_peek_line(q, at[f], line, sizeof(line), &n, &linelen) == -1 ||
            mc_value_line(line, n, &koff, &klen, &bytes) == -1) {
            continue; /* END (or no line): this key was a miss */
        }
        const uint8_t *want = keys->bytes + keys->off[k];
        size_t wlen = keys->off[k + 1] - keys->off[k];
        if (klen != wlen || memcmp(line + koff, want, wlen) != 0) {
            continue; /* the next value is a later key's: a miss */
        }
        uint64_t block = linelen + bytes + 2;
        if (buf_queue_append_range(&p->reply, bufs, q, at[f], block) == -1) {
            goto out;
        }
        at[f] += block;
    }
    rc = buf_queue_append(&p->reply, bufs, "END\r\n", 5);
out:
    free(at);
    free(owner);
    return rc;
}
