/* libFuzzer target: the memcached request and reply parsers, whole versus
 * cut into uneven pieces; any disagreement, or a token outside the request
 * it belongs to, traps. The first byte picks the parser (bit 0: replies)
 * and, for replies, whether each is read up to an MN (bit 1: until_mn, as
 * after a quiet meta request). A base64 meta key is decoded too. */
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

/* A meta request's base64 key decodes to at most 3 bytes per 4. */
static void check_b64_key(const struct mc_req *r, const uint8_t *req)
{
    if (r->kind != MC_META || !r->b64) {
        return;
    }
    const struct mc_tok *t = &r->tok[r->first_key];
    uint8_t out[MC_KEY_MAX];
    size_t n = 0;
    if (mc_b64_decode(req + t->off, t->len, out, &n) == 0 && n > t->len / 4 * 3) {
        __builtin_trap();
    }
}

static void run(const uint8_t *data, size_t size, size_t piece, bool reply, bool until_mn,
                struct outcome *o)
{
    memset(o, 0, sizeof(*o));
    struct mc_req q;
    mc_req_init(&q);
    size_t off = 0;
    while (off < size && o->n < MAX_MSGS) {
        struct mc_rsp r;
        mc_rsp_init(&r);
        r.until_mn = until_mn;
        mc_req_reset(&q);
        size_t start = off;
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
        o->detail[o->n] = reply ? r.values * 4 + (uint32_t)r.is_error * 2 + (r.tail != 0)
                                : q.ntok * 16 + (uint32_t)q.kind;
        if (reply && rc == MC_DONE && (r.tail > r.size || (r.tail != 0) != until_mn)) {
            __builtin_trap();
        }
        if (!reply && rc == MC_DONE) {
            check_tokens(&q);
            check_b64_key(&q, data + start);
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
    bool reply = data[0] & 1, until_mn = data[0] & 2;
    struct outcome whole, cut;
    run(data + 1, size - 1, 0, reply, until_mn, &whole);
    run(data + 1, size - 1, (size_t)data[0] % 5 + 1, reply, until_mn, &cut);
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
