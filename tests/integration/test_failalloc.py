"""legate short of memory. legate-failalloc is legate built with
tests/tools/failalloc.c: while a trigger file exists, a share of legate's
own allocations fail, as they would when the machine runs out of memory.
Real clients keep working through it. Every request must still get an
answer: a right value, the protocol's error, or a closed connection, never
a hang, a wrong value or a broken reply stream. legate stays up, serves as
before once allocations succeed again, and exits cleanly (under ASan with
nothing leaked)."""

import json
import os
import random
import signal
import socket
import threading
import time

import redis
import requests
from pymemcache.client.base import Client
from pymemcache.exceptions import MemcacheServerError, MemcacheUnexpectedCloseError

from conftest import (free_port, http_upstream, recv_all, stats_json, tcp_pool,
                      wait_for)
from test_memcache import Memcached

TOOLS = os.environ.get("LEGATE_TOOLS", os.path.join(os.path.dirname(__file__), "..", "..",
                                                    "build", "release", "tools"))
FAILALLOC = os.path.join(TOOLS, "legate-failalloc")
PERMILLE = 300  # three allocations in ten fail while the trigger is there
LOAD_SECONDS = 3.0
CLIENT_THREADS = 4


class Starved:
    """The environment for legate-failalloc and its trigger file: inside
    `with starved:` allocations fail."""

    def __init__(self, tmp_path, seed, permille=PERMILLE):
        self.trigger = tmp_path / "failalloc.on"
        self.count = tmp_path / "failalloc.count"
        self.env = {"LEGATE_FAILALLOC": f"{permille}:{seed}:{self.trigger}",
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


def sessions(open_client, op, closed):
    """A load() worker: clients from open_client(), each doing 20 of
    op(client, rng, tally) and closed; an exception of the `closed` kinds
    counts as a connection legate closed."""
    def work(rng, deadline, tally):
        while time.monotonic() < deadline:
            c = open_client()
            try:
                for _ in range(20):
                    op(c, rng, tally)
            except closed:
                tally.add("closed")
            finally:
                c.close()
    return work


def redis_work(port):
    return sessions(lambda: redis.Redis(port=port, socket_timeout=10), redis_op,
                    redis.ConnectionError)


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


def redis_conf(port, shards, extra=""):
    return ("legate:\n  workers: 2\n  shutdown_grace: 2s\n"
            f"alpha:\n  listen: 127.0.0.1:{port}\n  redis: true\n  hash: fnv1a_64\n"
            "  distribution: ketama\n  server_connections: 2\n  preconnect: true\n"
            f"{extra}  servers:\n" +
            "".join(f"    - 127.0.0.1:{s.port}:1 s{i}\n" for i, s in enumerate(shards)))


def expect_redis_served(port):
    """Every key written and read back through legate, by MSET/MGET and by
    a pipeline of GETs."""
    r = redis.Redis(port=port, socket_timeout=10)
    r.mset({rkey(k): rvalue(k, k) for k in range(500)})
    assert r.mget([rkey(k) for k in range(500)]) == [rvalue(k, k) for k in range(500)]
    p = r.pipeline(transaction=False)
    for k in range(500):
        p.get(rkey(k))
    assert p.execute() == [rvalue(k, k) for k in range(500)]
    r.close()


def test_redis_short_of_memory_answers_every_request(legate, redis_server, tmp_path):
    shards = [redis_server(), redis_server()]
    port = free_port()
    starved = Starved(tmp_path, seed=1)
    lg = legate(redis_conf(port, shards), wait_addr=("127.0.0.1", port), binary=FAILALLOC,
                env=starved.env)
    with starved:
        tally = load(redis_work(port))
        answers = [stats_or_nothing(lg.stats_port) for _ in range(20)]
    expect_starved_and_served(lg, starved, tally)
    assert "bad" not in answers, answers
    expect_redis_served(port)


def stats_or_nothing(port):
    """One read of the stats listener: "json" (a whole document), "empty"
    (closed without one: legate had no memory for it) or "bad"."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        data = recv_all(s)
    if not data:
        return "empty"
    try:
        json.loads(data)
        return "json"
    except ValueError:
        return "bad"


RELOADED, KEPT = "configuration reloaded", "keeping the running configuration"


def test_reloads_short_of_memory_keep_serving(legate, redis_server, tmp_path):
    """SIGHUP while allocations fail: each reload either takes over (its
    clients handed over or closed) or says it keeps the running
    configuration; the clients are answered throughout. One allocation in
    a hundred fails, so that a reload (some fifty allocations, and its
    workers' pools) goes through about a third of the time: both outcomes
    come up in 24 (all alike in about 3 runs in 100,000)."""
    shards = [redis_server(), redis_server()]
    port = free_port()
    starved = Starved(tmp_path, seed=5, permille=10)
    confs = [redis_conf(port, shards), redis_conf(port, shards, "  timeout: 5000\n")]
    lg = legate(confs[0], wait_addr=("127.0.0.1", port), binary=FAILALLOC, env=starved.env)
    outcomes = []
    with starved:
        done = {}
        t = threading.Thread(target=lambda: done.update(tally=load(redis_work(port), 8.0)))
        t.start()
        for r in range(24):
            time.sleep(0.2)
            before = (lg.log().count(RELOADED), lg.log().count(KEPT))
            lg.conf_path.write_text(confs[(r + 1) % 2])
            lg.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: (lg.log().count(RELOADED), lg.log().count(KEPT)) != before,
                     what="the reload's outcome")
            outcomes.append(lg.log().count(KEPT) > before[1])
        t.join(60)
    expect_starved_and_served(lg, starved, done["tally"])
    assert True in outcomes and False in outcomes, outcomes
    before = lg.log().count(RELOADED)
    lg.conf_path.write_text(confs[0])
    lg.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: lg.log().count(RELOADED) > before, what="a reload with memory")
    expect_redis_served(port)


# ---------------------------------------------------------------- memcache

def mc_work(port):
    return sessions(lambda: Client(("127.0.0.1", port), timeout=10, connect_timeout=10), mc_op,
                    (MemcacheUnexpectedCloseError, ConnectionError))


def mc_op(c, rng, tally):
    op = rng.randrange(3)
    keys = [rng.randrange(500) for _ in range(rng.randrange(1, 120))]
    try:
        if op == 0:
            k = keys[0]
            c.set(rkey(k).decode(), rvalue(k, rng.choice((10, 3000, 200000))), noreply=False)
            tally.add("ok")
        elif op == 1:
            got = c.get_many([rkey(k).decode() for k in keys])
            for name, value in got.items():
                redis_checked(tally, int(name.split(":")[1]), value)
            tally.add("ok")
        else:
            redis_checked(tally, keys[0], c.get(rkey(keys[0]).decode()))
    except MemcacheUnexpectedCloseError:
        raise  # (a MemcacheServerError too): a close, counted by mc_work
    except MemcacheServerError as e:
        if "legate" not in str(e):
            tally.bad(f"error not legate's: {e.args!r} in op {op}")
        tally.add("error")
    except socket.timeout as e:
        raise AssertionError(f"op {op} on {len(keys)} keys went unanswered") from e


def test_memcache_short_of_memory_answers_every_request(legate, tmp_path):
    shards = [Memcached(), Memcached()]
    port = free_port()
    starved = Starved(tmp_path, seed=2)
    conf = ("legate:\n  workers: 2\n  shutdown_grace: 2s\n"
            f"beta:\n  listen: 127.0.0.1:{port}\n  protocol: memcache\n  hash: fnv1a_64\n"
            "  distribution: ketama\n  server_connections: 2\n  servers:\n" +
            "".join(f"    - 127.0.0.1:{s.port}:1 m{i}\n" for i, s in enumerate(shards)))
    try:
        lg = legate(conf, wait_addr=("127.0.0.1", port), binary=FAILALLOC, env=starved.env)
        with starved:
            tally = load(mc_work(port))
        expect_starved_and_served(lg, starved, tally)
        c = Client(("127.0.0.1", port), timeout=10)
        for k in range(200):
            c.set(rkey(k).decode(), rvalue(k, k), noreply=False)
        got = c.get_many([rkey(k).decode() for k in range(200)])
        assert got == {rkey(k).decode(): rvalue(k, k) for k in range(200)}
        c.close()
    finally:
        for s in shards:
            s.stop()


# ---------------------------------------------------------------- http

def http_work(port):
    return sessions(requests.Session, lambda s, rng, tally: http_op(s, port, rng, tally),
                    requests.ConnectionError)


def http_op(s, port, rng, tally):
    size = rng.choice((0, 0, 100, 5000, 300000))
    headers = {"X-User": str(rng.randrange(1000))}
    try:
        if size:
            r = s.post(f"http://127.0.0.1:{port}/up", data=b"b" * size, headers=headers,
                       timeout=10)
        else:
            r = s.get(f"http://127.0.0.1:{port}/x", headers=headers, timeout=10)
    except requests.Timeout as e:
        raise AssertionError(f"a request with a {size}-byte body went unanswered") from e
    # a GET is answered with the arm's name, a POST with "<arm>:<body bytes>"
    right = [f"{arm}:{size}" if size else arm for arm in ("production", "experiment")]
    if r.status_code == 200 and len(r.content) < int(r.headers["Content-Length"]):
        # legate had no memory for the body after the head went out: it
        # can only close (urllib3 1.26 hands over what came)
        if not any(want.startswith(r.text) for want in right):
            tally.bad(f"{size}-byte body answered {r.text[:60]!r} before the close")
        tally.add("closed")
    elif r.status_code == 200:
        if r.text not in right:
            tally.bad(f"{size}-byte body answered {r.text[:60]!r}")
        tally.add("ok")
    elif r.status_code in (500, 502, 503):
        tally.add("error")
    else:
        tally.bad(f"status {r.status_code}: {r.text[:60]!r}")


def admin_page_or_nothing(port, page):
    """One GET of an admin page: "whole" (a status line and as many body
    bytes as its Content-Length says), "empty" (closed without an answer,
    or reset: closed with the request unread) or "bad"."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(f"GET /{page} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                      .encode())
            data = recv_all(s)
        except ConnectionResetError:
            return "empty"
    if not data:
        return "empty"
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode(errors="replace").split("\r\n")
    length = [int(v) for k, _, v in (ln.partition(": ") for ln in lines[1:])
              if k.lower() == "content-length"]
    ok = lines[0].split(" ")[1:2] in (["200"], ["500"], ["503"]) and length == [len(body)]
    return "whole" if ok else "bad"


def test_http_short_of_memory_answers_every_request(legate, tmp_path):
    ups = {name: http_upstream(name, quiet=True)
           for name in ("production", "experiment", "shadow")}
    port, admin = free_port(), free_port()
    starved = Starved(tmp_path, seed=3)
    conf = (f"legate:\n  workers: 2\n  shutdown_grace: 2s\n  admin: 127.0.0.1:{admin}\n"
            f"web:\n  listen: 127.0.0.1:{port}\n  protocol: http\n"
            f"  mirror: {{ percent: 50, servers: [127.0.0.1:{ups['shadow'].server_port}] }}\n"
            "  split:\n    sticky: { header: X-User }\n    arms:\n"
            f"      production: {{ weight: 50, servers: [127.0.0.1:{ups['production'].server_port}] }}\n"
            f"      experiment: {{ weight: 50, servers: [127.0.0.1:{ups['experiment'].server_port}] }}\n")
    try:
        lg = legate(conf, wait_addr=("127.0.0.1", port), binary=FAILALLOC, env=starved.env)
        with starved:
            tally = load(http_work(port))
            answers = [admin_page_or_nothing(admin, page)
                       for page in ("stats", "metrics", "healthz", "ready") * 5]
        expect_starved_and_served(lg, starved, tally)
        assert "bad" not in answers, answers
        with requests.Session() as s:
            for i in range(50):
                r = s.post(f"http://127.0.0.1:{port}/", data=b"x" * i * 1000,
                           headers={"X-User": str(i)}, timeout=10)
                assert r.status_code == 200 and r.text.endswith(f":{i * 1000}"), r.text
    finally:
        for u in ups.values():
            u.shutdown()
            u.server_close()


# ---------------------------------------------------------------- tcp

def roundtrip(s, payload):
    """Send `payload` from a thread and read the echo here until it is all
    back or the connection ends; a read that waits 10 s raises."""
    def send():
        try:
            s.sendall(payload)
        except OSError:
            pass  # closed by legate: the reads below see it
    t = threading.Thread(target=send)
    t.start()
    got = bytearray()
    try:
        while len(got) < len(payload):
            d = s.recv(65536)
            if not d:
                break
            got += d
    except ConnectionResetError:
        pass
    t.join(10)
    return bytes(got)


def tcp_work(port):
    def work(rng, deadline, tally):
        while time.monotonic() < deadline:
            payload = bytes([rng.randrange(256)]) * rng.choice((10, 5000, 300000))
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    got = roundtrip(s, payload)
            except socket.timeout as e:
                raise AssertionError(f"{len(payload)} bytes not echoed") from e
            except ConnectionError:
                tally.add("closed")
                continue
            if got == payload:
                tally.add("ok")
            elif payload.startswith(got):
                tally.add("closed")  # cut short: the connection was closed
            else:
                tally.bad(f"{len(payload)} bytes echoed as {len(got)} other bytes")
    return work


def test_tcp_short_of_memory_passes_bytes_or_closes(legate, echo_server, tmp_path):
    port, echo = free_port(), echo_server()
    starved = Starved(tmp_path, seed=4)
    lg = legate(tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{echo.port}"]),
                wait_addr=("127.0.0.1", port), binary=FAILALLOC, env=starved.env)
    with starved:
        tally = load(tcp_work(port))
    expect_starved_and_served(lg, starved, tally)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert roundtrip(s, b"z" * 100000) == b"z" * 100000


# ---------------------------------------------------------------- discovery

def test_discovery_short_of_memory_settles_on_the_last_file(legate, redis_server, tmp_path):
    """An endpoints file rewritten every 100 ms while allocations fail (one
    in thirty: some rewrites are read, some are not, some server tables or
    rings are not rebuilt at first). Clients are answered throughout; once
    memory is back, every worker routes by the file's last content: keys
    written then land only on the servers it names."""
    shards = [redis_server() for _ in range(4)]
    eps = tmp_path / "shards"

    def names(which):
        return "".join(f"127.0.0.1:{shards[i].port}:1 s{i}\n" for i in which)

    eps.write_text(names((0, 1, 2)))
    port = free_port()
    starved = Starved(tmp_path, seed=6, permille=30)
    lg = legate("legate:\n  workers: 2\n  shutdown_grace: 2s\n"
                f"alpha:\n  listen: 127.0.0.1:{port}\n  redis: true\n  hash: fnv1a_64\n"
                "  distribution: ketama\n  server_connections: 2\n"
                f"  discovery: {{ file: {eps}, interval: 100ms }}\n",
                wait_addr=("127.0.0.1", port), binary=FAILALLOC, env=starved.env)
    wait_for(lambda: "3 servers (+3 -0)" in lg.log(), what="the first file")
    sets = [(0, 1, 2), (0, 1, 2, 3), (1, 3), (0, 2, 3)]
    with starved:
        done = {}
        t = threading.Thread(target=lambda: done.update(tally=load(redis_work(port))))
        t.start()
        for r in range(25):
            eps.write_text(names(sets[r % len(sets)]))
            time.sleep(0.1)
        t.join(60)
    expect_starved_and_served(lg, starved, done["tally"])
    # Memory is back: a last file, then only its servers get keys.
    before = lg.log().count("servers (+")
    eps.write_text(names((0, 3)))
    wait_for(lambda: lg.log().count("servers (+") > before, what="the last file read")
    time.sleep(0.5)  # every worker's next loop iteration takes the table
    for s in shards:
        redis.Redis(port=s.port).flushall()
    r = redis.Redis(port=port, socket_timeout=10)
    r.mset({rkey(k): rvalue(k, k) for k in range(500)})
    sizes = [redis.Redis(port=s.port).dbsize() for s in shards]
    assert sizes[1] == sizes[2] == 0 and sizes[0] + sizes[3] == 500, sizes
    assert r.mget([rkey(k) for k in range(500)]) == [rvalue(k, k) for k in range(500)]
    r.close()
