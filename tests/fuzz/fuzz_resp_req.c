/* libFuzzer target: the RESP request parser. Parses the input as a stream
 * of pipelined requests three times — whole (where the whole-bulk fast path
 * runs), cut into uneven pieces, and one byte at a time (the byte-wise
 * machine alone) — and traps if they disagree on any result or argument,
 * or an argument lies outside its request. */
#include "proto/resp.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_MSGS = 64, MAX_ARGS_KEPT = 64 };

struct outcome {
    int rc[MAX_MSGS];
    uint64_t size[MAX_MSGS];
    uint32_t nargs[MAX_MSGS];
    char name[MAX_MSGS][RESP_NAME_MAX + 1];
    uint64_t argsum[MAX_MSGS]; /* a digest of every (off, len, hdr) */
    int n;
};

static const struct resp_limits fuzz_limits = {
    .max_args = 64, .max_bulk = 1024, .max_request = 4096, .max_inline = 256,
};

/* Feed `piece` bytes at a time (0: all); `vary` changes the cut as it goes. */
static void run(const uint8_t *data, size_t size, size_t piece, int vary, struct outcome *o)
{
    struct resp_req r;
    resp_req_init(&r);
    memset(o, 0, sizeof(*o));
    size_t off = 0;
    while (off < size && o->n < MAX_MSGS) {
        int rc = RESP_AGAIN;
        while (off < size && rc == RESP_AGAIN) {
            size_t n = piece == 0 || size - off < piece ? size - off : piece;
            size_t used;
            rc = resp_req_feed(&r, data + off, n, &used, &fuzz_limits);
            if (used > n) {
                __builtin_trap();
            }
            off += used;
            if (vary) {
                piece = piece % 7 + 1;
            }
        }
        o->rc[o->n] = rc;
        o->size[o->n] = r.size;
        o->nargs[o->n] = r.nargs;
        memcpy(o->name[o->n], r.name, sizeof(r.name));
        if (rc == RESP_DONE) {
            uint64_t sum = 0;
            for (uint32_t i = 0; i < r.nargs; i++) {
                if (r.args[i].off + r.args[i].len > r.size || r.args[i].hdr > r.args[i].off) {
                    __builtin_trap();
                }
                sum = sum * 1000003u + r.args[i].off * 31u + r.args[i].len * 7u + r.args[i].hdr;
            }
            o->argsum[o->n] = sum;
        }
        o->n++;
        if (rc != RESP_DONE) {
            break;
        }
        resp_req_reset(&r);
    }
    resp_req_free(&r);
}

static void same(const struct outcome *a, const struct outcome *b)
{
    if (a->n != b->n) {
        __builtin_trap();
    }
    for (int i = 0; i < a->n; i++) {
        if (a->rc[i] != b->rc[i] ||
            (a->rc[i] == RESP_DONE &&
             (a->size[i] != b->size[i] || a->nargs[i] != b->nargs[i] ||
              a->argsum[i] != b->argsum[i] ||
              memcmp(a->name[i], b->name[i], sizeof(a->name[i])) != 0))) {
            __builtin_trap();
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct outcome whole, cut, bytewise;
    run(data, size, 0, 0, &whole);
    run(data, size, size > 0 ? (size_t)data[0] % 5 + 1 : 1, 1, &cut);
    run(data, size, 1, 0, &bytewise);
    same(&whole, &cut);
    same(&whole, &bytewise);
    return 0;
}
