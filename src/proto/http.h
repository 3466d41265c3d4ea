/* http: the HTTP/1.1 proxy with experiment splitting.
 *
 * One request at a time per client connection (pipelined requests wait in
 * the client's buffer and are answered in order):
 *
 *   client ─read─▶ in ─llhttp─▶ head ─▶ arm (http_split) ─▶ upstream conn
 *                               body ─▶ up queue (re-chunked) ──write──▶
 *   client ◀─write─ out ◀─ response head (rewritten) + body ◀─read─ upstream
 *
 * Heads are rebuilt, never copied through: hop-by-hop headers and the ones
 * Connection names are dropped, framing headers are written for the body
 * as legate sends it (chunked bodies are re-chunked, so the upstream only
 * ever sees framing legate produced). Bodies stream with bounded queues:
 * a full queue stops reading its source.
 *
 * Upstream connections are kept per worker and server for reuse when the
 * exchange ended cleanly (keep-alive on both messages, request fully sent,
 * response framed); any framing error or early response discards them.
 * Errors before the response head went out become 502 (refused, reset,
 * bad framing) or 504 (timeout); after it, the client connection closes.
 * An idempotent request whose connect fails is retried once on another
 * server of its arm. */
#ifndef LEGATE_HTTP_H
#define LEGATE_HTTP_H

struct pool;
struct handoff_item;

int http_pool_init(struct pool *p);
void http_pool_fini(struct pool *p);
/* The pool's server health moved (pool.h): arms stop or resume using them. */
void http_pool_sync(struct pool *p);

/* Take the accepted client `fd`. Returns 0, or -1 (the caller closes). */
int http_client_start(struct pool *p, int fd);

/* The same for a keep-alive client a retiring generation handed over
 * between two requests (handoff.h). */
int http_client_adopt(struct pool *p, const struct handoff_item *it);

#endif
