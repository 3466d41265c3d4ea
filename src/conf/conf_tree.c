/* conf_tree: YAML (libyaml events) to a position-tagged tree (see conf_tree.h). */
#include "conf_tree.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

struct conf_tree_ctx {
    yaml_parser_t parser;
    const char *name;
    char *err;
    size_t errlen;
    size_t nodes;
};

static int conf_tree_fail(struct conf_tree_ctx *cx, const yaml_mark_t *m,
                          const char *what)
{
    snprintf(cx->err, cx->errlen, "%s:%zu:%zu: %s", cx->name,
             m->line + 1, m->column + 1, what);
    return -1;
}

static struct conf_node *conf_node_new(struct conf_tree_ctx *cx,
                                       enum conf_node_kind kind,
                                       const yaml_mark_t *m)
{
    if (++cx->nodes > CONF_MAX_NODES) {
        conf_tree_fail(cx, m, "config has too many entries");
        return NULL;
    }
    struct conf_node *n = calloc(1, sizeof(*n));
    if (n == NULL) {
        conf_tree_fail(cx, m, "out of memory");
        return NULL;
    }
    n->kind = kind;
    n->line = (int)m->line + 1;
    n->col = (int)m->column + 1;
    return n;
}

static int conf_node_push(struct conf_tree_ctx *cx, struct conf_node *parent,
                          struct conf_node *child, const yaml_mark_t *m)
{
    if ((parent->n & (parent->n - 1)) == 0) { /* 0, 1, 2, 4, 8...: grow */
        size_t cap = parent->n ? parent->n * 2 : 4;
        struct conf_node **items = realloc(parent->items, cap * sizeof(*items));
        if (items == NULL) {
            return conf_tree_fail(cx, m, "out of memory");
        }
        parent->items = items;
    }
    parent->items[parent->n++] = child;
    return 0;
}

static int conf_tree_next(struct conf_tree_ctx *cx, yaml_event_t *ev)
{
    if (!yaml_parser_parse(&cx->parser, ev)) {
        char what[256];
        snprintf(what, sizeof(what), "YAML syntax error: %s",
                 cx->parser.problem ? cx->parser.problem : "unknown");
        return conf_tree_fail(cx, &cx->parser.problem_mark, what);
    }
    return 0;
}

static int conf_tree_node(struct conf_tree_ctx *cx, yaml_event_t *ev, int depth,
                          struct conf_node **out);

/* Read children until the end event of the collection `parent`. */
static int conf_tree_children(struct conf_tree_ctx *cx, struct conf_node *parent,
                              yaml_event_type_t end, int depth)
{
    for (;;) {
        yaml_event_t ev;
        if (conf_tree_next(cx, &ev) == -1) {
            return -1;
        }
        if (ev.type == end) {
            yaml_event_delete(&ev);
            break;
        }
        struct conf_node *child = NULL;
        yaml_mark_t mark = ev.start_mark;
        int rc = conf_tree_node(cx, &ev, depth + 1, &child);
        yaml_event_delete(&ev);
        if (rc == -1) {
            return -1;
        }
        if (parent->kind == CONF_MAP && (parent->n % 2) == 0) {
            if (parent->n / 2 >= CONF_MAX_KEYS) {
                conf_tree_free(child);
                return conf_tree_fail(cx, &mark, "too many keys in one mapping");
            }
            if (child->kind != CONF_SCALAR) {
                conf_tree_free(child);
                return conf_tree_fail(cx, &mark, "a key must be a plain scalar");
            }
            for (size_t i = 0; i < parent->n; i += 2) {
                if (strcmp(parent->items[i]->value, child->value) == 0) {
                    char what[300];
                    snprintf(what, sizeof(what), "duplicate key '%.200s' (first at line %d)",
                             child->value, parent->items[i]->line);
                    conf_tree_free(child);
                    return conf_tree_fail(cx, &mark, what);
                }
            }
        }
        if (conf_node_push(cx, parent, child, &mark) == -1) {
            conf_tree_free(child);
            return -1;
        }
    }
    return 0;
}

static int conf_tree_node(struct conf_tree_ctx *cx, yaml_event_t *ev, int depth,
                          struct conf_node **out)
{
    if (depth > CONF_MAX_DEPTH) {
        return conf_tree_fail(cx, &ev->start_mark, "config nested too deeply");
    }
    switch (ev->type) {
    case YAML_ALIAS_EVENT:
        return conf_tree_fail(cx, &ev->start_mark, "YAML aliases are not allowed");
    case YAML_SCALAR_EVENT: {
        if (ev->data.scalar.anchor != NULL) {
            return conf_tree_fail(cx, &ev->start_mark, "YAML anchors are not allowed");
        }
        struct conf_node *n = conf_node_new(cx, CONF_SCALAR, &ev->start_mark);
        if (n == NULL) {
            return -1;
        }
        n->value = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        n->quoted = ev->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        if (n->value == NULL || strlen(n->value) != ev->data.scalar.length) {
            const char *why = n->value ? "NUL byte in a value" : "out of memory";
            conf_tree_free(n);
            return conf_tree_fail(cx, &ev->start_mark, why);
        }
        *out = n;
        return 0;
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool seq = ev->type == YAML_SEQUENCE_START_EVENT;
        const yaml_char_t *anchor = seq ? ev->data.sequence_start.anchor
                                        : ev->data.mapping_start.anchor;
        if (anchor != NULL) {
            return conf_tree_fail(cx, &ev->start_mark, "YAML anchors are not allowed");
        }
        struct conf_node *n = conf_node_new(cx, seq ? CONF_SEQ : CONF_MAP, &ev->start_mark);
        if (n == NULL) {
            return -1;
        }
        if (conf_tree_children(cx, n, seq ? YAML_SEQUENCE_END_EVENT
                                          : YAML_MAPPING_END_EVENT, depth) == -1) {
            conf_tree_free(n);
            return -1;
        }
        *out = n;
        return 0;
    }
    default:
        return conf_tree_fail(cx, &ev->start_mark, "unexpected YAML event");
    }
}

int conf_tree_parse(const char *name, const char *data, size_t len,
                    struct conf_node **root, char *err, size_t errlen)
{
    struct conf_tree_ctx cx = { .name = name, .err = err, .errlen = errlen };
    yaml_mark_t start = { 0, 0, 0 };
    *root = NULL;
    if (len > CONF_MAX_FILE) {
        return conf_tree_fail(&cx, &start, "config file larger than 4 MiB");
    }
    if (!yaml_parser_initialize(&cx.parser)) {
        return conf_tree_fail(&cx, &start, "out of memory");
    }
    yaml_parser_set_input_string(&cx.parser, (const unsigned char *)data, len);

    int rc = -1;
    int docs = 0;
    struct conf_node *doc = NULL;
    for (;;) {
        yaml_event_t ev;
        if (conf_tree_next(&cx, &ev) == -1) {
            break;
        }
        yaml_event_type_t type = ev.type;
        if (type == YAML_STREAM_END_EVENT) {
            yaml_event_delete(&ev);
            rc = 0;
            break;
        }
        if (type == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
            conf_tree_fail(&cx, &ev.start_mark, "only one YAML document is allowed");
            yaml_event_delete(&ev);
            break;
        }
        if (type == YAML_STREAM_START_EVENT || type == YAML_DOCUMENT_START_EVENT ||
            type == YAML_DOCUMENT_END_EVENT) {
            yaml_event_delete(&ev);
            continue;
        }
        int r = conf_tree_node(&cx, &ev, 1, &doc);
        yaml_event_delete(&ev);
        if (r == -1) {
            break;
        }
    }
    yaml_parser_delete(&cx.parser);
    if (rc == -1) {
        conf_tree_free(doc);
        return -1;
    }
    if (doc == NULL || (doc->kind == CONF_SCALAR && doc->value[0] == '\0')) {
        conf_tree_free(doc);
        doc = conf_node_new(&cx, CONF_MAP, &start);
        if (doc == NULL) {
            return -1;
        }
    }
    *root = doc;
    return 0;
}

void conf_tree_free(struct conf_node *node)
{
    if (node == NULL) {
        return;
    }
    for (size_t i = 0; i < node->n; i++) {
        conf_tree_free(node->items[i]);
    }
    free(node->items);
    free(node->value);
    free(node);
}

const struct conf_node *conf_tree_get(const struct conf_node *map, const char *key)
{
    if (map == NULL || map->kind != CONF_MAP) {
        return NULL;
    }
    for (size_t i = 0; i + 1 < map->n; i += 2) {
        if (strcmp(map->items[i]->value, key) == 0) {
            return map->items[i + 1];
        }
    }
    return NULL;
}
