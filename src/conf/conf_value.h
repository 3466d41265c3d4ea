/* conf_value: parsers for the scalar values of a config (numbers,
 * booleans, durations, names from a table, server lines). Pure functions:
 * each returns 0, or -1 with a short reason in `why` (a static string). */
#ifndef LEGATE_CONF_VALUE_H
#define LEGATE_CONF_VALUE_H

#include "conf.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { CONF_MAX_DURATION_MS = 7 * 24 * 3600 * 1000 }; /* a week */

/* A decimal integer in [min, max]. */
int conf_value_uint(const char *s, uint64_t min, uint64_t max, uint64_t *out,
                    const char **why);

/* A possibly negative integer in [min, max]. */
int conf_value_int(const char *s, int64_t min, int64_t max, int64_t *out, const char **why);

/* A size in bytes: an integer, or an integer with kb, mb or gb (powers of
 * 1024), at most `max`. */
int conf_value_size(const char *s, uint64_t max, uint64_t *out, const char **why);

/* true/false (also yes/no). */
int conf_value_bool(const char *s, bool *out, const char **why);

/* Milliseconds as an integer, or an integer with a unit: ms, s, m, h. */
int conf_value_duration(const char *s, uint64_t *ms, const char **why);

/* Index of `s` in the NULL-terminated `names`. */
int conf_value_enum(const char *s, const char *const *names, unsigned *out,
                    const char **why);

/* Octal permission bits such as 0660. */
int conf_value_mode(const char *s, unsigned *out, const char **why);

/* "host:port[:weight] [name]" into `out` (spec and name allocated; free
 * with conf_server_clear). `why` may point to `buf` (formatted reason). */
int conf_value_server(const char *s, struct conf_server *out,
                      char *buf, size_t buflen, const char **why);

void conf_server_clear(struct conf_server *s);

#endif
