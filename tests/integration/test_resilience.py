"""Balancing and resilience against real servers: p2c_ewma moves traffic
away from a backend the test slows down; least_connections on http counts
requests in flight."""

import resource
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import SANITIZED, free_port, http_upstream as upstream, stats_json, wait_for


def http_conf(port, ups, balance, workers=1, extra=""):
    lines = "".join(f"    - 127.0.0.1:{u.server_port}\n" for u in ups)
    return (f"legate:\n  workers: {workers}\n  shutdown_grace: 2s\n"
            f"web:\n  listen: 127.0.0.1:{port}\n  protocol: http\n  balance: {balance}\n"
            f"{extra}  servers:\n{lines}")


def share(port, n, name, parallel=4):
    with ThreadPoolExecutor(parallel) as ex:
        s = requests.Session()
        got = list(ex.map(lambda _: s.get(f"http://127.0.0.1:{port}/", timeout=10).text,
                          range(n)))
    return got.count(name) / len(got)


def test_p2c_ewma_moves_traffic_away_from_a_slowed_backend(legate):
    # Both answer after 20 ms at first: with instant answers, one scheduling
    # hiccup on a loaded machine was a tenfold latency peak, and a peak
    # EWMA keeps away from such a server for seconds (the two were then
    # not "equal" any more: 98.5% went to one of them in a make check).
    fast, slow = upstream("fast", delay=0.02), upstream("slow", delay=0.02)
    port = free_port()
    legate(http_conf(port, [fast, slow], "p2c_ewma"), wait_addr=("127.0.0.1", port))
    try:
        before = share(port, 200, "slow")
        assert 0.25 < before < 0.75, before  # equal backends: about half each
        slow.delay = 0.5
        share(port, 40, "slow")  # the average learns the new latency
        after = share(port, 200, "slow")
        assert after < 0.1, after
        # round_robin, for comparison, keeps sending it half.
        port2 = free_port()
        legate(http_conf(port2, [fast, slow], "round_robin"), wait_addr=("127.0.0.1", port2))
        assert share(port2, 60, "slow") > 0.4
    finally:
        fast.shutdown()
        slow.shutdown()


def test_least_connections_counts_http_requests_in_flight(legate):
    """A backend holding slow requests gets fewer new ones."""
    a, b = upstream("a", delay=0.3), upstream("b")
    port = free_port()
    legate(http_conf(port, [a, b], "least_connections"), wait_addr=("127.0.0.1", port))
    try:
        got = []

        def one():
            got.append(requests.get(f"http://127.0.0.1:{port}/", timeout=10).text)

        threads = [threading.Thread(target=one) for _ in range(20)]
        for t in threads:
            t.start()
            time.sleep(0.02)
        for t in threads:
            t.join(30)
        # a holds each request 0.3 s; round robin would give it 10 of 20.
        assert got.count("a") <= 6, got
        wait_for(lambda: len(got) == 20, what="all answered")
    finally:
        a.shutdown()
        b.shutdown()


def test_retry_budget_caps_retries_during_a_total_outage(legate):
    """Every server refuses: with the budget, retries stay near 20% of the
    connections (plus the floor); without it, each connection tries all."""
    import socket
    dead = [free_port() for _ in range(3)]
    capped, free = free_port(), free_port()
    servers = "".join(f"    - 127.0.0.1:{p}\n" for p in dead)
    conf = "legate:\n  workers: 1\n  shutdown_grace: 2s\n"
    for name, port, budget in (("capped", capped, "{ percent: 20, min_per_second: 1 }"),
                               ("free", free, "false")):
        conf += (f"{name}:\n  listen: 127.0.0.1:{port}\n  protocol: tcp\n  retries: 2\n"
                 f"  retry_budget: {budget}\n  servers:\n{servers}")
    lg = legate(conf, wait_addr=("127.0.0.1", capped))
    n = 300
    t0 = time.monotonic()
    for port in (capped, free):
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.settimeout(10)
                assert s.recv(16) == b""  # closed: nothing reachable
    elapsed = time.monotonic() - t0
    st = stats_json(lg.stats_port)
    c, f = st["capped"], st["free"]
    assert f["retries"] == 2 * n and f["retries_denied"] == 0, f
    assert 0.1 * n < c["retries"] <= 0.2 * n + 1 * elapsed + 2, (c, elapsed)
    assert c["retries_denied"] >= n - c["retries"] - 2, c
    assert c["forward_error"] == n and f["forward_error"] == n


def test_redis_max_pending_answers_excess_at_once(legate, redis_server):
    import redis as redislib
    from resp import Reader, encode
    import socket
    srv = redis_server()
    port = free_port()
    lg = legate(f"legate:\n  workers: 2\n  shutdown_grace: 2s\n"
                f"cache:\n  listen: 127.0.0.1:{port}\n  redis: true\n  timeout: 20000\n"
                f"  max_pending: 5\n  servers:\n    - 127.0.0.1:{srv.port}:1\n",
                wait_addr=("127.0.0.1", port))
    srv.proc.send_signal(19)  # SIGSTOP: requests hang in flight
    try:
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(b"".join(encode("SET", f"k{i}", "v") for i in range(5)))
        time.sleep(0.3)
        other = redislib.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        t = time.monotonic()
        try:
            other.get("x")
            raise AssertionError("a sixth request in flight was accepted")
        except redislib.ResponseError as e:
            assert "max_pending" in str(e)
        assert time.monotonic() - t < 2
    finally:
        srv.proc.send_signal(18)
    rd = Reader(c)
    assert all(rd.reply() == ("+", b"OK") for _ in range(5))  # the five are answered
    assert redislib.Redis(host="127.0.0.1", port=port, socket_timeout=5).set("after", "1")
    assert stats_json(lg.stats_port)["cache"]["rejected"] == 1


@pytest.mark.skipif(SANITIZED, reason="a sanitizer reserves terabytes of address space")
def test_redis_reply_beyond_legates_memory_is_answered_and_blames_no_server(legate,
                                                                             redis_server):
    """legate under a 48 MiB address-space limit meets a 40 MiB reply it
    cannot hold: the client gets an error naming the shortage, the server
    is not counted as failed (its only server stays in the ring even at
    server_failure_limit 1), and the next request on the same client works."""
    import redis as redislib
    srv = redis_server()
    redislib.Redis(host="127.0.0.1", port=srv.port).set("big", b"v" * (40 << 20))
    port = free_port()
    limit = 48 << 20
    lg = legate(f"legate:\n  workers: 1\n"
                f"cache:\n  listen: 127.0.0.1:{port}\n  redis: true\n  timeout: 20000\n"
                f"  auto_eject_hosts: true\n  server_failure_limit: 1\n"
                f"  server_retry_timeout: 60000\n  servers:\n    - 127.0.0.1:{srv.port}:1\n",
                wait_addr=("127.0.0.1", port),
                preexec=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    r = redislib.Redis(host="127.0.0.1", port=port, socket_timeout=20)
    assert r.set("small", "1")
    with pytest.raises(redislib.ResponseError, match="out of memory"):
        r.get("big")
    assert r.get("small") == b"1"
    assert r.set("after", "2")
    st = stats_json(lg.stats_port)["cache"]
    assert st["server_ejects"] == 0
    assert st[f"127.0.0.1:{srv.port}"]["server_err"] == 0
    assert "out of memory for a reply" in lg.log()


@pytest.mark.skipif(SANITIZED, reason="a sanitizer reserves terabytes of address space")
def test_redis_request_beyond_legates_memory_is_answered(legate, redis_server):
    """legate under a 48 MiB address-space limit reads a 40 MiB SET it
    cannot hold: the client, still sending, reads '-ERR legate: out of
    memory' (not a reset), nothing reaches the server, and legate serves
    the next client."""
    import redis as redislib
    srv = redis_server()
    port = free_port()
    limit = 48 << 20
    lg = legate(f"legate:\n  workers: 1\n"
                f"cache:\n  listen: 127.0.0.1:{port}\n  redis: true\n"
                f"  servers:\n    - 127.0.0.1:{srv.port}:1\n",
                wait_addr=("127.0.0.1", port),
                preexec=lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)))
    r = redislib.Redis(host="127.0.0.1", port=port, socket_timeout=20)
    with pytest.raises(redislib.ResponseError, match="legate: out of memory"):
        r.set("big", b"v" * (40 << 20))
    r.close()
    assert redislib.Redis(host="127.0.0.1", port=srv.port).exists("big") == 0
    assert redislib.Redis(host="127.0.0.1", port=port, socket_timeout=10).set("small", "1")
    assert "out of memory for a client's request" in lg.log()


def test_http_max_pending_and_max_connections_answer_503(legate):
    slow = upstream("slow", delay=2.0)
    p1, p2 = free_port(), free_port()
    conf = ("legate:\n  workers: 1\n  shutdown_grace: 2s\n"
            f"pend:\n  listen: 127.0.0.1:{p1}\n  protocol: http\n  max_pending: 2\n"
            f"  servers:\n    - 127.0.0.1:{slow.server_port}\n"
            f"conns:\n  listen: 127.0.0.1:{p2}\n  protocol: http\n  max_connections: 1\n"
            f"  servers:\n    - 127.0.0.1:{slow.server_port}\n")
    lg = legate(conf, wait_addr=("127.0.0.1", p1))
    try:
        for port, limit, held in ((p1, "max_pending", 2), (p2, "max_connections", 1)):
            results = []

            def one():
                r = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
                results.append((r.status_code, r.text))

            threads = [threading.Thread(target=one) for _ in range(held)]
            for t in threads:
                t.start()
            time.sleep(0.3)
            t0 = time.monotonic()
            r = requests.get(f"http://127.0.0.1:{port}/", timeout=10)
            assert r.status_code == 503 and limit in r.text, (r.status_code, r.text)
            assert time.monotonic() - t0 < 1.5  # at once, not after the slow ones (2 s)
            for t in threads:
                t.join(30)
            assert results == [(200, "slow")] * held
            assert requests.get(f"http://127.0.0.1:{port}/", timeout=10).status_code == 200
        st = stats_json(lg.stats_port)
        assert st["pend"]["rejected"] == 1 and st["conns"]["rejected"] == 1
    finally:
        slow.shutdown()


def test_tcp_max_connections_closes_the_excess_client(legate, echo_server):
    import socket
    e = echo_server()
    port = free_port()
    lg = legate("legate:\n  workers: 1\n  shutdown_grace: 2s\n"
                f"t:\n  listen: 127.0.0.1:{port}\n  protocol: tcp\n  max_connections: 1\n"
                f"  servers:\n    - 127.0.0.1:{e.port}\n", wait_addr=("127.0.0.1", port))
    a = socket.create_connection(("127.0.0.1", port), timeout=10)
    a.sendall(b"ping")
    assert a.recv(4) == b"ping"
    b = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert b.recv(16) == b""  # turned away at once
    a.close()
    wait_for(lambda: stats_json(lg.stats_port)["t"]["client_connections"] == 0, what="a gone")
    c = socket.create_connection(("127.0.0.1", port), timeout=10)
    c.sendall(b"pong")
    assert c.recv(4) == b"pong"
    c.close()
    assert stats_json(lg.stats_port)["t"]["rejected"] == 1


def test_outlier_detection_ejects_with_doubling_time(legate, echo_server):
    """Consecutive connect failures eject a server from the worker's choice
    for ejection_time, doubled each time it fails again on return; the
    pool's last server is never ejected."""
    import socket
    live = echo_server(mode="name", name="live")
    dead = free_port()
    port = free_port()
    lg = legate("legate:\n  workers: 1\n  shutdown_grace: 2s\n"
                f"t:\n  listen: 127.0.0.1:{port}\n  protocol: tcp\n  retries: 1\n"
                f"  outlier_detection: {{ failures: 3, ejection_time: 500ms, "
                f"max_ejection_time: 2s }}\n"
                f"  servers:\n    - 127.0.0.1:{dead}\n    - 127.0.0.1:{live.port}\n",
                wait_addr=("127.0.0.1", port))

    def names(n):
        out = []
        for _ in range(n):
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                out.append(recv_all_(s))
        return out

    assert names(10) == ["live"] * 10  # retried past the dead one
    wait_for(lambda: "ejected for 500 ms after 3 failures" in lg.log(), what="ejection")
    errs = stats_json(lg.stats_port)["t"][f"127.0.0.1:{dead}"]["server_err"]
    assert errs == 3
    names(10)
    assert stats_json(lg.stats_port)["t"][f"127.0.0.1:{dead}"]["server_err"] == 3  # not tried meanwhile
    wait_for(lambda: "back from ejection" in lg.log(), timeout=5, what="return")
    # Back on probation: the next failures eject it for twice as long.
    deadline = time.monotonic() + 5
    while "ejected for 1000 ms" not in lg.log() and time.monotonic() < deadline:
        names(5)
    assert "ejected for 1000 ms" in lg.log(), lg.log()
    assert stats_json(lg.stats_port)["t"]["server_ejects"] == 2


def recv_all_(s):
    from conftest import recv_all
    return recv_all(s).decode()


def test_outlier_detection_never_ejects_the_last_server(legate):
    import socket
    dead = free_port()
    port = free_port()
    lg = legate("legate:\n  workers: 1\n  shutdown_grace: 2s\n"
                f"t:\n  listen: 127.0.0.1:{port}\n  protocol: tcp\n  retries: 0\n"
                f"  outlier_detection: {{ failures: 1, max_ejected_percent: 100 }}\n"
                f"  servers:\n    - 127.0.0.1:{dead}\n", wait_addr=("127.0.0.1", port))
    for _ in range(5):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.settimeout(10)
            assert s.recv(1) == b""
    assert "ejected" not in lg.log()
    assert stats_json(lg.stats_port)["t"][f"127.0.0.1:{dead}"]["server_err"] == 5  # tried every time


def test_tcp_max_pending_closes_clients_beyond_the_connects_in_flight(legate):
    """A server whose accept queue is full leaves legate's connect pending:
    with max_pending 1 the second client is turned away at once."""
    import socket
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)  # never accepted: a queue of (about) one, then SYNs are dropped
    fport = full.getsockname()[1]
    fillers = []
    for _ in range(3):
        f = socket.socket()
        f.setblocking(False)
        f.connect_ex(("127.0.0.1", fport))
        fillers.append(f)
    time.sleep(0.2)
    port = free_port()
    lg = legate("legate:\n  workers: 1\n  shutdown_grace: 2s\n"
                f"t:\n  listen: 127.0.0.1:{port}\n  protocol: tcp\n  retries: 0\n"
                f"  max_pending: 1\n  timeout: {{ connect: 5s }}\n"
                f"  servers:\n    - 127.0.0.1:{fport}\n", wait_addr=("127.0.0.1", port))
    try:
        a = socket.create_connection(("127.0.0.1", port), timeout=10)
        wait_for(lambda: stats_json(lg.stats_port)["t"]["client_connections"] == 1, what="a connecting")
        b = socket.create_connection(("127.0.0.1", port), timeout=10)
        b.settimeout(4)
        t0 = time.monotonic()
        assert b.recv(1) == b""  # closed at once, not after the 5 s connect timeout
        assert time.monotonic() - t0 < 2.5
        assert stats_json(lg.stats_port)["t"]["rejected"] == 1
        a.close()
        b.close()
    finally:
        for f in fillers:
            f.close()
        full.close()
