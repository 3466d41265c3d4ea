"""Balancing and resilience against real servers: p2c_ewma moves traffic
away from a backend the test slows down; least_connections on http counts
requests in flight."""

import http.server
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from conftest import free_port, wait_for


class SlowHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        srv = self.server
        if srv.delay:
            time.sleep(srv.delay)
        body = srv.name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def upstream(name, delay=0.0):
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    srv.name = name
    srv.delay = delay
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


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
    fast, slow = upstream("fast"), upstream("slow")
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
