/* Unit tests for buf: pooled chunks and queues. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/buf.h"

#include <errno.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include "failing_malloc.h"

static void test_pool_reuses_and_caps_spares(void **state)
{
    (void)state;
    struct buf_pool pool;
    buf_pool_init(&pool, 512, 2);
    struct buf *a = buf_get(&pool), *b = buf_get(&pool), *c = buf_get(&pool);
    assert_non_null(a);
    assert_int_equal(pool.nused, 3);
    assert_int_equal(buf_space(a), 512);
    buf_put(&pool, a);
    buf_put(&pool, b);
    buf_put(&pool, c); /* over max_free: freed, not kept */
    assert_int_equal(pool.nfree, 2);
    assert_int_equal(pool.nused, 0);
    struct buf *d = buf_get(&pool);
    assert_true(d == b || d == a); /* reused */
    buf_put(&pool, d);
    buf_put(&pool, NULL); /* NULL-safe */
    buf_pool_drain(&pool);
    assert_int_equal(pool.nfree, 0);
}

static void count_changes(void *arg)
{
    (*(int *)arg)++;
}

/* The owner hears of every chunk the pool had to allocate or free, never of
 * one it reused or kept as a spare. */
static void test_pool_reports_heap_changes(void **state)
{
    (void)state;
    struct buf_pool pool;
    buf_pool_init(&pool, 512, 2);
    int calls = 0;
    pool.changed = count_changes;
    pool.changed_arg = &calls;
    struct buf *a = buf_get(&pool), *b = buf_get(&pool), *c = buf_get(&pool);
    assert_int_equal(calls, 3);
    buf_put(&pool, a);
    buf_put(&pool, b);
    assert_int_equal(calls, 3);
    buf_put(&pool, c); /* two kept as spares, one freed: the heap changed */
    assert_int_equal(calls, 4);
    a = buf_get(&pool);
    b = buf_get(&pool);
    assert_int_equal(calls, 4);
    c = buf_get(&pool);
    assert_int_equal(calls, 5);
    buf_put(&pool, a);
    buf_put(&pool, b);
    buf_put(&pool, c);
    buf_pool_drain(&pool);
}

static void test_queue_append_spans_chunks(void **state)
{
    (void)state;
    struct buf_pool pool;
    struct buf_queue q;
    buf_pool_init(&pool, 512, 8);
    buf_queue_init(&q);
    uint8_t data[1500];
    for (size_t i = 0; i < sizeof(data); i++) {
        data[i] = (uint8_t)i;
    }
    assert_int_equal(buf_queue_append(&q, &pool, data, sizeof(data)), 0);
    assert_int_equal(q.bytes, 1500);
    assert_int_equal(pool.nused, 3);
    struct iovec iov[8];
    int n = buf_queue_iov(&q, iov, 8);
    assert_int_equal(n, 3);
    assert_int_equal(iov[0].iov_len + iov[1].iov_len + iov[2].iov_len, 1500);
    assert_memory_equal(iov[1].iov_base, data + 512, 512);
    /* consume across a chunk boundary */
    buf_queue_consume(&q, &pool, 700);
    assert_int_equal(q.bytes, 800);
    assert_int_equal(pool.nused, 2);
    n = buf_queue_iov(&q, iov, 8);
    assert_memory_equal(iov[0].iov_base, data + 700, iov[0].iov_len);
    /* consuming everything leaves no chunk held */
    buf_queue_consume(&q, &pool, 800);
    assert_int_equal(q.bytes, 0);
    assert_null(q.head);
    assert_int_equal(pool.nused, 0);
    buf_pool_drain(&pool);
}

static void test_queue_read_respects_limit(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    uint8_t data[4096];
    memset(data, 'x', sizeof(data));
    assert_int_equal(write(sv[1], data, sizeof(data)), (ssize_t)sizeof(data));
    struct buf_pool pool;
    struct buf_queue q;
    buf_pool_init(&pool, 512, 8);
    buf_queue_init(&q);
    int drained;
    ssize_t r = buf_queue_read_fd(&q, &pool, sv[0], 1000, &drained);
    assert_int_equal(r, 1000);
    assert_int_equal(q.bytes, 1000);
    assert_false(drained);
    /* at the limit: nothing read, -2 */
    assert_int_equal(buf_queue_read_fd(&q, &pool, sv[0], 1000, &drained), -2);
    /* write it out to the peer and read the rest */
    assert_int_equal(buf_queue_write_fd(&q, &pool, sv[0]), 1000);
    assert_int_equal(q.bytes, 0);
    r = buf_queue_read_fd(&q, &pool, sv[0], 1 << 20, &drained);
    assert_int_equal(r, 3096);
    assert_true(drained);
    buf_queue_clear(&q, &pool);
    /* nothing pending: -2 and no chunk kept */
    assert_int_equal(buf_queue_read_fd(&q, &pool, sv[0], 1 << 20, &drained), -2);
    assert_true(drained);
    assert_int_equal(pool.nused, 0);
    /* EOF (drain what we echoed first: unread data would turn it into a reset) */
    uint8_t sink[1000];
    assert_int_equal(read(sv[1], sink, sizeof(sink)), 1000);
    close(sv[1]);
    assert_int_equal(buf_queue_read_fd(&q, &pool, sv[0], 1 << 20, &drained), 0);
    close(sv[0]);
    buf_pool_drain(&pool);
}

/* A small read takes one chunk from the pool, not a batch of them; a large
 * one still arrives in one call, over many chunks. */
static void test_queue_read_takes_chunks_as_needed(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct buf_pool pool;
    struct buf_queue q;
    buf_pool_init(&pool, 512, 64);
    buf_queue_init(&q);
    int got = 0;
    pool.changed = count_changes;
    pool.changed_arg = &got;
    int drained;
    assert_int_equal(write(sv[1], "PING\r\n", 6), 6);
    assert_int_equal(buf_queue_read_fd(&q, &pool, sv[0], 1 << 20, &drained), 6);
    assert_int_equal(got, 1); /* one chunk allocated, none set aside */
    assert_int_equal(pool.nfree, 0);
    buf_queue_clear(&q, &pool);
    uint8_t data[8000];
    memset(data, 'y', sizeof(data));
    assert_int_equal(write(sv[1], data, sizeof(data)), (ssize_t)sizeof(data));
    assert_int_equal(buf_queue_read_fd(&q, &pool, sv[0], 1 << 20, &drained), 8000);
    assert_true(drained);
    assert_int_equal(pool.nused, (8000 + 511) / 512);
    buf_queue_clear(&q, &pool);
    close(sv[0]);
    close(sv[1]);
    buf_pool_drain(&pool);
}

static void test_queue_write_error(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    close(sv[1]);
    struct buf_pool pool;
    struct buf_queue q;
    buf_pool_init(&pool, 512, 8);
    buf_queue_init(&q);
    assert_int_equal(buf_queue_append(&q, &pool, "hello", 5), 0);
    ssize_t w = buf_queue_write_fd(&q, &pool, sv[0]);
    assert_int_equal(w, -1);
    assert_int_equal(errno, EPIPE);
    assert_int_equal(q.bytes, 5); /* nothing lost from the queue */
    buf_queue_clear(&q, &pool);
    close(sv[0]);
    buf_pool_drain(&pool);
}

/* Copy q's bytes out (at most `cap`); returns how many. */
static size_t queue_bytes(const struct buf_queue *q, char *out, size_t cap)
{
    size_t n = q->bytes < cap ? q->bytes : cap;
    buf_queue_peek(q, 0, out, n);
    return n;
}

/* Check that q holds exactly `want` (len bytes) and that the pool lends
 * just the chunks those bytes need. */
static void expect_queue(const struct buf_queue *q, const struct buf_pool *pool,
                         const char *want, size_t len)
{
    char got[4096];
    assert_int_equal(queue_bytes(q, got, sizeof(got)), len);
    assert_memory_equal(got, want, len);
    size_t chunks = 0;
    for (const struct buf *b = q->head; b != NULL; b = b->next) {
        chunks++;
        if (b->next == NULL) {
            assert_ptr_equal(b, q->tail);
        }
    }
    assert_int_equal(pool->nused, chunks);
}

static void test_queue_append_fails_whole(void **state)
{
    (void)state;
    struct buf_pool pool;
    buf_pool_init(&pool, 512, 0); /* no spares: every chunk is a malloc */
    char big[2000], before[100];
    memset(big, 'b', sizeof(big));
    memset(before, 'a', sizeof(before));

    /* Into an empty queue: nothing stays behind. */
    struct buf_queue q;
    buf_queue_init(&q);
    mallocs_left = 2; /* 2000 bytes need four chunks */
    assert_int_equal(buf_queue_append(&q, &pool, big, sizeof(big)), -1);
    assert_null(q.head);
    assert_null(q.tail);
    expect_queue(&q, &pool, "", 0);

    /* Behind queued bytes: those stay, the tail's room is given back. */
    mallocs_left = -1;
    assert_int_equal(buf_queue_append(&q, &pool, before, sizeof(before)), 0);
    mallocs_left = 1;
    assert_int_equal(buf_queue_append(&q, &pool, big, sizeof(big)), -1);
    expect_queue(&q, &pool, before, sizeof(before));
    mallocs_left = -1;
    assert_int_equal(buf_queue_append(&q, &pool, "z", 1), 0);
    char want[101];
    memcpy(want, before, sizeof(before));
    want[100] = 'z';
    expect_queue(&q, &pool, want, sizeof(want));

    /* A range from another queue: all of it or none of it. */
    struct buf_queue src;
    buf_queue_init(&src);
    assert_int_equal(buf_queue_append(&src, &pool, big, sizeof(big)), 0);
    size_t src_chunks = pool.nused - 1; /* q holds one */
    mallocs_left = 2;
    assert_int_equal(buf_queue_append_range(&q, &pool, &src, 10, 1500), -1);
    assert_int_equal(pool.nused, 1 + src_chunks);
    mallocs_left = -1;
    char got[4096];
    assert_int_equal(queue_bytes(&q, got, sizeof(got)), sizeof(want));
    assert_memory_equal(got, want, sizeof(want));
    assert_int_equal(buf_queue_append_range(&q, &pool, &src, 10, 1500), 0);
    assert_int_equal(q.bytes, sizeof(want) + 1500);
    buf_queue_clear(&q, &pool);
    buf_queue_clear(&src, &pool);
    assert_int_equal(pool.nused, 0);
    buf_pool_drain(&pool);
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pool_reuses_and_caps_spares),
        cmocka_unit_test(test_pool_reports_heap_changes),
        cmocka_unit_test(test_queue_append_spans_chunks),
        cmocka_unit_test(test_queue_read_respects_limit),
        cmocka_unit_test(test_queue_read_takes_chunks_as_needed),
        cmocka_unit_test(test_queue_write_error),
        cmocka_unit_test(test_queue_append_fails_whole),
    };
    return cmocka_run_group_tests_name("buf", tests, NULL, NULL);
}
