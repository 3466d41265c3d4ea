/* md5: the MD5 digest (RFC 1321), for twemproxy-compatible `md5` key
 * hashing and ketama points. Not for security. */
#ifndef LEGATE_MD5_H
#define LEGATE_MD5_H

#include <stddef.h>
#include <stdint.h>

/* Write the 16-byte digest of `len` bytes at `data` into `out`. */
void md5_digest(const void *data, size_t len, uint8_t out[16]);

#endif
