"""Shared fixtures for the black-box tests: start legate and real backends
on ephemeral loopback ports, and stop everything afterwards.

LEGATE_BIN names the binary under test (release or ASan build);
LEGATE_SANITIZED=1 says it is a sanitizer build (RSS bounds are looser)."""

import http.server
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

LEGATE_BIN = os.environ.get(
    "LEGATE_BIN",
    os.path.join(os.path.dirname(__file__), "..", "..", "build", "legate"))
SANITIZED = os.environ.get("LEGATE_SANITIZED") == "1"

# RSS bounds mean nothing under a sanitizer's shadow memory.
rss_test = pytest.mark.skipif(SANITIZED, reason="sanitizer shadow memory makes RSS meaningless")


@pytest.fixture
def open_files():
    """open_files(need): raise this process's RLIMIT_NOFILE to `need` (for
    the test's sockets and the legate it starts), restored after the test;
    skip when the hard limit is lower."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)

    def raise_to(need):
        if hard < need:
            pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is below {need}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))

    yield raise_to
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.fixture
def clients():
    """clients(port, n, first, then=None): open n connections to
    127.0.0.1:port (30 s timeouts) and send connection i `first` (bytes, or
    a function of i); `then(sock)`, if given, runs on each right after its
    send, before the next connects. Returns the sockets; every one is closed
    after the test."""
    opened = []

    def open_clients(port, n, first, then=None):
        made = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            opened.append(s)
            s.sendall(first(i) if callable(first) else first)
            if then is not None:
                then(s)
            made.append(s)
        return made

    yield open_clients
    for s in opened:
        s.close()


# Ports free_port handed out: the kernel may offer a port it just gave
# (bind to 0, then closed) again, and a test taking two ports before either
# is bound would get the same one twice.
_ports_given = set()


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A TCP port nobody listens on right now, and not one this process was
    given before."""
    while True:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def wait_for(pred, timeout=10.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def can_connect(addr, family=socket.AF_INET):
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(addr)
        return True
    except OSError:
        return False


def stats_json(port):
    """The stats listener's JSON on `port` (one connection, read to its close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        return json.loads(recv_all(s))


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class Legate:
    """One legate process with a config written from a string."""

    def __init__(self, tmp_path, conf, args=(), name="legate", preexec=None, binary=None,
                 env=None):
        self.dir = tmp_path
        self.binary = binary or LEGATE_BIN  # a test build of legate, e.g. legate-failalloc
        self.env = env  # extra environment variables
        self.preexec = preexec  # runs in the child before exec (e.g. setrlimit)
        self.conf_path = tmp_path / f"{name}.yml"
        self.conf_path.write_text(conf)
        self.log_path = tmp_path / f"{name}.log"
        self.err_path = tmp_path / f"{name}.stderr"
        self.args = list(args)
        self.proc = None

    def start(self, wait_addr=None, family=socket.AF_INET):
        self.err = open(self.err_path, "w")
        extra = [] if "-s" in self.args else ["-s", str(free_port())]
        self.stats_port = None if "-s" in self.args else int(extra[1])
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf_path), "-o", str(self.log_path),
             "-v", "6"] + extra + self.args,
            stdout=self.err, stderr=self.err, preexec_fn=self.preexec,
            env=None if self.env is None else {**os.environ, **self.env})
        if wait_addr is not None:
            # Listeners are bound before this line is logged; probing with a
            # connection would create a session of its own.
            wait_for(lambda: self.proc.poll() is not None or "started on pid" in self.log(),
                     what=f"legate listening on {wait_addr}")
            assert self.proc.poll() is None, self.diagnostics()
        return self

    def log(self):
        return self.log_path.read_text() if self.log_path.exists() else ""

    def diagnostics(self):
        err = self.err_path.read_text() if self.err_path.exists() else ""
        return f"--- legate log ---\n{self.log()}\n--- stderr ---\n{err}"

    def stop(self, sig=signal.SIGTERM, timeout=20):
        """Stop legate and insist it exits 0 with no sanitizer report."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("legate did not exit after SIGTERM\n" + self.diagnostics())
        self.err.close()
        self.proc = None
        err = self.err_path.read_text()
        assert "ERROR: AddressSanitizer" not in err, err
        assert "runtime error:" not in err, err
        assert "LeakSanitizer" not in err, err
        assert rc == 0, f"legate exited {rc}\n" + self.diagnostics()
        return rc


@pytest.fixture
def legate(tmp_path):
    """Factory: legate(conf, wait_addr=...) starts one; all are stopped (and
    checked for a clean exit) at teardown."""
    started = []

    def make(conf, wait_addr=None, family=socket.AF_INET, args=(), name="legate", preexec=None,
             binary=None, env=None):
        lg = Legate(tmp_path, conf, args=args, name=f"{name}{len(started)}", preexec=preexec,
                    binary=binary, env=env)
        started.append(lg)
        return lg.start(wait_addr, family)

    yield make
    for lg in started:
        lg.stop()


class EchoServer:
    """A threaded TCP echo server. mode 'echo' returns what it gets;
    'count' reads to EOF then answers the byte count (proves half-close);
    'name' sends its name and closes; 'tag' answers each read with its name."""

    def __init__(self, mode="echo", name="echo", family=socket.AF_INET, host="127.0.0.1",
                 port=0):
        self.mode = mode
        self.name = name
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, port))
        self.sock.listen(4096)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.active = 0
        self.lock = threading.Lock()
        self.stopping = False
        self.threads = []
        t = threading.Thread(target=self._accept_loop, daemon=True)
        t.start()

    def _accept_loop(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.active += 1
            t = threading.Thread(target=self._serve, args=(c,), daemon=True)
            t.start()

    def _serve(self, c):
        try:
            if self.mode == "name":
                c.sendall(self.name.encode())
            elif self.mode == "tag":
                while c.recv(65536):
                    c.sendall(self.name.encode())
            elif self.mode == "count":
                n = 0
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    n += len(d)
                c.sendall(str(n).encode())
            else:
                while True:
                    d = c.recv(65536)
                    if not d:
                        break
                    c.sendall(d)
        except OSError:
            pass
        finally:
            c.close()
            with self.lock:
                self.active -= 1

    def close(self):
        self.stopping = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


@pytest.fixture
def echo_server():
    servers = []

    def make(**kw):
        s = EchoServer(**kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.close()


class _NameHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The head and the body go out in two writes: without TCP_NODELAY the
    # body waits for the peer's delayed ACK (40 ms), as on any server that
    # leaves Nagle on.
    disable_nagle_algorithm = True

    def do_GET(self):
        srv = self.server
        srv.hits += 1
        if srv.delay:
            time.sleep(srv.delay)
        status = srv.health_status if self.path == "/healthz" else 200
        self.answer(status, srv.name.encode())

    def do_POST(self):
        """Answers "<name>:<bytes of the request body>"."""
        n = int(self.headers.get("Content-Length", "0"))
        got = len(self.rfile.read(n)) if n else 0
        self.answer(200, f"{self.server.name}:{got}".encode())

    def answer(self, status, body):
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class BurstHTTPServer(http.server.ThreadingHTTPServer):
    """A threaded HTTP server whose accept queue takes a burst of connects
    (socketserver's queue of 5 drops SYNs, and a dropped SYN is resent only
    after legate's 1 s connect timeout)."""
    daemon_threads = True
    request_queue_size = 1024
    quiet = False  # True: no traceback for a connection the peer cut

    def handle_error(self, request, client_address):
        if not self.quiet:
            super().handle_error(request, client_address)


def http_upstream(name, delay=0.0, quiet=False):
    """A threaded HTTP/1.1 server on loopback answering a GET with its
    `name` and a POST with "<name>:<body bytes>"; /healthz answers with
    `health_status` (200); `delay` seconds before each GET's answer; `hits`
    counts GETs; `quiet`: no traceback when a peer cuts a connection. Stop
    it with shutdown()."""
    srv = BurstHTTPServer(("127.0.0.1", 0), _NameHandler)
    srv.name, srv.delay, srv.hits, srv.health_status = name, delay, 0, 200
    srv.quiet = quiet
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


class DnsServer:
    """dnsmasq on a loopback port serving the A and SRV records the test
    sets; set() rewrites its config file and restarts it on the same port
    (lookups in between fail, as during a real outage)."""

    def __init__(self, tmp_path):
        assert shutil.which("dnsmasq"), "dnsmasq missing: run scripts/bootstrap"
        self.port = free_port()
        self.conf = tmp_path / f"dnsmasq-{self.port}.conf"
        self.proc = None

    def set(self, hosts=(), srv=()):
        """hosts: (name, ip) pairs; srv: (name, target, port, priority, weight)."""
        lines = [f"port={self.port}", "listen-address=127.0.0.1", "bind-interfaces",
                 "no-resolv", "no-hosts", "no-negcache", "local-ttl=1", "log-facility=-"]
        lines += [f"host-record={n},{ip}" for n, ip in hosts]
        lines += [f"srv-host={n},{t},{p},{prio},{w}" for n, t, p, prio, w in srv]
        self.conf.write_text("\n".join(lines) + "\n")
        self.stop()
        self.proc = subprocess.Popen(["dnsmasq", "--no-daemon", "-u", "root",
                                      f"--conf-file={self.conf}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: self.proc.poll() is not None or can_connect(("127.0.0.1", self.port)),
                 what="dnsmasq")
        assert self.proc.poll() is None, "dnsmasq did not start"

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def dns(tmp_path):
    d = DnsServer(tmp_path)
    yield d
    d.stop()


class RedisServer:
    def __init__(self, tmp_path, args=()):
        assert shutil.which("redis-server"), "redis-server missing: run scripts/bootstrap"
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(tmp_path), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: can_connect(("127.0.0.1", self.port)), what="redis-server")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def redis_server(tmp_path):
    servers = []

    def make(args=()):
        s = RedisServer(tmp_path, args=args)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.proc.send_signal(signal.SIGCONT)  # a test may have left it stopped
        s.stop()


def tcp_pool(listen, servers, extra="", legate_section="legate:\n  workers: 2\n  shutdown_grace: 5s\n"):
    """A config with one tcp pool."""
    lines = "".join(f"    - {s}\n" for s in servers)
    return (f"{legate_section}"
            f"pool:\n"
            f"  listen: {listen}\n"
            f"  protocol: tcp\n"
            f"{extra}"
            f"  servers:\n{lines}")


def client_limit_holds(lg, port, limit, exchange):
    """Check a pool's `client_connections: limit` on `port`: `limit`
    clients that each made an exchange (`exchange(sock)` is True when it
    went right) stay served; one more is accepted and closed at once, and
    logged; once one leaves, a newcomer is served."""
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(limit)]
    for s in held:
        assert exchange(s)
    extra = socket.create_connection(("127.0.0.1", port), timeout=5)
    try:
        assert extra.recv(10) == b""  # accepted and closed at once
    except ConnectionResetError:
        pass
    extra.close()
    wait_for(lambda: f"client_connections limit {limit} reached" in lg.log(),
             what="the limit log line")
    held.pop().close()

    def newcomer_served():  # the slot comes back once legate sees the close
        with socket.create_connection(("127.0.0.1", port), timeout=2) as d:
            try:
                return exchange(d)
            except (OSError, AssertionError):
                return False
    wait_for(newcomer_served, what="a freed client slot")
    for s in held:
        assert exchange(s)  # kept all along
        s.close()


RST = b"\x01\0\0\0\0\0\0\0"  # SO_LINGER on for 0 s: close() resets


def vanish_churn(port, n, ways, busy, half_closed=None):
    """Open `n` clients on `port` one after another, each vanishing at
    another point of its exchange, while a busy client on a connection of
    its own repeats `busy(sock)` (one exchange, False on a wrong answer).
    `ways` are (payload, how) pairs taken in turn; `how` is "reset" (right
    after the payload), "read-reset" (after part of the answers: the rest
    are still coming), "half-close" (then `half_closed(sock)` asserts every
    answer) or "close" (answers unread, which resets too). Returns the
    busy client's errors."""
    stop = threading.Event()
    errors = []

    def run_busy():
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                while not stop.is_set():
                    if not busy(s):
                        errors.append("wrong answer")
                        return
        except (OSError, AssertionError) as e:
            errors.append(e)

    t = threading.Thread(target=run_busy, daemon=True)
    t.start()
    try:
        for i in range(n):
            payload, how = ways[i % len(ways)]
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            s.sendall(payload)
            if how == "read-reset":
                s.recv(1 + i * 97 % 20000)  # a different point each time
            if how == "half-close":
                s.shutdown(socket.SHUT_WR)
                half_closed(s)
                assert s.recv(100) == b""
            elif how != "close":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, RST)
            s.close()
    finally:
        stop.set()
        t.join(10)
    return errors


def recv_exactly(s, n):
    buf = bytearray()
    while len(buf) < n:
        d = s.recv(n - len(buf))
        if not d:
            break
        buf += d
    return bytes(buf)


def recv_all(s):
    buf = bytearray()
    while True:
        d = s.recv(65536)
        if not d:
            return bytes(buf)
        buf += d


def echo_roundtrip(s, payload, timeout=30):
    """Send `payload` on `s` while a thread reads the echo; return what came back."""
    got = bytearray()

    def reader():
        while len(got) < len(payload):
            d = s.recv(65536)
            if not d:
                break
            got.extend(d)

    t = threading.Thread(target=reader)
    t.start()
    s.sendall(payload)
    t.join(timeout)
    return bytes(got)
