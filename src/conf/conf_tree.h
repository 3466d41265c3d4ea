/* conf_tree: a YAML document read into a small tree whose every node
 * remembers its line and column, so validation can name file:line:column.
 *
 * Only what a config needs is accepted: mappings, sequences and scalars.
 * Anchors, aliases, tags and multiple documents are refused, and the size
 * of the input, the nesting depth and the node count are limited. */
#ifndef LEGATE_CONF_TREE_H
#define LEGATE_CONF_TREE_H

#include <stdbool.h>
#include <stddef.h>

enum {
    CONF_MAX_FILE = 4 * 1024 * 1024,
    CONF_MAX_DEPTH = 16,
    CONF_MAX_NODES = 200000,
    CONF_MAX_KEYS = 4096, /* per mapping: keeps the duplicate check cheap */
    CONF_ERR_LEN = 512,
};

enum conf_node_kind { CONF_SCALAR, CONF_SEQ, CONF_MAP };

struct conf_node {
    enum conf_node_kind kind;
    int line; /* 1-based */
    int col;  /* 1-based */
    bool quoted;  /* scalar was written in quotes */
    char *value;  /* scalar text (NUL-terminated) */
    struct conf_node **items; /* seq: values; map: key, value, key, value... */
    size_t n;     /* number of entries in `items` */
};

/* Parse `len` bytes of YAML. On success returns 0 and the root in *root
 * (an empty document gives an empty map). On failure returns -1 and writes
 * "file:line:column: reason" into err (file is `name`). */
int conf_tree_parse(const char *name, const char *data, size_t len,
                    struct conf_node **root, char *err, size_t errlen);

void conf_tree_free(struct conf_node *node);

/* Map lookup by key (NULL when absent or `map` is not a map). */
const struct conf_node *conf_tree_get(const struct conf_node *map, const char *key);

#endif
