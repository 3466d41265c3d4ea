"""legate short of memory. legate-failalloc is legate built with
tests/tools/failalloc.c: while a trigger file exists, a share of legate's
own allocations fail, as they would when the machine runs out of memory.
Real clients keep working through it. Every request must still get an
answer: a right value, the protocol's error, or a closed connection, never
a hang, a wrong value or a broken reply stream. legate stays up, serves as
before once allocations succeed again, and exits cleanly (under ASan with
nothing leaked)."""

import os
import random
import threading
import time

import redis

from conftest import free_port, stats_json

TOOLS = os.environ.get("LEGATE_TOOLS", os.path.join(os.path.dirname(__file__), "..", "..",
                                                    "build", "release", "tools"))
FAILALLOC = os.path.join(TOOLS, "legate-failalloc")
PERMILLE = 300  # three allocations in ten fail while the trigger is there
LOAD_SECONDS = 3.0
CLIENT_THREADS = 4


class Starved:
    """The environment for legate-failalloc and its trigger file: inside
    `with starved:` allocations fail."""

    def __init__(self, tmp_path, seed):
        self.trigger = tmp_path / "failalloc.on"
        self.count = tmp_path / "failalloc.count"
        self.env = {"LEGATE_FAILALLOC": f"{PERMILLE}:{seed}:{self.trigger}",
                    "LEGATE_FAILALLOC_COUNT": str(self.count)}

    def __enter__(self):
        self.trigger.write_text("")
        return self

    def __exit__(self, *exc):
        self.trigger.unlink()
        time.sleep(0.05)  # each thread looks for the file every 5 ms

    def failures(self):
        text = self.count.read_text().strip() if self.count.exists() else ""
        return int(text or 0)


class Tally:
    """What the clients saw, summed over their threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.counts = {"ok": 0, "error": 0, "closed": 0}
        self.wrong = []

    def add(self, what, n=1):
        with self.lock:
            self.counts[what] += n

    def bad(self, what):
        with self.lock:
            self.wrong.append(what)


def load(work, seconds=LOAD_SECONDS, threads=CLIENT_THREADS):
    """Run work(rng, deadline, tally) on `threads` threads; return the
    tally. An exception in a thread (a timeout: a request went unanswered)
    is recorded as wrong."""
    tally = Tally()
    deadline = time.monotonic() + seconds

    def run(i):
        try:
            work(random.Random(i), deadline, tally)
        except Exception as e:  # noqa: BLE001 - reported by the test
            tally.bad(f"thread {i}: {type(e).__name__}: {e}")

    ts = [threading.Thread(target=run, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
        assert not t.is_alive(), "a client thread hung"
    return tally


def expect_starved_and_served(lg, starved, tally):
    """The failures happened, reached the clients, and broke nothing."""
    assert tally.wrong == [], tally.wrong[:5]
    assert starved.failures() > 0
    assert tally.counts["error"] + tally.counts["closed"] > 0, tally.counts
    assert tally.counts["ok"] > 0, tally.counts
    assert lg.proc.poll() is None, lg.diagnostics()
    stats_json(lg.stats_port)  # the admin side answers too


# ---------------------------------------------------------------- redis

def rkey(k):
    return b"fa:%d" % k


def rvalue(k, size):
    """Every value of key k starts with its key: a reply that belongs to
    another request shows."""
    return rkey(k) + b"=" + b"v" * size


def redis_checked(tally, key, got):
    if isinstance(got, redis.ResponseError):
        if "legate" not in str(got):
            tally.bad(f"error not legate's: {got}")
        tally.add("error")
    elif got is not None and not got.startswith(rkey(key) + b"="):
        tally.bad(f"key {key} got {got[:40]!r}")
    else:
        tally.add("ok")


def redis_work(port):
    def work(rng, deadline, tally):
        while time.monotonic() < deadline:
            r = redis.Redis(port=port, socket_timeout=10)
            try:
                for _ in range(20):
                    redis_op(r, rng, tally)
            except redis.ConnectionError:
                tally.add("closed")
            finally:
                r.close()
    return work


def redis_op(r, rng, tally):
    op = rng.randrange(4)
    keys = [rng.randrange(500) for _ in range(rng.randrange(1, 120))]
    try:
        if op == 0:
            k = keys[0]
            size = rng.choice((10, 3000, 200000))
            tally.add("ok" if r.set(rkey(k), rvalue(k, size)) else "error")
        elif op == 1:
            for k, got in zip(keys, r.mget([rkey(k) for k in keys])):
                redis_checked(tally, k, got)
        elif op == 2:
            tally.add("ok" if r.mset({rkey(k): rvalue(k, rng.randrange(50)) for k in keys})
                      else "error")
        else:
            p = r.pipeline(transaction=False)
            for k in keys:
                p.get(rkey(k))
            for k, got in zip(keys, p.execute(raise_on_error=False)):
                redis_checked(tally, k, got)
    except redis.ResponseError as e:
        redis_checked(tally, None, e)
    except redis.TimeoutError as e:
        raise AssertionError(f"op {op} on {len(keys)} keys went unanswered: {e}") from e


def test_redis_short_of_memory_answers_every_request(legate, redis_server, tmp_path):
    shards = [redis_server(), redis_server()]
    port = free_port()
    starved = Starved(tmp_path, seed=1)
    conf = ("legate:\n  workers: 2\n  shutdown_grace: 2s\n"
            f"alpha:\n  listen: 127.0.0.1:{port}\n  redis: true\n  hash: fnv1a_64\n"
            "  distribution: ketama\n  server_connections: 2\n  preconnect: true\n"
            "  servers:\n" +
            "".join(f"    - 127.0.0.1:{s.port}:1 s{i}\n" for i, s in enumerate(shards)))
    lg = legate(conf, wait_addr=("127.0.0.1", port), binary=FAILALLOC, env=starved.env)
    with starved:
        tally = load(redis_work(port))
    expect_starved_and_served(lg, starved, tally)
    # Served as before: every key, written and read back through legate.
    r = redis.Redis(port=port, socket_timeout=10)
    r.mset({rkey(k): rvalue(k, k) for k in range(500)})
    assert r.mget([rkey(k) for k in range(500)]) == [rvalue(k, k) for k in range(500)]
    p = r.pipeline(transaction=False)
    for k in range(500):
        p.get(rkey(k))
    assert p.execute() == [rvalue(k, k) for k in range(500)]
    r.close()
