/* disc_file: the endpoints file of `discovery: { file: PATH }` — one server
 * per line in the `servers:` format ("host:port[:weight] [name]", an
 * optional "- " before it), blank lines and '#' comments ignored. A name
 * becomes the server's ketama identity, as in the config.
 *
 * Limits: DISC_FILE_MAX bytes, DISC_FILE_MAX_LINE bytes per line,
 * DISC_FILE_MAX_ENDPOINTS servers; no NUL bytes. Addresses only (IPv4,
 * [IPv6] or a unix socket path): a name would block while it resolves. */
#ifndef LEGATE_DISC_FILE_H
#define LEGATE_DISC_FILE_H

#include "server.h"

#include <stddef.h>

enum {
    DISC_FILE_MAX = 1024 * 1024,
    DISC_FILE_MAX_LINE = 1024,
    DISC_FILE_MAX_ENDPOINTS = 4096,
};

/* Parse text[0, len). Returns 0 with a malloc'd array in *eps (*n entries,
 * possibly none), or -1 with "line N: reason" in err. */
int disc_file_parse(const char *text, size_t len, struct server_ep **eps, size_t *n, char *err,
                    size_t errlen);

#endif
