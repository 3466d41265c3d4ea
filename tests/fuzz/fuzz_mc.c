/* libFuzzer target: the memcached request and reply parsers, whole versus
 * cut into uneven pieces; any disagreement, or a token outside the request
 * it belongs to, traps. The first byte picks the parser. */
#include "proto/mc_proto.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_MSGS = 64 };

struct outcome {
    int rc[MAX_MSGS];
    uint64_t size[MAX_MSGS];
    uint32_t detail[MAX_MSGS]; /* tokens and kind, or values and is_error */
    int n;
};

static const struct mc_limits fuzz_limits = {
    .max_tokens = 64, .max_data = 1024, .max_request = 4096, .max_line = 512,
};

static void check_tokens(const struct mc_req *r)
{
    for (uint32_t t = 0; t < r->ntok; t++) {
        if (r->tok[t].off + r->tok[t].len > r->line || r->tok[t].len == 0) {
            __builtin_trap();
        }
    }
    if (r->first_key + r->nkeys > r->ntok || r->size < r->line) {
        __builtin_trap();
    }
}

static void run(const uint8_t *data, size_t size, size_t piece, bool reply, struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    struct mc_req q;
    mc_req_init(&q);
    size_t off = 0;
    while (off < size && o->n < MAX_MSGS) {
        struct mc_rsp r;
        mc_rsp_init(&r);
        mc_req_reset(&q);
        int rc = MC_AGAIN;
        while (off < size && rc == MC_AGAIN) {
            size_t n = piece == 0 || size - off < piece ? size - off : piece;
            size_t used;
            rc = reply ? mc_rsp_feed(&r, data + off, n, &used)
                       : mc_req_feed(&q, data + off, n, &used, &fuzz_limits);
            if (used > n) {
                __builtin_trap();
            }
            off += used;
            piece = piece ? piece % 7 + 1 : 0;
        }
        o->rc[o->n] = rc;
        o->size[o->n] = reply ? r.size : q.size;
        o->detail[o->n] = reply ? r.values * 2 + r.is_error : q.ntok * 8 + (uint32_t)q.kind;
        if (!reply && rc == MC_DONE) {
            check_tokens(&q);
        }
        o->n++;
        if (rc != MC_DONE) {
            break;
        }
    }
    mc_req_free(&q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) {
        return 0;
    }
    bool reply = data[0] & 1;
    struct outcome whole, cut;
    run(data + 1, size - 1, 0, reply, &whole);
    run(data + 1, size - 1, (size_t)data[0] % 5 + 1, reply, &cut);
    if (whole.n != cut.n) {
        __builtin_trap();
    }
    for (int i = 0; i < whole.n; i++) {
        if (whole.rc[i] != cut.rc[i] ||
            (whole.rc[i] == MC_DONE &&
             (whole.size[i] != cut.size[i] || whole.detail[i] != cut.detail[i]))) {
            __builtin_trap();
        }
    }
    return 0;
}
