/* Unit tests for ev: timer order, re-arming and stopping, deferred
 * callbacks, and I/O dispatch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "core/ev.h"

#include <sys/socket.h>
#include <unistd.h>

struct rec {
    int order[8];
    int n;
};

struct tagged {
    struct ev_timer t;
    struct rec *rec;
    int tag;
};

static void on_timer(struct ev_loop *loop, struct ev_timer *t)
{
    struct tagged *x = t->data;
    x->rec->order[x->rec->n++] = x->tag;
    if (x->rec->n == 3) {
        ev_loop_stop(loop);
    }
}

static void test_timers_fire_in_deadline_order(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new();
    assert_non_null(loop);
    struct rec rec = { .n = 0 };
    struct tagged a = { .rec = &rec, .tag = 1 }, b = { .rec = &rec, .tag = 2 },
                  c = { .rec = &rec, .tag = 3 }, d = { .rec = &rec, .tag = 4 };
    struct tagged *all[] = { &a, &b, &c, &d };
    for (int i = 0; i < 4; i++) {
        all[i]->t = (struct ev_timer){ .fn = on_timer, .data = all[i] };
    }
    ev_timer_start(loop, &a.t, 30);
    ev_timer_start(loop, &b.t, 10);
    ev_timer_start(loop, &c.t, 20);
    ev_timer_start(loop, &d.t, 5);
    ev_timer_stop(loop, &d.t);        /* stopped: never fires */
    assert_false(ev_timer_armed(&d.t));
    ev_timer_start(loop, &b.t, 40);   /* re-armed: moves to the end */
    assert_true(ev_timer_armed(&b.t));
    assert_int_equal(ev_loop_run(loop), 0);
    assert_int_equal(rec.n, 3);
    assert_int_equal(rec.order[0], 3);
    assert_int_equal(rec.order[1], 1);
    assert_int_equal(rec.order[2], 2);
    ev_loop_free(loop);
}

struct io_ctx {
    struct ev_io io;
    struct ev_defer defer;
    int reads;
    int deferred;
};

static void on_defer(struct ev_loop *loop, struct ev_defer *d)
{
    struct io_ctx *x = d->data;
    x->deferred++;
    ev_loop_stop(loop);
}

static void on_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    struct io_ctx *x = io->data;
    if (events & EV_READ) {
        char buf[16];
        while (read(io->fd, buf, sizeof(buf)) > 0) {
            x->reads++;
        }
    }
    ev_defer(loop, &x->defer);
    ev_defer(loop, &x->defer); /* queued once only */
}

static void test_io_then_defer(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct ev_loop *loop = ev_loop_new();
    struct io_ctx x = { .reads = 0, .deferred = 0 };
    x.io = (struct ev_io){ .fd = sv[0], .fn = on_io, .data = &x };
    x.defer = (struct ev_defer){ .fn = on_defer, .data = &x };
    assert_int_equal(ev_io_add(loop, &x.io, EV_READ), 0);
    assert_int_equal(write(sv[1], "hi", 2), 2);
    assert_int_equal(ev_loop_run(loop), 0);
    assert_int_equal(x.reads, 1);
    assert_int_equal(x.deferred, 1);
    ev_io_del(loop, &x.io);
    assert_int_equal(x.io.fd, -1);
    close(sv[0]);
    close(sv[1]);
    ev_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_deadline_order),
        cmocka_unit_test(test_io_then_defer),
    };
    return cmocka_run_group_tests_name("ev", tests, NULL, NULL);
}
