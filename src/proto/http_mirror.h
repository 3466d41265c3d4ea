/* http_mirror: shadow copies of a share of an http pool's requests.
 *
 * A mirrored request gets its own connection to one of the mirror's
 * servers (chosen at random) and the same rewritten head (with
 * Connection: close) and body bytes as the primary; the response is read
 * and thrown away, counted in the pool's "mirror" stats row. The mirror
 * never holds up the primary: its queue is bounded (when the shadow reads
 * too slowly the copy is dropped and counted), its failures are only
 * counted, and it lives on by itself once the request is complete. */
#ifndef LEGATE_HTTP_MIRROR_H
#define LEGATE_HTTP_MIRROR_H

#include "http_head.h"

#include <stdbool.h>
#include <stddef.h>

struct pool;
struct http_mirror;

/* Maybe start a copy of the request with head `h` (written with `o`):
 * `roll` is a random number deciding against mirror_percent. The copy is
 * stored in *slot, which it sets to NULL itself if it ends early (so the
 * caller never feeds a finished copy). Returns it, or NULL when this
 * request is not mirrored or the copy could not start (counted). */
struct http_mirror *http_mirror_start(struct pool *p, const struct http_head *h,
                                      const struct http_out *o, uint64_t roll,
                                      struct http_mirror **slot);

/* More request body, framed as sent upstream. Returns false when the copy
 * was dropped (the slot is then NULL). */
bool http_mirror_body(struct http_mirror *m, const char *data, size_t n);

/* The request is complete: the mirror finishes on its own and forgets
 * the slot. */
void http_mirror_detach(struct http_mirror *m);

/* The client went away mid-request: drop the copy. */
void http_mirror_abort(struct http_mirror *m);

#endif
