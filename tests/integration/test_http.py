"""The http pool: experiment splitting in front of real nginx upstreams (one
server block per arm answering with the arm's name) and a small Python
upstream for bodies, slowness and broken framing; clients are curl, requests
and raw sockets."""

import http.server
import json
import os
import random
import signal
import socket
import subprocess
import threading
import time

import pytest
import requests

from conftest import (RST, BurstHTTPServer, client_limit_holds, free_port, wait_for, can_connect,
                      rss_kib, rss_test, stats_json, vanish_churn)


# ---------------------------------------------------------------- upstreams

class Nginx:
    """nginx with one server block per arm: GET / answers the arm's name.
    Its accept queue takes a burst of 3,000 connects (nginx's own default of
    511 drops the rest of the SYNs, and the kernel resends one only after the
    1 s that is legate's default connect timeout)."""

    def __init__(self, tmp_path, arms):
        self.dir = tmp_path / f"nginx-{random.randrange(1 << 30)}"
        self.dir.mkdir()
        self.ports = {a: free_port() for a in arms}
        blocks = "".join(
            f"  server {{ listen 127.0.0.1:{p} backlog=4096; keepalive_requests 100000;\n"
            f"    location / {{ add_header X-Conn $connection; return 200 \"{a}\\n\"; }}\n"
            f"    location /nobody {{ return 204; }}\n"
            f"    location /big {{ alias {self.dir}/big; }} }}\n"
            for a, p in self.ports.items())
        (self.dir / "nginx.conf").write_text(
            f"user root;\nworker_processes 1;\ndaemon off;\npid {self.dir}/nginx.pid;\n"
            f"error_log {self.dir}/error.log;\nevents {{ worker_connections 8192; }}\n"
            f"http {{\n  access_log off;\n  client_body_temp_path {self.dir};\n"
            f"  proxy_temp_path {self.dir};\n  fastcgi_temp_path {self.dir};\n"
            f"  uwsgi_temp_path {self.dir};\n  scgi_temp_path {self.dir};\n{blocks}}}\n")
        self.proc = subprocess.Popen(["nginx", "-c", str(self.dir / "nginx.conf"),
                                      "-p", str(self.dir)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for p in self.ports.values():
            wait_for(lambda p=p: can_connect(("127.0.0.1", p)), what="nginx")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Upstream(BurstHTTPServer):
    """Echoes request bodies, sleeps on /sleep/<s>, answers /bad with
    broken framing; counts requests and connections."""

    def __init__(self):
        self.requests = []
        self.hosts = []  # every Host field of each GET, as received
        self.connections = 0
        super().__init__(("127.0.0.1", 0), UpstreamHandler)
        self.port = self.server_address[1]
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def get_request(self):
        conn = super().get_request()
        self.connections += 1
        return conn


class UpstreamHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # see conftest's _NameHandler

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        self.server.hosts.append(self.headers.get_all("Host"))
        if self.path.startswith("/sleep/"):
            time.sleep(float(self.path.split("/")[2]))
        if self.path == "/bad":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd")
            return
        if self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path == "/eof":
            self.wfile.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end")
            self.close_connection = True
            return
        body = json.dumps({"path": self.path, "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_OPTIONS = do_GET

    def do_POST(self):
        self.server.requests.append((self.command, self.path, dict(self.headers)))
        if self.path == "/early":  # refuse before the body, keep the connection
            self.send_response(413)
            self.send_header("Content-Length", "4")
            self.end_headers()
            self.wfile.write(b"nope")
            return  # the body left unread would be parsed as the next request
        n = int(self.headers.get("Content-Length", "0"))
        parts = []
        if self.headers.get("Transfer-Encoding", "") == "chunked":
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        else:
            while n > 0:
                parts.append(self.rfile.read(min(n, 1 << 20)))
                if not parts[-1]:  # the body was cut: nobody to answer
                    self.close_connection = True
                    return
                n -= len(parts[-1])
        if self.path == "/count":  # big uploads: say how much arrived
            data = str(sum(len(p) for p in parts)).encode()
            parts = []
        else:
            data = b"".join(parts)
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_PUT = do_POST


@pytest.fixture(scope="module")
def nginx(tmp_path_factory):
    n = Nginx(tmp_path_factory.mktemp("ng"), ["production", "experiment", "shadow"])
    yield n
    n.stop()


@pytest.fixture
def upstream():
    u = Upstream()
    yield u
    u.shutdown()
    u.server_close()


def split_pool(port, arms, extra=""):
    body = (f"legate:\n  workers: 2\n  shutdown_grace: 2s\nweb:\n  listen: 127.0.0.1:{port}\n"
            f"  protocol: http\n{extra}  split:\n    sticky: {{ header: X-User }}\n"
            f"    override_header: X-Arm\n    response_header: X-Legate-Arm\n    arms:\n")
    for name, (weight, ports) in arms.items():
        servers = ", ".join(f"127.0.0.1:{p}" for p in ports)
        body += f"      {name}: {{ weight: {weight}, servers: [{servers}] }}\n"
    return body


def plain_pool(port, ports, extra=""):
    return (f"legate:\n  workers: 1\n  shutdown_grace: 2s\nweb:\n  listen: 127.0.0.1:{port}\n"
            f"  protocol: http\n{extra}  servers:\n" +
            "".join(f"    - 127.0.0.1:{p}:1\n" for p in ports))


def raw(port, data, timeout=5):
    """Send `data`, return everything until the server closes (or timeout)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        try:
            while chunk := s.recv(65536):
                out += chunk
        except socket.timeout:
            pass
    return out


@pytest.fixture
def split(legate, nginx):
    port, sport = free_port(), free_port()
    arms = {"production": (90, [nginx.ports["production"]]),
            "experiment": (10, [nginx.ports["experiment"]])}
    lg = legate(split_pool(port, arms), wait_addr=("127.0.0.1", port), args=("-s", str(sport)))
    return port, sport, lg


# ---------------------------------------------------------------- the split

def next_response(sock, buf=b""):
    """The next response with a Content-Length body on a keep-alive socket,
    `buf` holding bytes already read: (head, body, bytes read past it)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {buf[:200]!r}"
        buf += chunk
    head, buf = buf.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"\r\ncontent-length:", 1)[1].split(b"\r\n", 1)[0])
    while len(buf) < length:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {len(buf)} of {length} body bytes"
        buf += chunk
    return head, buf[:length], buf[length:]


def read_response(sock):
    """One response with a Content-Length body from a keep-alive socket."""
    return next_response(sock)[:2]


def pipelined_bodies(port, header, values, depth=100):
    """The bodies of one GET per value of `header`, sent `depth` at a time
    on one keep-alive connection (legate answers pipelined requests in
    order)."""
    bodies, buf = [], b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for i in range(0, len(values), depth):
            batch = values[i:i + depth]
            s.sendall(b"".join(f"GET / HTTP/1.1\r\nHost: x\r\n{header}: {v}\r\n\r\n".encode()
                               for v in batch))
            for _ in batch:
                _, body, buf = next_response(s, buf)
                bodies.append(body.decode())
    assert buf == b"", buf[:200]
    return bodies


def test_split_ratio_over_random_keys(split):
    port, sport, lg = split
    counts = {"production\n": 0, "experiment\n": 0}
    rnd = random.Random(7)
    n = 20000
    for body in pipelined_bodies(port, "X-User", [str(rnd.getrandbits(64)) for _ in range(n)]):
        counts[body] += 1
    share = counts["experiment\n"] / n
    # 10% of 20,000: the standard deviation is 0.21%, allow five of them
    assert abs(share - 0.10) < 0.0106, counts
    st = stats_json(sport)["web"]["arms"]
    assert st["production"]["requests"] == counts["production\n"]
    assert st["experiment"]["requests"] == counts["experiment\n"]
    assert st["production"]["responses_2xx"] == counts["production\n"]
    assert st["experiment"]["latency_p99_us"] > 0


def test_arm_stats_count_status_classes_and_errors(legate, nginx, upstream):
    """Each arm's stats count what the test sent it, by status class, with
    upstream errors (legate's 502 for bad framing) and latency percentiles
    in order."""
    port, sport = free_port(), free_port()
    arms = {"production": (50, [upstream.port]), "experiment": (50, [nginx.ports["experiment"]])}
    legate(split_pool(port, arms), wait_addr=("127.0.0.1", port), args=("-s", str(sport)))
    sent = [("production", "/", 200)] * 5 + [("production", "/bad", 502)] * 3 + \
        [("experiment", "/nobody", 204)] * 2 + [("experiment", "/big/none", 404)] * 4
    with requests.Session() as s:
        for arm, path, status in sent:
            r = s.get(f"http://127.0.0.1:{port}{path}", headers={"X-Arm": arm}, timeout=10)
            assert r.status_code == status, (arm, path, r.status_code)
    st = stats_json(sport)["web"]["arms"]
    for arm in arms:
        got = st[arm]
        want = {f"responses_{c}xx": sum(1 for a, _, code in sent if a == arm and code // 100 == c)
                for c in (1, 2, 3, 4, 5)}
        assert {k: got[k] for k in want} == want, (arm, got)
        assert got["requests"] == sum(1 for a, _, _ in sent if a == arm)
        assert 0 < got["latency_p50_us"] <= got["latency_p90_us"] <= got["latency_p99_us"]
    assert st["production"]["upstream_errors"] == 3 and st["experiment"]["upstream_errors"] == 0
    assert st["production"]["timeouts"] == st["experiment"]["timeouts"] == 0


def test_sticky_keys_stay_in_their_arm_across_restarts(legate, nginx, split):
    port, sport, lg = split
    keys = [f"user-{i}" for i in range(1000)]
    s = requests.Session()
    first = {k: s.get(f"http://127.0.0.1:{port}/", headers={"X-User": k}).text for k in keys}
    again = {k: s.get(f"http://127.0.0.1:{port}/", headers={"X-User": k}).text for k in keys}
    assert first == again
    assert 40 < sum(v == "experiment\n" for v in first.values()) < 170
    lg.stop()
    port2 = free_port()
    arms = {"production": (90, [nginx.ports["production"]]),
            "experiment": (10, [nginx.ports["experiment"]])}
    legate(split_pool(port2, arms), wait_addr=("127.0.0.1", port2), name="replica")
    s2 = requests.Session()
    replica = {k: s2.get(f"http://127.0.0.1:{port2}/", headers={"X-User": k}).text for k in keys}
    assert replica == first


def test_override_header_wins_and_weights_zero_and_all(legate, nginx):
    port = free_port()
    arms = {"production": (0, [nginx.ports["production"]]),
            "experiment": (100, [nginx.ports["experiment"]])}
    legate(split_pool(port, arms), wait_addr=("127.0.0.1", port))
    s = requests.Session()
    for i in range(200):
        assert s.get(f"http://127.0.0.1:{port}/", headers={"X-User": str(i)}).text == "experiment\n"
    r = s.get(f"http://127.0.0.1:{port}/", headers={"X-Arm": "production"})
    assert r.text == "production\n"
    assert r.headers["X-Legate-Arm"] == "production"
    assert s.get(f"http://127.0.0.1:{port}/", headers={"X-Arm": "nosuch"}).text == "experiment\n"


def test_requests_without_the_key_split_by_weight(legate, nginx):
    """No sticky key: each request draws an arm by weight, and weights are
    proportions (3 and 1 give a quarter, though they sum to 4)."""
    port = free_port()
    arms = {"production": (3, [nginx.ports["production"]]),
            "experiment": (1, [nginx.ports["experiment"]])}
    legate(split_pool(port, arms), wait_addr=("127.0.0.1", port))
    n = 4000
    bodies = pipelined_bodies(port, "X-Not-The-Key", [str(i) for i in range(n)])
    share = bodies.count("experiment\n") / n
    # a quarter of 4,000: the standard deviation is 0.68%, allow five of them
    assert abs(share - 0.25) < 0.034, share
    assert bodies.count("production\n") + bodies.count("experiment\n") == n


def test_cookie_and_client_address_stickiness(legate, nginx):
    for sticky, ask in (("{ cookie: uid }", lambda s, p, k: s.get(p, cookies={"uid": k})),
                        ("{ client_address: true }", lambda s, p, k: s.get(p))):
        port = free_port()
        body = split_pool(port, {"production": (50, [nginx.ports["production"]]),
                                 "experiment": (50, [nginx.ports["experiment"]])})
        body = body.replace("{ header: X-User }", sticky)
        lg = legate(body, wait_addr=("127.0.0.1", port), name=f"sticky{port}")
        s = requests.Session()
        url = f"http://127.0.0.1:{port}/"
        seen = {k: ask(s, url, k).text for k in ("a", "b", "c", "d", "e", "f", "g", "h")}
        assert seen == {k: ask(s, url, k).text for k in seen}
        if "cookie" in sticky:
            assert len(set(seen.values())) == 2  # keys do spread
        else:
            assert len(set(seen.values())) == 1  # one client, one arm
        lg.stop()


# ---------------------------------------------------------------- proxying

def test_keep_alive_reuses_upstream_connections(legate, upstream):
    port, sport = free_port(), free_port()
    legate(plain_pool(port, [upstream.port]), wait_addr=("127.0.0.1", port),
           args=("-s", str(sport)))
    s = requests.Session()
    for i in range(200):
        assert s.get(f"http://127.0.0.1:{port}/k{i}").status_code == 200
    assert upstream.connections <= 2, upstream.connections
    assert len(upstream.requests) == 200


def test_request_headers_rewritten(legate, upstream):
    port = free_port()
    legate(plain_pool(port, [upstream.port]), wait_addr=("127.0.0.1", port))
    r = raw(port, b"GET /h HTTP/1.1\r\nHost: x\r\nConnection: close, X-Secret\r\n"
                  b"X-Secret: 1\r\nKeep-Alive: 5\r\nTE: trailers\r\nX-Forwarded-For: 10.0.0.1\r\n"
                  b"X-Kept: yes\r\n\r\n")
    assert r.startswith(b"HTTP/1.1 200")
    assert b"Connection: close" in r
    seen = upstream.requests[-1][2]
    assert "X-Secret" not in seen and "Keep-Alive" not in seen and "TE" not in seen
    assert seen["X-Forwarded-For"] == "10.0.0.1, 127.0.0.1"
    assert seen["X-Kept"] == "yes"
    assert seen["Via"] == "1.1 legate"


def test_forwarded_for_and_via_can_be_switched_off(legate, upstream):
    """`forwarded_for: false` passes X-Forwarded-For as the client sent it
    (or not at all), `via: false` adds Via to neither side; by default both
    are added, Via to the response too."""
    cases = [  # extra config, X-Forwarded-For seen (client sent one / none), Via
        ("", "10.0.0.1, 127.0.0.1", "127.0.0.1", "1.1 legate"),
        ("  forwarded_for: false\n  via: false\n", "10.0.0.1", None, None)]
    for extra, appended, alone, via in cases:
        port = free_port()
        lg = legate(plain_pool(port, [upstream.port], extra), wait_addr=("127.0.0.1", port))
        r = raw(port, b"GET /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                      b"X-Forwarded-For: 10.0.0.1\r\n\r\n")
        head = r.split(b"\r\n\r\n", 1)[0].decode()
        assert head.startswith("HTTP/1.1 200"), head
        assert ("Via: 1.1 legate" in head.split("\r\n")) == (via is not None), head
        seen = upstream.requests[-1][2]
        assert (seen["X-Forwarded-For"], seen.get("Via")) == (appended, via)
        raw(port, b"GET /h HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert upstream.requests[-1][2].get("X-Forwarded-For") == alone
        lg.stop()


def test_long_head_passes_intact_and_hop_by_hop_names_in_any_case(legate, upstream):
    """A head longer than the buffer legate composes heads in (2 KiB) goes out
    whole and in order; hop-by-hop names and names listed by several
    Connection headers are dropped whatever their case."""
    port = free_port()
    legate(plain_pool(port, [upstream.port]), wait_addr=("127.0.0.1", port))
    big = "b" * 5000
    fields = "".join(f"X-F{i}: {i}\r\n" for i in range(40))
    r = raw(port, (f"GET /long HTTP/1.1\r\nHost: x\r\nX-Big: {big}\r\n{fields}"
                   f"KEEP-ALIVE: 5\r\ncOnNeCtIoN: X-A\r\nConnection: x-b, close\r\n"
                   f"x-a: 1\r\nX-B: 2\r\nX-After: end\r\n\r\n").encode())
    assert r.startswith(b"HTTP/1.1 200")
    seen = upstream.requests[-1][2]
    assert seen["X-Big"] == big
    assert [seen[f"X-F{i}"] for i in range(40)] == [str(i) for i in range(40)]
    assert seen["X-After"] == "end"
    lower = {k.lower() for k in seen}
    assert not lower & {"keep-alive", "connection", "x-a", "x-b"}, seen


def test_bodies_by_length_and_chunked_both_ways(legate, upstream):
    port = free_port()
    legate(plain_pool(port, [upstream.port]), wait_addr=("127.0.0.1", port))
    s = requests.Session()
    data = os.urandom(300000)
    assert s.post(f"http://127.0.0.1:{port}/p", data=data).content == data
    gen = (data[i:i + 7000] for i in range(0, len(data), 7000))
    assert s.post(f"http://127.0.0.1:{port}/c", data=gen).content == data  # chunked upload
    r = s.get(f"http://127.0.0.1:{port}/chunked")
    assert r.content == b"hello chunked world"
    assert r.headers["Transfer-Encoding"] == "chunked"
    r = s.get(f"http://127.0.0.1:{port}/eof")  # close-delimited: re-chunked for us
    assert r.content == b"until the end"
    assert s.head(f"http://127.0.0.1:{port}/h").content == b""


def test_head_204_and_pipelined_requests_in_order(legate, nginx):
    port = free_port()
    legate(plain_pool(port, [nginx.ports["production"]]), wait_addr=("127.0.0.1", port))
    out = raw(port, b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET /nobody HTTP/1.1\r\nHost: x\r\n\r\n"
                    b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    parts = out.split(b"HTTP/1.1 ")
    assert [p[:3] for p in parts[1:]] == [b"200", b"204", b"200"]
    assert out.endswith(b"production\n")
    assert out.count(b"production") == 1  # HEAD carried no body


def test_expect_100_continue(legate, upstream):
    port = free_port()
    legate(plain_pool(port, [upstream.port]), wait_addr=("127.0.0.1", port))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Expect: 100-continue\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 100")
        s.sendall(b"hello")
        time.sleep(0.2)
        assert s.recv(1000).split(b"\r\n\r\n", 1)[1] == b"hello"


def test_http10_client(legate, nginx):
    port = free_port()
    legate(plain_pool(port, [nginx.ports["production"]]), wait_addr=("127.0.0.1", port))
    out = raw(port, b"GET / HTTP/1.0\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200") and out.endswith(b"production\n")



def test_sigterm_answers_begun_requests_then_closes_idle_clients(legate, upstream):
    """Stopping: a request already sent (in legate's socket, at the
    upstream, or half a head) gets its response with Connection: close; a
    keep-alive client between requests is closed at once."""
    port = free_port()
    lg = legate(plain_pool(port, [upstream.port]), wait_addr=("127.0.0.1", port))
    get = b"GET /g HTTP/1.1\r\nHost: x\r\n\r\n"
    clients = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(3)]
    for c in clients:  # accepted and kept alive
        c.sendall(get)
        out = b""
        while b"\r\n\r\n" not in out or len(out.split(b"\r\n\r\n", 1)[1]) < int(
                out.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0]):
            out += c.recv(65536)
        assert out.startswith(b"HTTP/1.1 200")
    idle, at_upstream, in_socket = clients
    at_upstream.sendall(b"GET /sleep/0.5 HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_for(lambda: any(r[1] == "/sleep/0.5" for r in upstream.requests), what="the slow request")
    half = socket.create_connection(("127.0.0.1", port), timeout=10)
    half.sendall(get[:20])  # half a head: a request under way
    time.sleep(0.2)
    in_socket.sendall(get)  # in legate's socket when the signal lands, maybe unseen
    lg.proc.send_signal(15)
    time.sleep(0.2)
    half.sendall(get[20:])
    out = b""
    while chunk := half.recv(65536):  # answered, then closed
        out += chunk
    assert out.startswith(b"HTTP/1.1 200") and b"connection: close" in out.lower(), out
    half.close()
    for c in (at_upstream, in_socket):
        out = b""
        while chunk := c.recv(65536):  # answered, then closed
            out += chunk
        head = out.split(b"\r\n\r\n", 1)[0].lower()
        assert head.startswith(b"http/1.1 200"), out
        # the slow request surely meets the drain; the other may have been
        # answered before the signal, then closed as an idle client
        assert c is in_socket or b"connection: close" in head, out
    assert idle.recv(100) == b""
    assert lg.proc.wait(10) == 0
    for c in clients:
        c.close()


def test_reload_hands_keep_alive_clients_over(legate, nginx):
    """A reload closes no keep-alive client: one between requests moves to
    the new configuration at once, with its socket unread; one with a
    request under way (here half a head) finishes it on the old one, then
    moves. Their next requests are answered by the new arm on the same
    sockets (closing them would race a request the client is sending, and
    a POST lost that way is not resent). requests.Session clients POSTing
    through ten reloads see no error."""
    port = free_port()
    conf = {arm: split_pool(port, {arm: (1, [nginx.ports[arm]])})
            for arm in ("production", "experiment")}
    lg = legate(conf["production"], wait_addr=("127.0.0.1", port))
    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    socks = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(4)]
    for s in socks:
        s.sendall(get)
        assert read_response(s)[1] == b"production\n"
    mid = socket.create_connection(("127.0.0.1", port), timeout=10)
    mid.sendall(get[:18])  # half a head: the old generation finishes this request
    time.sleep(0.2)
    lg.conf_path.write_text(conf["experiment"])
    lg.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reloaded" in lg.log(), what="reload")
    mid.sendall(get[18:])
    head, body = read_response(mid)
    assert body == b"production\n" and b"connection: close" not in head.lower()
    wait_for(lambda: "finished draining" in lg.log(), timeout=10, what="old generation gone")
    for s in socks + [mid]:
        s.sendall(get)
        head, body = read_response(s)  # the same socket, answered by the new arm
        assert body == b"experiment\n" and b"connection: close" not in head.lower()
        s.close()
    assert "took over" in lg.log()
    errors, done, stop = [], [0], threading.Event()

    def poster():
        with requests.Session() as session:
            while not stop.is_set():
                try:
                    r = session.post(f"http://127.0.0.1:{port}/", data=b"x" * 100, timeout=10)
                    assert r.status_code == 200, r.status_code
                    done[0] += 1
                except Exception as e:  # noqa: BLE001 - reported below
                    errors.append(repr(e))
                time.sleep(0.003)

    threads = [threading.Thread(target=poster) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for r in range(10):
            time.sleep(0.15)
            before = lg.log().count("configuration reloaded")
            lg.conf_path.write_text(conf["production" if r % 2 else "experiment"])
            lg.proc.send_signal(signal.SIGHUP)
            wait_for(lambda: lg.log().count("configuration reloaded") > before, what="reload")
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join(20)
    assert errors == [] and done[0] > 30, (errors[:3], done[0])


@pytest.mark.parametrize("sig", ["SIGHUP", "SIGTERM"])
def test_a_response_still_being_written_when_draining_begins_is_not_cut(legate, nginx, sig):
    """A keep-alive client reads a 3 MB response slowly: when the drain
    begins, the response may be complete at legate but not yet written. It
    is written whole; then, at a reload, the client moves to the new
    generation (its next request is answered) and at a stop it is closed.
    (Before, it was closed at once and lost the end of the response.)"""
    body = os.urandom(3 * 1000 * 1000)
    (nginx.dir / "big").write_bytes(body)
    port = free_port()
    lg = legate(plain_pool(port, [nginx.ports["production"]]), wait_addr=("127.0.0.1", port))
    c = socket.socket()
    c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a slow reader's small window
    c.settimeout(10)
    c.connect(("127.0.0.1", port))
    c.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    time.sleep(1.0)  # legate takes what it can while the client reads nothing
    lg.proc.send_signal(getattr(signal, sig))
    head, got = read_response(c)
    assert got == body
    if sig == "SIGHUP":
        wait_for(lambda: "finished draining" in lg.log(), timeout=10, what="old generation gone")
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert read_response(c)[1] == b"production\n"
    else:
        assert c.recv(100) == b""
        assert lg.proc.wait(10) == 0
    c.close()


# ---------------------------------------------------------------- errors

def test_refused_upstream_is_502_and_retried_on_another_server(legate, nginx):
    dead = free_port()
    port, sport = free_port(), free_port()
    legate(plain_pool(port, [dead]), wait_addr=("127.0.0.1", port), name="dead",
           args=("-s", str(sport)))
    r = requests.get(f"http://127.0.0.1:{port}/")
    assert r.status_code == 502
    assert stats_json(sport)["web"]["arms"]["default"]["upstream_errors"] >= 1
    port2 = free_port()
    legate(plain_pool(port2, [dead, nginx.ports["production"]]).replace("workers: 1",
                                                                        "workers: 1"),
           wait_addr=("127.0.0.1", port2), name="retry")
    for _ in range(10):
        assert requests.get(f"http://127.0.0.1:{port2}/").text == "production\n"


def test_upstream_timeout_is_504(legate, upstream):
    port = free_port()
    legate(plain_pool(port, [upstream.port], extra="  timeout: { request: 300ms }\n"),
           wait_addr=("127.0.0.1", port))
    t = time.monotonic()
    r = requests.get(f"http://127.0.0.1:{port}/sleep/4")
    assert r.status_code == 504
    assert time.monotonic() - t < 2.5


def test_bad_upstream_framing_is_502_and_connection_discarded(legate, upstream):
    port = free_port()
    legate(plain_pool(port, [upstream.port]), wait_addr=("127.0.0.1", port))
    s = requests.Session()
    assert s.get(f"http://127.0.0.1:{port}/bad").status_code == 502
    before = upstream.connections
    assert s.get(f"http://127.0.0.1:{port}/ok").status_code == 200
    assert upstream.connections == before + 1


def test_a_response_before_the_request_body_ended_retires_the_connection(legate, upstream):
    """An upstream answers a POST after its head, its body still coming:
    the client gets that answer at once and then a close, and the upstream
    connection, whose next bytes would be the rest of that body, is never
    used again; the next request goes out on a fresh one."""
    port = free_port()
    legate(plain_pool(port, [upstream.port]), wait_addr=("127.0.0.1", port))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"POST /early HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
        s.sendall(b"x" * 65536)
        head, body = read_response(s)  # while a sixteenth of the body is sent
        assert head.startswith(b"HTTP/1.1 413") and body == b"nope", head
        assert b"connection: close" in head.lower()
        try:
            s.sendall(b"x" * 65536)  # still sending: read and dropped, or reset
        except OSError:
            pass
    assert upstream.connections == 1
    r = requests.get(f"http://127.0.0.1:{port}/next", timeout=10)
    assert r.status_code == 200 and r.json()["path"] == "/next"
    assert upstream.connections == 2
    assert [q[1] for q in upstream.requests] == ["/early", "/next"]


class DroppingUpstream:
    """A keep-alive upstream that answers the first request on each
    connection and, depending on `mode`, reads the second and closes
    without a word ("drop": the race where a server times a kept-alive
    connection out as a request arrives) or closes the connection 0.2 s
    after its first answer ("idle"). Records (connection, method, path)."""

    def __init__(self):
        self.mode = "drop"
        self.seen = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        n = 0
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            n += 1
            threading.Thread(target=self.serve, args=(c, n), daemon=True).start()

    def read_request(self, f):
        line = f.readline()
        if not line:
            return None
        length = 0
        while (h := f.readline()) not in (b"\r\n", b""):
            if h.lower().startswith(b"content-length:"):
                length = int(h.split(b":")[1])
        f.read(length)
        method, path = line.split()[:2]
        return method.decode(), path.decode()

    def serve(self, c, n):
        with c, c.makefile("rb") as f:
            for i in range(2):
                req = self.read_request(f)
                if req is None:
                    return
                self.seen.append((n,) + req)
                if i == 1:
                    return  # the second request on a connection: dropped unanswered
                body = req[1].encode()
                c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                if self.mode == "idle":
                    time.sleep(0.2)
                    return

    def close(self):
        self.sock.close()


def test_a_kept_alive_connection_the_upstream_dropped(legate):
    """A request sent on a reused connection that the upstream closes
    unanswered is sent again on a new connection if it is idempotent and has
    no body, and answered 502 (never replayed) if not; a connection the upstream closed
    while it sat idle is not reused at all."""
    up = DroppingUpstream()
    try:
        port, sport = free_port(), free_port()
        legate(plain_pool(port, [up.port]), wait_addr=("127.0.0.1", port),
               args=("-s", str(sport)))
        s = requests.Session()
        url = f"http://127.0.0.1:{port}"
        assert s.get(f"{url}/a", timeout=5).text == "/a"
        r = s.get(f"{url}/b", timeout=5)  # reuses connection 1, which the upstream drops
        assert (r.status_code, r.text) == (200, "/b")
        assert up.seen == [(1, "GET", "/a"), (1, "GET", "/b"), (2, "GET", "/b")]
        r = s.post(f"{url}/c", data=b"once", timeout=5)  # reuses connection 2: dropped
        assert r.status_code == 502
        assert up.seen[3:] == [(2, "POST", "/c")]
        assert stats_json(sport)["web"]["arms"]["default"]["upstream_errors"] == 1
        # idempotent but with a body, already streamed: not sent again either
        assert s.get(f"{url}/p", timeout=5).text == "/p"  # connection 3
        r = s.put(f"{url}/q", data=b"body", timeout=5)  # reuses it: dropped
        assert r.status_code == 502
        assert up.seen[4:] == [(3, "GET", "/p"), (3, "PUT", "/q")]
        up.mode = "idle"
        assert s.get(f"{url}/d", timeout=5).text == "/d"  # a new connection, closed 0.2 s later
        time.sleep(0.6)
        r = s.post(f"{url}/e", data=b"once", timeout=5)
        assert (r.status_code, r.text) == (200, "/e")
        assert up.seen[6:] == [(4, "GET", "/d"), (5, "POST", "/e")]
    finally:
        up.close()


@pytest.mark.parametrize("line,status", [(b"RTSP/1.0 200 OK", 502), (b"ICE/1.0 200 OK", 502),
                                         (b"HTTP/2.0 200 OK", 502), (b"HTTP/0.9 200 OK", 502),
                                         (b"HTTP/1.1 099 OK", 502), (b"HTTP/1.1 600 OK", 502),
                                         (b"\r\nHTTP/1.1 200 OK", 200)])
def test_a_response_not_in_http_1x_is_502(legate, line, status):
    """An upstream answering in another protocol or version, or with a
    status out of 100-599, is a bad upstream: the client gets 502, not that
    answer relabelled HTTP/1.1 (a status of 099 once went out as a 1xx with
    its body in front of it). An empty line before an HTTP/1.1 status line
    is tolerated."""
    up = ScriptedUpstream({"/": line + b"\r\nContent-Length: 2\r\n\r\nok"})
    try:
        port = free_port()
        legate(plain_pool(port, [up.port]), wait_addr=("127.0.0.1", port))
        out = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 %d" % status), out[:200]
    finally:
        up.close()


class ScriptedUpstream(DroppingUpstream):
    """A keep-alive upstream answering each path with fixed bytes; counts
    connections in `seen` as DroppingUpstream does."""

    def __init__(self, answers):
        self.answers = answers
        super().__init__()

    def serve(self, c, n):
        with c, c.makefile("rb") as f:
            while (req := self.read_request(f)) is not None:
                self.seen.append((n,) + req)
                c.sendall(self.answers[req[1]])


def test_an_upstreams_endless_trailers_end_the_response(legate):
    """An upstream's trailer section is bounded like a client's: past the
    head limit the response is cut (its head already went out) and the
    upstream counts an error, rather than legate reading trailers forever
    and ending the body cleanly."""
    up = ScriptedUpstream({"/": b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                b"2\r\nok\r\n0\r\n" + b"X-T: v\r\n" * 10000 + b"\r\n"})
    try:
        port = free_port()
        lg = legate(plain_pool(port, [up.port]), wait_addr=("127.0.0.1", port))
        out = raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200")
        assert not out.endswith(b"0\r\n\r\n"), out[-40:]  # no clean end
        assert "trailer section too large" in lg.log()
        assert stats_json(lg.stats_port)["web"]["arms"]["default"]["upstream_errors"] == 1
    finally:
        up.close()


def test_bodiless_statuses_end_at_their_head(legate):
    """RFC 9112 6.3: a 1xx, 204 or 304 ends at its head whatever its
    Content-Length or Transfer-Encoding say. A 304 announcing the length of
    the 200 it stands for once left legate waiting for a body that never
    comes; a 204 announcing one passed it on. Heads go out without framing
    a 204 may not have, and the connection stays in step."""
    up = ScriptedUpstream({
        "/304": b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 5\r\n\r\n",
        "/204": b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n",
        "/204te": b"HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n",
        "/ok": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    })
    try:
        port = free_port()
        legate(plain_pool(port, [up.port]), wait_addr=("127.0.0.1", port))
        s = requests.Session()
        url = f"http://127.0.0.1:{port}"
        r = s.get(f"{url}/304", timeout=5)
        assert r.status_code == 304 and r.headers["Content-Length"] == "5" and r.content == b""
        for path in ("/204", "/204te"):
            r = s.get(f"{url}{path}", timeout=5)
            assert r.status_code == 204 and r.content == b""
            assert "Content-Length" not in r.headers and "Transfer-Encoding" not in r.headers
        assert s.get(f"{url}/ok", timeout=5).text == "ok"
        assert {n for n, _, _ in up.seen} == {1}, up.seen  # one connection, in step throughout
    finally:
        up.close()


SMUGGLING = {
    "CL and TE": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                  b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "duplicate CL": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2"
                     b"\r\n\r\nab", 400),
    "invalid CL": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1x\r\n\r\na", 400),
    "TE not last chunked": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip"
                            b"\r\n\r\n", 400),
    "chunked twice": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked"
                      b"\r\n\r\n0\r\n\r\n", 400),
    "TE on HTTP/1.0": (b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400),
    "obs-fold": (b"GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    "space before colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400),
    "bare LF": (b"GET / HTTP/1.1\nHost: x\n\n", 400),
    "bare CR": (b"GET / HTTP/1.1\r\nHost: x\rY\r\n\r\n", 400),
    "NUL": (b"GET / HTTP/1.1\r\nHost: x\x00\r\n\r\n", 400),
    "bad chunk size": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                       b"zz\r\nab\r\n0\r\n\r\n", 400),
    "bad chunk extension": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                            b"2;\"\r\nab\r\n0\r\n\r\n", 400),
    "huge trailer section": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"3\r\nabc\r\n0\r\n" + b"X-T: v\r\n" * 10000 + b"\r\n", 431),
    "huge chunk extension": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                             b"3;" + b"e" * 40000 + b"\r\nabc\r\n0\r\n\r\n", 400),
    "unknown coding": (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                       b"0\r\n\r\n", 501),
    "no version (HTTP/0.9)": (b"GET /\r\n\r\n", 400),
    "HTTP/0.9 named": (b"GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505),
    "HTTP/2.0 in a request line": (b"GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505),
    "RTSP, not HTTP": (b"PLAY / RTSP/1.0\r\nHost: x\r\n\r\n", 400),
    "RTSP method, no version": (b"PLAY /x\r\nHost: x\r\n\r\n", 400),
    "two Hosts": (b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400),
    "two Hosts in HTTP/1.0": (b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n", 400),
    "no Host in HTTP/1.1": (b"GET / HTTP/1.1\r\nX-A: a\r\n\r\n", 400),
    "invalid Host": (b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400),
    "userinfo in Host": (b"GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", 400),
    "CONNECT (no tunnels)": (b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\n"
                             b"GET /in-the-tunnel HTTP/1.1\r\nHost: x\r\n\r\n", 501),
    "target neither path nor URI": (b"GET x/y HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "URI not http(s)": (b"GET ftp://x/y HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "URI with userinfo": (b"GET http://user@x/y HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "URI without a host": (b"GET http:///y HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "'*' on GET": (b"GET * HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "huge header": (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n", 431),
    "huge target": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
}


@pytest.mark.parametrize("case", sorted(SMUGGLING))
def test_smuggling_and_abuse_refused_before_any_upstream(case, legate, upstream):
    port = free_port()
    legate(plain_pool(port, [upstream.port]), wait_addr=("127.0.0.1", port))
    data, status = SMUGGLING[case]
    out = raw(port, data)
    assert out.startswith(b"HTTP/1.1 %d" % status), out[:200]
    assert b"Connection: close" in out.split(b"\r\n\r\n")[0]
    # chunked bodies in the bad cases start after the head: the upstream
    # may have seen the head of the chunk cases, never a smuggled request
    if case not in ("bad chunk size", "bad chunk extension", "huge trailer section",
                    "huge chunk extension"):
        assert upstream.requests == [], upstream.requests
        assert upstream.connections == 0  # nor a method the upstream has no handler for


def test_a_client_still_sending_a_refused_body_reads_the_answer(legate, upstream):
    """A request refused at its head (two Content-Lengths) with 64 MiB of
    body behind it: legate answers 400, sends FIN and drops the rest, so the
    client's send completes and it reads the 400 rather than a reset; the
    same through python-requests, whose Content-Length beside an unknown
    transfer coding is refused (400). A client that says nothing after its
    400 is closed after the lingering bound (5 s), and SIGTERM closes a
    lingering client at once rather than waiting for that bound."""
    port, sport = free_port(), free_port()
    lg = legate(plain_pool(port, [upstream.port]).replace("shutdown_grace: 2s",
                                                          "shutdown_grace: 30s"),
                wait_addr=("127.0.0.1", port), args=("-s", str(sport)))
    body = b"x" * (64 << 20)
    with socket.create_connection(("127.0.0.1", port), timeout=20) as s:
        s.sendall(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                  b"Content-Length: 6\r\n\r\n" + body)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    assert out.startswith(b"HTTP/1.1 400"), out[:200]
    r = requests.post(f"http://127.0.0.1:{port}/", data=body, timeout=20,
                      headers={"Transfer-Encoding": "gzip"})
    assert r.status_code == 400 and "Content-Length" in r.text, r.text
    quiet = socket.create_connection(("127.0.0.1", port), timeout=10)
    quiet.sendall(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")
    assert quiet.recv(200).startswith(b"HTTP/1.1 400")
    assert quiet.recv(200) == b""  # FIN right after the answer
    wait_for(lambda: stats_json(sport)["web"]["client_connections"] == 0, timeout=10,
             what="the silent client closed after lingering")
    quiet.close()
    assert upstream.requests == []
    again = socket.create_connection(("127.0.0.1", port), timeout=10)
    again.sendall(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n")
    assert again.recv(200).startswith(b"HTTP/1.1 400")
    assert again.recv(200) == b""  # lingering now
    t = time.monotonic()
    lg.stop()
    assert time.monotonic() - t < 3
    again.close()


def test_head_limit_is_exact(legate, upstream):
    """A request head of exactly 32 KiB (the limit) is forwarded; one byte
    more is 431, also when that byte is the head's last (a head that ended
    on the one byte read past the limit once passed)."""
    port = free_port()
    legate(plain_pool(port, [upstream.port]), wait_addr=("127.0.0.1", port))
    start = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: "
    fill = 32 * 1024 - len(start) - len(b"\r\n\r\n")
    exact = start + b"a" * fill + b"\r\n\r\n"
    assert len(exact) == 32 * 1024
    assert raw(port, exact).startswith(b"HTTP/1.1 200"), "a head at the limit is served"
    over = start + b"a" * (fill + 1) + b"\r\n\r\n"
    assert raw(port, over).startswith(b"HTTP/1.1 431")
    assert len(upstream.requests) == 1


def test_header_timeout_defeats_slowloris(legate, upstream):
    port = free_port()
    legate(plain_pool(port, [upstream.port], extra="  timeout: { header: 500ms }\n"),
           wait_addr=("127.0.0.1", port))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET / HTTP/1.1\r\n")
        t = time.monotonic()
        for _ in range(5):
            time.sleep(0.15)
            try:
                s.sendall(b"X-A: b\r\n")
            except OSError:
                break
        out = b""
        while chunk := s.recv(1000):
            out += chunk
    assert out.startswith(b"HTTP/1.1 408")
    assert time.monotonic() - t < 2


def test_client_connection_limit_holds(legate, nginx):
    """`client_connections: 3` on an http pool: three keep-alive clients
    are served on, a fourth is closed at once, a newcomer is served once
    one of the three leaves."""
    port = free_port()
    lg = legate(plain_pool(port, [nginx.ports["production"]], "  client_connections: 3\n"),
                wait_addr=("127.0.0.1", port))

    def answered(s):
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        return read_response(s)[1] == b"production\n"
    client_limit_holds(lg, port, 3, answered)


def test_never_an_open_proxy(legate, upstream):
    """An absolute-form target goes to the configured upstream whatever it
    names, as an origin-form path with the URI's authority as the Host,
    which replaces the client's (RFC 9112 3.2.2): legate and the upstream
    agree on one name."""
    port = free_port()
    legate(plain_pool(port, [upstream.port]), wait_addr=("127.0.0.1", port))
    for target, host, path in ((b"http://example.invalid/x", b"example.invalid", "/x"),
                               (b"HTTP://Other.Invalid:8080?q=1", b"other", "/?q=1")):
        out = raw(port, b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n"
                        b"Connection: close\r\n\r\n")
        assert out.startswith(b"HTTP/1.1 200")
        method, seen_path, headers = upstream.requests[-1]  # went to our upstream
        assert seen_path == path
        assert upstream.hosts[-1] == [target.split(b"/")[2].split(b"?")[0].decode()]
    out = raw(port, b"OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert upstream.requests[-1][:2] == ("OPTIONS", "*")


def test_large_streams_keep_memory_bounded(legate, upstream, nginx):
    """1 GiB up and down through legate: its RSS does not grow with them."""
    size = 1024 * 1024 * 1024
    with open(nginx.dir / "big", "wb") as f:
        f.truncate(size)
    port = free_port()
    lg = legate(plain_pool(port, [nginx.ports["production"]]), wait_addr=("127.0.0.1", port))
    base = rss_kib(lg.proc.pid)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = 0
        peak = base
        while chunk := s.recv(1 << 20):
            got += len(chunk)
            if got % (16 << 20) < len(chunk):
                peak = max(peak, rss_kib(lg.proc.pid))
                time.sleep(0.01)  # a slow reader
    assert got > size
    assert peak - base < 8 * 1024, (base, peak)
    port2 = free_port()
    lg2 = legate(plain_pool(port2, [upstream.port]), wait_addr=("127.0.0.1", port2), name="up")
    base = rss_kib(lg2.proc.pid)
    block = os.urandom(1 << 20)

    def body():
        for _ in range(1024):
            yield block
    r = requests.post(f"http://127.0.0.1:{port2}/count", data=body())
    assert r.text == str(1024 << 20)  # re-chunked on the way, every byte there
    assert rss_kib(lg2.proc.pid) - base < 8 * 1024


@rss_test
def test_idle_keep_alive_clients_cost_little_memory(legate, nginx, open_files, clients):
    """3,000 keep-alive clients, each after one request: legate holds no
    head or buffer for an idle connection, so they add under 3 MiB."""
    open_files(8000)
    port = free_port()
    lg = legate(plain_pool(port, [nginx.ports["production"]]), wait_addr=("127.0.0.1", port))
    warm = socket.create_connection(("127.0.0.1", port))
    warm.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    warm.recv(1000)
    base = rss_kib(lg.proc.pid)

    def answered(s):
        assert s.recv(1000).startswith(b"HTTP/1.1 200")

    # one after the other: one upstream connection serves all
    clients(port, 3000, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", then=answered)
    time.sleep(0.3)
    added = rss_kib(lg.proc.pid) - base
    warm.close()
    assert added < 3 * 1024, f"{added} KiB for 3000 idle clients"


@rss_test
def test_memory_returns_after_a_burst(legate, nginx, open_files, clients):
    """3,000 clients each hold a 4 KiB head unfinished, then finish it: legate
    needs memory for all of them at once (>10 MiB), and gives it back once
    the burst is over (a second after), keeping what 3,000 idle keep-alive
    connections may cost (< 3 MiB): the allocator is trimmed, and the
    connections, packed in slabs, do not pin the burst's pages."""
    open_files(8000)
    port = free_port()
    lg = legate(plain_pool(port, [nginx.ports["production"]]), wait_addr=("127.0.0.1", port))
    base = rss_kib(lg.proc.pid)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 4000 + b"\r\n"
    socks = clients(port, 3000, head)  # unfinished: legate keeps each
    wait_for(lambda: rss_kib(lg.proc.pid) - base > 10 * 1024, timeout=10)
    peak = rss_kib(lg.proc.pid) - base
    for s in socks:
        s.sendall(b"\r\n")
    for s in socks:
        got = s.recv(1000)
        assert got.startswith(b"HTTP/1.1 200"), got
    time.sleep(2.5)
    idle = rss_kib(lg.proc.pid) - base
    assert idle < 3 * 1024, f"{idle} KiB kept after the burst (peak {peak} KiB)"


# ---------------------------------------------------------------- mirroring

def mirror_pool(port, primary, shadow, percent):
    return (f"legate:\n  workers: 1\n  shutdown_grace: 2s\nweb:\n  listen: 127.0.0.1:{port}\n"
            f"  protocol: http\n  timeout: {{ request: 2s }}\n"
            f"  servers:\n    - 127.0.0.1:{primary}:1\n"
            f"  mirror: {{ percent: {percent}, servers: [127.0.0.1:{shadow}] }}\n")


def test_mirror_gets_its_share_with_bodies(legate, upstream):
    shadow = Upstream()
    try:
        port, sport = free_port(), free_port()
        legate(mirror_pool(port, upstream.port, shadow.port, 30),
               wait_addr=("127.0.0.1", port), args=("-s", str(sport)))
        s = requests.Session()
        n = 1000
        for i in range(n):
            assert s.post(f"http://127.0.0.1:{port}/m{i}", data=f"body-{i}").text == f"body-{i}"
        wait_for(lambda: stats_json(sport)["web"]["mirror"]["responses_2xx"] ==
                 stats_json(sport)["web"]["mirror"]["requests"], what="mirror answers: " +
                 json.dumps(stats_json(sport)["web"]["mirror"]))
        got = len(shadow.requests)
        assert 0.25 * n < got < 0.35 * n, got  # 30% +- 5 points (sd 1.4)
        st = stats_json(sport)["web"]["mirror"]
        assert st["requests"] == got and st["dropped"] == 0
        # the shadow saw the body and the same head, with Connection: close
        path, headers = shadow.requests[0][1], shadow.requests[0][2]
        assert headers["Content-Length"] == str(len("body-" + path[2:]))
        assert headers["Connection"] == "close"
    finally:
        shadow.shutdown()
        shadow.server_close()


def test_hung_or_dead_mirror_never_holds_the_primary(legate, upstream):
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(512)  # accepts (by the kernel), never reads or answers
    dead = free_port()
    try:
        for name, shadow in (("hung", hung.getsockname()[1]), ("dead", dead)):
            port, sport = free_port(), free_port()
            lg = legate(mirror_pool(port, upstream.port, shadow, 100),
                        wait_addr=("127.0.0.1", port), args=("-s", str(sport)), name=name)
            s = requests.Session()
            big = os.urandom(16 << 20)  # more than a connection's buffers and the queue hold
            for i in range(100):
                r = s.post(f"http://127.0.0.1:{port}/count",
                           data=big if i % 50 == 0 else b"x", timeout=5)
                assert r.status_code == 200
            st = stats_json(sport)["web"]
            assert st["arms"]["default"]["requests"] == 100
            assert st["mirror"]["requests"] == 100
            if name == "dead":
                # refused, or dropped first when a big body outran the connect
                wait_for(lambda: stats_json(sport)["web"]["mirror"]["upstream_errors"] +
                         stats_json(sport)["web"]["mirror"]["dropped"] == 100,
                         what="mirror errors counted: " + json.dumps(stats_json(sport)["web"]["mirror"]))
            else:
                assert st["mirror"]["dropped"] >= 1  # the big bodies did not fit
            lg.stop()
    finally:
        hung.close()


def test_connect_timeout_is_504_or_retried_on_a_live_server(legate, nginx):
    from test_tcp import _blackhole
    lsock, fillers, hole = _blackhole()
    try:
        port, sport = free_port(), free_port()
        legate(plain_pool(port, [hole], extra="  timeout: { connect: 300ms }\n"),
               wait_addr=("127.0.0.1", port), args=("-s", str(sport)), name="hole")
        r = requests.post(f"http://127.0.0.1:{port}/", data=b"x")  # not idempotent: no retry
        assert r.status_code == 504
        assert stats_json(sport)["web"]["arms"]["default"]["timeouts"] == 1
        port2 = free_port()
        legate(plain_pool(port2, [hole, nginx.ports["production"]],
                          extra="  timeout: { connect: 300ms }\n"),
               wait_addr=("127.0.0.1", port2), name="retry")
        for _ in range(4):  # round robin sends some to the hole first
            assert requests.get(f"http://127.0.0.1:{port2}/").text == "production\n"
    finally:
        for c in fillers:
            c.close()
        lsock.close()


def test_clients_vanishing_mid_exchange_leave_legate_whole(legate, nginx, upstream):
    """600 clients vanish at every point of an exchange (a reset right after
    the request, in the middle of 50 pipelined ones, halfway through a
    4 MiB response, in the middle of a head; a close with responses
    unread; a half-close, which still gets every response) while a busy
    keep-alive client goes on. Then uploads are cut halfway. Afterwards
    every answer is the right one (a cut exchange never leaves its
    upstream connection for reuse), the client gauge is back to zero, and
    (in the ASan build) legate exits clean."""
    with open(nginx.dir / "big", "wb") as f:
        f.truncate(4 << 20)
    port, sport = free_port(), free_port()
    legate(plain_pool(port, [nginx.ports["production"]]), wait_addr=("127.0.0.1", port),
           args=("-s", str(sport)))
    get = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"
    big = b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n"

    def answered(s, n=10):
        buf = b""
        for _ in range(n):
            _, body, buf = next_response(s, buf)
            assert body == b"production\n"
        assert buf == b""
        return True
    ways = [(get, "reset"), (get * 50, "read-reset"), (big, "read-reset"), (big, "close"),
            (get * 10, "half-close"), (get[:20], "reset")]
    assert vanish_churn(port, 600, ways, lambda s: s.sendall(get * 8) or answered(s, 8),
                        answered) == []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(get * 100)
        answered(s, 100)
    wait_for(lambda: stats_json(sport)["web"]["client_connections"] == 0,
             what="every vanished client forgotten")

    port2 = free_port()
    legate(plain_pool(port2, [upstream.port]), wait_addr=("127.0.0.1", port2), name="up")
    before = upstream.connections
    for i in range(5):
        s = socket.create_connection(("127.0.0.1", port2), timeout=10)
        s.sendall(b"POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n")
        s.sendall(b"x" * (256 << 10))
        wait_for(lambda i=i: len(upstream.requests) > i, what="the cut upload at the upstream")
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
        s.close()
    session = requests.Session()
    for i in range(20):
        assert session.post(f"http://127.0.0.1:{port2}/count", data=b"y" * (1000 + i)).text \
            == str(1000 + i)
    assert upstream.connections - before >= 6  # five cut, each discarded, and a fresh one
