/* mc: the sharding memcached proxy, run on the redis pool's machinery (see
 * redis.h for the picture): a memcache pool is a redis pool whose clients
 * speak the text protocol (mc_proto.h) and whose servers are memcached.
 * Keys route as in twemproxy; get, gets, gat and gats over several servers
 * are split and their values merged back in key order; legate answers
 * version and quit itself and "ERROR" to commands it does not forward. */
#ifndef LEGATE_MC_H
#define LEGATE_MC_H

#include <stdbool.h>
#include <stddef.h>

struct redis_client;
struct redis_pool;
struct redis_msg;

/* Parse and route every complete request in cl->in. */
void mc_client_parse(struct redis_client *cl);
/* Whether a reply starting with `head` (n bytes) is an error. */
bool mc_reply_is_error(const char *head, size_t n);
/* All fragments of split get `p` answered without error, each reply whole
 * in its fr->reply (none kept small): build p's reply.
 * Returns 0, or -1 (out of memory or a reply that does not frame). */
int mc_merge(struct redis_pool *rp, struct redis_msg *p);

#endif
