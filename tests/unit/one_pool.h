/* A configuration of one pool with one server, for unit tests of what
 * reads a config (stats, admin). Fill with one_pool_init; nothing to free. */
#ifndef LEGATE_TEST_ONE_POOL_H
#define LEGATE_TEST_ONE_POOL_H

#include "conf/conf.h"

#include <string.h>

struct one_pool {
    struct conf_server srv;
    struct conf_pool pool;
    struct conf cf;
};

/* Pool "alpha" of protocol `proto` with one server whose ketama identity
 * is `ident`. */
static inline void one_pool_init(struct one_pool *o, char *ident, enum conf_proto proto)
{
    memset(o, 0, sizeof(*o));
    o->srv.ident = ident;
    o->pool.name = (char *)"alpha";
    o->pool.proto = proto;
    o->pool.servers = &o->srv;
    o->pool.nservers = 1;
    o->cf.pools = &o->pool;
    o->cf.npools = 1;
}

#endif
