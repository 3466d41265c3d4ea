/* redis_cmd: the Redis command table. One row per command: its arity and
 * where its keys are, and how legate handles it. The table drives parsing
 * checks and routing; nothing else in legate knows command names. */
#ifndef LEGATE_REDIS_CMD_H
#define LEGATE_REDIS_CMD_H

#include <stddef.h>
#include <stdint.h>

enum redis_kind {
    REDIS_KEYED,        /* keys at first..last/step, counted by `numkeys`, or named
                         * after a STORE option; all must be on one server */
    REDIS_LOCAL,        /* answered by legate itself */
    REDIS_SPLIT_VALUES, /* MGET: one fragment per server, values merged in key order */
    REDIS_SPLIT_SUM,    /* DEL, UNLINK, EXISTS, TOUCH: integer replies summed */
    REDIS_SPLIT_PAIRS,  /* MSET: key/value pairs per server, +OK */
    REDIS_ANY,          /* no key: any one server answers (COMMAND, INFO) */
    REDIS_UNSUPPORTED,  /* blocking, pub/sub, transactions, admin, cross-shard scans */
};

enum redis_local {
    REDIS_LOCAL_NONE,
    REDIS_LOCAL_PING,
    REDIS_LOCAL_ECHO,
    REDIS_LOCAL_QUIT,
    REDIS_LOCAL_SELECT,
    REDIS_LOCAL_AUTH,
    REDIS_LOCAL_HELLO,
};

struct redis_cmd {
    const char *name;   /* upper case */
    int arity;          /* as Redis: n exact, -n at least n (name included) */
    uint8_t kind;       /* enum redis_kind */
    uint8_t local;      /* enum redis_local */
    int8_t first;       /* first key argument, 0 if none */
    int8_t last;        /* last key argument, negative counts from the end */
    int8_t step;
    int8_t numkeys;     /* argument holding how many keys follow it (EVAL,
                         * ZUNIONSTORE, LMPOP...), 0 if none */
    int8_t options;     /* first optional argument of SORT or GEORADIUS: a
                         * STORE or STOREDIST there names a key, BY and GET
                         * patterns name keys; 0 if none */
};

/* The row for an upper-case command name, or NULL if legate does not know
 * it (then it is unsupported). */
const struct redis_cmd *redis_cmd_find(const char *name);

/* Whether `nargs` arguments (name included) satisfy the row's arity. */
static inline int redis_cmd_arity_ok(const struct redis_cmd *c, uint32_t nargs)
{
    return c->arity >= 0 ? nargs == (uint32_t)c->arity : nargs >= (uint32_t)(-c->arity);
}

/* The table itself, sorted by name (for tests). */
const struct redis_cmd *redis_cmd_table(size_t *n);

#endif
