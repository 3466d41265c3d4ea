/* Unit tests for ev: timer order, re-arming and stopping, deferred
 * callbacks (this iteration's and the next's), and I/O dispatch. */
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

/* Many timers, armed, re-armed and stopped at random, some stopped by
 * the callbacks of others: each one armed at the end fires exactly once,
 * in deadline order, and no stopped one fires. */
enum { MANY = 3000 };

struct many {
    struct ev_timer t[MANY];
    int fired[MANY];
    uint64_t last_when;
    int nfired, narmed;
    bool in_order;
    uint32_t rng;
};

static uint32_t many_draw(struct many *m)
{
    m->rng = m->rng * 1103515245u + 12345u;
    return m->rng >> 8;
}

static void on_many(struct ev_loop *loop, struct ev_timer *t)
{
    struct many *m = t->data;
    m->fired[t - m->t]++;
    m->in_order = m->in_order && t->when >= m->last_when;
    m->last_when = t->when;
    m->nfired++;
    m->narmed--;
    struct ev_timer *other = &m->t[many_draw(m) % MANY];
    if (many_draw(m) % 4 == 0 && ev_timer_armed(other)) {
        ev_timer_stop(loop, other); /* a callback cancels another timer */
        m->narmed--;
    }
    if (m->narmed == 0) {
        ev_loop_stop(loop);
    }
}

static void test_many_timers_random_order(void **state)
{
    (void)state;
    struct ev_loop *loop = ev_loop_new();
    assert_non_null(loop);
    static struct many m;
    m = (struct many){ .in_order = true, .rng = 7 };
    for (int i = 0; i < MANY; i++) {
        m.t[i] = (struct ev_timer){ .fn = on_many, .data = &m };
    }
    for (int step = 0; step < 5 * MANY; step++) {
        struct ev_timer *t = &m.t[many_draw(&m) % MANY];
        if (many_draw(&m) % 3 == 0) {
            ev_timer_stop(loop, t);
        } else {
            ev_timer_start(loop, t, many_draw(&m) % 40);
        }
    }
    bool armed[MANY];
    for (int i = 0; i < MANY; i++) {
        armed[i] = ev_timer_armed(&m.t[i]);
        m.narmed += armed[i];
    }
    int armed_at_start = m.narmed;
    assert_true(armed_at_start > MANY / 2);
    assert_int_equal(ev_loop_run(loop), 0);
    assert_true(m.in_order);
    int stopped_by_callbacks = 0;
    for (int i = 0; i < MANY; i++) {
        assert_true(m.fired[i] <= (armed[i] ? 1 : 0));
        stopped_by_callbacks += armed[i] && m.fired[i] == 0;
        assert_false(ev_timer_armed(&m.t[i]));
    }
    assert_int_equal(m.nfired + stopped_by_callbacks, armed_at_start);
    assert_true(stopped_by_callbacks > 0);
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

struct next_ctx {
    struct ev_io io;
    struct ev_defer now, next, both, cancelled, cancelled_now, cancelled_due;
    struct ev_timer guard, canceller;
    uint64_t io_iter;
    uint64_t ran_at[3]; /* now, next, both: the iteration each ran in */
    uint64_t cancel_iter; /* the iteration `canceller` fired in */
    int runs[6];        /* now, next, both, cancelled, cancelled_now, cancelled_due */
    int next_events;    /* ev_events() in the iteration `next` ran */
};

static void on_next_defer(struct ev_loop *loop, struct ev_defer *d)
{
    struct next_ctx *x = d->data;
    struct ev_defer *all[] = { &x->now,       &x->next,          &x->both,
                               &x->cancelled, &x->cancelled_now, &x->cancelled_due };
    for (int i = 0; i < 6; i++) {
        if (all[i] == d) {
            x->runs[i]++;
            if (i < 3) {
                x->ran_at[i] = ev_iteration(loop);
            }
        }
    }
    if (d == &x->now) {
        ev_timer_start(loop, &x->canceller, 0); /* fires in the next iteration */
    }
    if (d == &x->next) {
        x->next_events = ev_events(loop);
        ev_loop_stop(loop);
    }
}

/* Runs before the next iteration's defers: `cancelled_due` is then among
 * those held over for it. */
static void on_canceller(struct ev_loop *loop, struct ev_timer *t)
{
    struct next_ctx *x = t->data;
    x->cancel_iter = ev_iteration(loop);
    ev_defer_cancel(loop, &x->cancelled_due);
}

static void on_next_io(struct ev_loop *loop, struct ev_io *io, unsigned events)
{
    (void)events;
    struct next_ctx *x = io->data;
    char buf[16];
    while (read(io->fd, buf, sizeof(buf)) > 0) {
    }
    x->io_iter = ev_iteration(loop);
    ev_defer(loop, &x->now);
    ev_defer_next(loop, &x->next);
    ev_defer_next(loop, &x->both);
    ev_defer(loop, &x->both); /* already queued for the next iteration */
    ev_defer_next(loop, &x->cancelled);
    ev_defer_cancel(loop, &x->cancelled);
    ev_defer(loop, &x->cancelled_now);
    ev_defer_cancel(loop, &x->cancelled_now);
    ev_defer_next(loop, &x->cancelled_due);
}

static void on_guard(struct ev_loop *loop, struct ev_timer *t)
{
    (void)t;
    ev_loop_stop(loop); /* the next iteration never came */
}

/* ev_defer_next runs a callback at the end of the next iteration, whose
 * poll does not wait (no event comes, and a 5 s timer is armed); a defer
 * is queued once whichever way it was asked for; a cancelled one never
 * runs, whether cancelled in the iteration that queued it or in the one
 * it was held over for. */
static void test_defer_next_runs_one_iteration_later(void **state)
{
    (void)state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct ev_loop *loop = ev_loop_new();
    assert_non_null(loop);
    struct next_ctx x = { .next_events = -1 };
    x.io = (struct ev_io){ .fd = sv[0], .fn = on_next_io, .data = &x };
    struct ev_defer *all[] = { &x.now,       &x.next,          &x.both,
                               &x.cancelled, &x.cancelled_now, &x.cancelled_due };
    for (int i = 0; i < 6; i++) {
        *all[i] = (struct ev_defer){ .fn = on_next_defer, .data = &x };
    }
    x.guard = (struct ev_timer){ .fn = on_guard, .data = &x };
    x.canceller = (struct ev_timer){ .fn = on_canceller, .data = &x };
    ev_timer_start(loop, &x.guard, 5000);
    assert_int_equal(ev_io_add(loop, &x.io, EV_READ), 0);
    assert_int_equal(write(sv[1], "hi", 2), 2);
    assert_int_equal(ev_loop_run(loop), 0);
    assert_int_not_equal(x.io_iter, 0);
    assert_int_equal(x.runs[0], 1);
    assert_int_equal(x.runs[1], 1);
    assert_int_equal(x.runs[2], 1);
    assert_int_equal(x.runs[3], 0);
    assert_int_equal(x.runs[4], 0);
    assert_int_equal(x.runs[5], 0);
    assert_int_equal(x.cancel_iter, x.io_iter + 1);
    assert_int_equal(x.ran_at[0], x.io_iter);
    assert_int_equal(x.ran_at[1], x.io_iter + 1);
    assert_int_equal(x.ran_at[2], x.io_iter + 1);
    assert_int_equal(x.next_events, 0);
    assert_true(ev_timer_armed(&x.guard)); /* stopped by `next`, not the guard */
    /* Queued for a next iteration that never comes: teardown runs it. */
    ev_defer_next(loop, &x.next);
    ev_run_pending(loop);
    assert_int_equal(x.runs[1], 2);
    ev_timer_stop(loop, &x.guard);
    ev_io_del(loop, &x.io);
    close(sv[0]);
    close(sv[1]);
    ev_loop_free(loop);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timers_fire_in_deadline_order),
        cmocka_unit_test(test_many_timers_random_order),
        cmocka_unit_test(test_io_then_defer),
        cmocka_unit_test(test_defer_next_runs_one_iteration_later),
    };
    return cmocka_run_group_tests_name("ev", tests, NULL, NULL);
}
