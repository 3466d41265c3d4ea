/* san: whether this build runs under AddressSanitizer.
 *
 * LEGATE_ASAN is 1 in a sanitizer build, else 0. Code that manages memory
 * behind the allocator's back (slabs, malloc_trim) steps aside then, so the
 * sanitizer sees every object and owns the heap. */
#ifndef LEGATE_SAN_H
#define LEGATE_SAN_H

#if defined(__SANITIZE_ADDRESS__)
#define LEGATE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define LEGATE_ASAN 1
#endif
#endif
#ifndef LEGATE_ASAN
#define LEGATE_ASAN 0
#endif

#endif
