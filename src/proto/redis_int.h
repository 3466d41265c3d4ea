/* redis_int: what the files of the redis pool share (private to
 * src/proto/redis*.c): its types and the functions they call across files.
 *
 *   redis_msg.c     messages, replies in client order, fragment merging
 *   redis_server.c  server connections, ejection, the pool's setup
 *   redis.c         clients: parsing, routing, commands answered locally
 *   mc.c            the same for memcache pools (a pool with `mc` set) */
#ifndef LEGATE_REDIS_INT_H
#define LEGATE_REDIS_INT_H

#include "redis.h"
#include "mc.h"
#include "mc_proto.h"
#include "redis_cmd.h"
#include "resp.h"
#include "../core/conn.h"
#include "../core/log.h"
#include "../core/net.h"
#include "../core/slab.h"
#include "../core/tm.h"
#include "../upstream/pool.h"
#include "../upstream/ring.h"
#include "../wk.h"

#include <stdbool.h>
#include <stdint.h>

enum {
    REDIS_MAX_PENDING = 4096, /* requests in flight per client before reads pause */
    REDIS_HOLD_ITERS = 4,     /* loop iterations a client's ready replies may wait (redis_client_hold) */
    REDIS_HOLD_MAX = 16384,   /* bytes of ready replies past which a client never waits (redis_client_hold) */
    REDIS_SCRATCH_MIN = 256,
    REDIS_KEYS_INLINE = 16,   /* keys routed without allocating */
    /* A client handed over at a reload takes its unfinished request along
     * up to this size; a longer one is finished here first. */
    REDIS_HANDOFF_CARRY = 64 * 1024,
};

struct redis_pool;
struct redis_client;
struct redis_sconn;

/* Replies up to this size that arrive before the ones ahead of them wait
 * inside their message rather than in a buffer chunk of their own. */
enum { REDIS_SMALL_REPLY = 46 };

struct redis_msg {
    struct redis_msg *cnext;      /* client order */
    struct redis_msg *snext;      /* server connection FIFO */
    struct redis_client *client;  /* NULL once the client is gone */
    struct redis_msg *parent;     /* set on fragments */
    struct buf_queue reply;
    uint8_t nsmall;               /* or: a short reply kept here, after `reply` */
    uint8_t small[REDIS_SMALL_REPLY];
    uint64_t sent_at;             /* ms, loop time: queued, then written */
    uint64_t sent_us;             /* us, loop time when queued: latency */
    uint64_t req_bytes;           /* bytes of this request on its connection */
    uint64_t end;                 /* offset just past them in the connection's stream */
    bool done;
    bool internal;                /* legate's own AUTH/SELECT to a server */
    bool counted;                 /* holds a max_pending place until freed */
    bool failed;                  /* parent: a fragment failed */
    bool quiet;                   /* memcache noreply: its reply is dropped */
    bool mn_tail;                 /* memcache quiet meta request: "mn" sent after it */
    uint8_t kind;                 /* parent: enum redis_kind, to merge */
    uint32_t nfrags;              /* parent: fragments not yet answered */
    uint32_t nkeys;               /* parent: keys of the command */
    struct redis_msg **frags;     /* parent: every fragment, in server order */
    uint32_t nallfrags;
    int64_t sum;                  /* parent: SPLIT_SUM total */
    uint32_t *keyidx;             /* parent: all, in the frags block; fragment:
                                   * its slice, the original key positions */
    uint32_t nfragkeys;
    struct mc_keys *mkeys;        /* parent of a split memcache get: its keys */
};

enum redis_sc_state { SC_DOWN, SC_CONNECTING, SC_UP };

struct redis_sconn {
    struct conn c;
    struct redis_pool *rp;
    size_t server;                /* index in the pool's servers */
    enum redis_sc_state state;
    struct buf_queue out;
    struct buf_queue in;
    struct buf_cursor cur;        /* how far `in` has been parsed */
    union {
        struct resp_rsp rsp;
        struct mc_rsp mrsp;       /* memcache pools */
    };
    struct redis_msg *head;       /* FIFO of messages awaiting a reply */
    struct redis_msg *tail;
    struct redis_msg *unsent;     /* first message not fully written */
    uint64_t appended;            /* request bytes queued since connect */
    uint64_t written;             /* request bytes written since connect */
    struct ev_timer timer;        /* connect, then request timeout */
    struct ev_defer again;        /* pump at the end of the loop iteration */
};

struct redis_server {
    struct redis_pool *rp;
    size_t index;
    struct redis_sconn *conns;
    unsigned nconns;
    unsigned failures;            /* consecutive, reset by any reply */
    bool ejected;                 /* out of the ring until `readmit` fires */
    unsigned gen;                 /* the slot fill this state belongs to */
    struct ev_timer readmit;
};

struct redis_pool {
    struct pool *pool;
    struct wk *wk;
    const struct conf_pool *cp;
    struct ring ring;
    struct redis_server *servers;
    size_t nservers;
    bool *live;                   /* per server: in the ring (not ejected) */
    bool mc;                      /* a memcache pool (mc.c parses its clients) */
    struct resp_limits limits;    /* on client requests (replies: the defaults) */
    struct mc_limits mlimits;     /* the same, for memcache pools */
    uint8_t *scratch;             /* contiguous copy of a key split across chunks */
    size_t scratch_cap;
    const struct redis_cmd *last_cmd; /* memo: clients repeat commands */
    struct resp_args_spare spare_args; /* idle clients hold no argument array */
    struct slab msgs;             /* struct redis_msg, packed */
    struct slab clients;          /* struct redis_client, packed */
    unsigned next_lane;           /* the lane the next client gets */
};

struct redis_client {
    struct wk_item item;          /* first: the worker's list links to it */
    struct redis_pool *rp;
    struct conn c;
    struct buf_queue in;
    struct buf_queue out;
    struct buf_cursor cur;
    union {
        struct resp_req req;
        struct mc_req mreq;       /* memcache pools */
    };
    struct redis_msg *head;
    struct redis_msg *tail;
    unsigned pending;
    unsigned lane;                /* which of a server's conns carries this client's requests */
    bool quit;                    /* close once every reply is written */
    bool gone;
    bool authed;                  /* AUTH done, or no password configured */
    bool draining;                /* legate is stopping: close when idle */
    bool handoff;                 /* a reload: hand over when idle (handoff.h), reading no more */
    bool linger;                  /* ended by an error: drain its input before closing */
    bool holding;                 /* redis_client_hold: ready replies wait */
    uint8_t hold_iter;            /* since this iteration (its low bits: holds are short) */
    struct ev_timer linger_timer; /* bounds the lingering (conn_linger) */
    struct ev_defer flush;        /* write replies once per loop iteration */
    struct ev_defer release;
};

/* redis_msg.c */
/* A zeroed message for `cl` (NULL: legate's own or a fragment), from the
 * pool's slab. NULL when out of memory. */
struct redis_msg *redis_msg_new(struct redis_pool *rp, struct redis_client *cl);
void redis_msg_free(struct redis_pool *rp, struct redis_msg *m);
void redis_reply_text(struct redis_pool *rp, struct redis_msg *m, const char *text);
/* legate's out-of-memory error in the pool's protocol (short enough to be
 * kept inside a message). */
const char *redis_oom_reply(const struct redis_pool *rp);
void redis_reply_fmt(struct redis_pool *rp, struct redis_msg *m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Answer `m` with "-ERR legate: why" and complete it. */
void redis_msg_error(struct redis_pool *rp, struct redis_msg *m, const char *why);
/* `m` has its reply: merge it into its parent, or schedule its client's write. */
void redis_msg_complete(struct redis_pool *rp, struct redis_msg *m);
void redis_client_link(struct redis_client *cl, struct redis_msg *m);
/* Move finished replies at the head of the client's order to its output. */
void redis_client_collect(struct redis_client *cl);
/* Append a RESP bulk string. Returns 0, or -1 when out of memory. */
int redis_append_bulk(struct redis_pool *rp, struct buf_queue *q, const void *data, size_t len);

/* redis.c */
/* The bytes [off, off+len) of the request at the head of cl->in,
 * contiguous: in its buffer, or copied to the pool's scratch (valid until
 * the next call). NULL when out of memory. */
const uint8_t *redis_client_bytes(struct redis_client *cl, uint64_t off, uint64_t len);
/* The server for the key at [off, off+len) of that request, or -1: none
 * live, held out by health checks, or out of memory. */
int redis_client_key_server(struct redis_client *cl, uint64_t off, uint64_t len);
/* The same for the key k[0, len). */
int redis_key_bytes_server(struct redis_pool *rp, const uint8_t *k, size_t len);
/* The client sent something malformed: answer it in the pool's protocol
 * (after the replies before it), drop the rest of its input, close. */
void redis_client_protocol_error(struct redis_client *cl, const char *why);
/* A message for the request just parsed, linked in its client's order;
 * NULL when out of memory (logged, and the client is made to close). */
struct redis_msg *redis_route_msg(struct redis_client *cl);
/* Take a place for `m` under the pool's max_pending; when the pool is
 * full, answer `m` "pool busy" in the pool's protocol (done) and return
 * false. */
bool redis_pending_admit(struct redis_pool *rp, struct redis_msg *m);

/* redis_server.c */
/* The connection to use for server `i` (round robin over its conns). */
struct redis_sconn *redis_pick_conn(const struct redis_client *cl, size_t i);
/* Queue `m` for a reply; its `bytes` of request are already in sc->out. */
void redis_sconn_push(struct redis_sconn *sc, struct redis_msg *m, uint64_t bytes);
/* Send what is queued at the end of this loop iteration (connecting first). */
void redis_sconn_kick(struct redis_sconn *sc);

#endif
