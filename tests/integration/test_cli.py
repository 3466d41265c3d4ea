"""Command line, config checking, signals, daemon mode and memory."""

import glob
import os
import signal
import socket
import subprocess
import threading
import time

import pytest

from conftest import (LEGATE_BIN, SANITIZED, Legate, can_connect, echo_roundtrip, free_port,
                      recv_exactly, rss_kib, tcp_pool, wait_for)

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
BAD = os.path.join(os.path.dirname(__file__), "bad_configs")


def run(*args):
    return subprocess.run([LEGATE_BIN, *args], capture_output=True, text=True, timeout=30)


def test_version_and_help():
    r = run("-V")
    assert r.returncode == 0 and r.stdout.startswith("This is legate-")
    r = run("--version")
    assert r.returncode == 0 and "legate-" in r.stdout
    r = run("-h")
    assert r.returncode == 0
    for flag in ("-c, --conf-file", "-t, --test-conf", "-d, --daemonize", "-p, --pid-file",
                 "-o, --output", "-v, --verbose", "-s, --stats-port", "-a, --stats-addr",
                 "-i, --stats-interval", "-m, --mbuf-size", "-D, --describe-stats"):
        assert flag in r.stdout, flag


def test_bad_flags_exit_1():
    for args in (["-x"], ["-v", "12"], ["-m", "100"], ["-s", "0"], ["-c"], ["--bogus"],
                 ["stray"]):
        r = run(*args)
        assert r.returncode == 1, args
        assert "legate:" in r.stderr, args


def test_accepted_later_flags_parse(tmp_path):
    """Flags whose feature comes later (stats) are accepted, as documented."""
    conf = os.path.join(ROOT, "examples", "sidecar-tcp.yml")
    r = run("-t", "-c", conf, "-s", "22299", "-a", "127.0.0.1", "-i", "1000", "-m", "4096")
    assert r.returncode == 0, r.stderr
    r = run("-D")
    assert r.returncode == 0 and "pool stats:" in r.stdout and "out_queue_bytes" in r.stdout


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(ROOT, "examples", "*.yml"))))
def test_examples_pass_test_conf(path):
    r = run("-t", "-c", path)
    assert r.returncode == 0, r.stderr
    assert "syntax is ok" in r.stderr


EXPECTED_BAD = {
    "bad_weight.yml": ("bad_weight.yml:6:7", "key 'servers'"),
    "bad_duration.yml": ("bad_duration.yml:4:23", "key 'connect'"),
    "unknown_key.yml": ("unknown_key.yml:4:3", "key 'listen_backlog': unknown key"),
    "bad_yaml.yml": ("bad_yaml.yml:6:", "YAML syntax error"),
    "bad_workers.yml": ("bad_workers.yml:2:12", "key 'workers'"),
    "bad_scheduling.yml": ("bad_scheduling.yml:2:15", "key 'scheduling': unknown value"),
    "bad_priority.yml": ("bad_priority.yml:2:13", "key 'priority': value out of range"),
    "bad_watch_config.yml": ("bad_watch_config.yml:2:17",
                             "key 'watch_config': expected 0 (off) or at least 100ms"),
    "bad_admin_unix.yml": ("bad_admin_unix.yml:2:10", "key 'admin': expected host:port"),
    "bad_admin_port.yml": ("bad_admin_port.yml:2:10", "key 'admin'"),
    "admin_on_pool_address.yml": ("admin_on_pool_address.yml:3:10",
                                  "key 'admin': address already used by pool 'pool'"),
}


def test_every_bad_config_file_is_covered():
    assert sorted(os.listdir(BAD)) == sorted(EXPECTED_BAD)


@pytest.mark.parametrize("name", sorted(EXPECTED_BAD))
def test_bad_config_rejected_with_line(name, tmp_path):
    where, what = EXPECTED_BAD[name]
    path = os.path.join(BAD, name)
    r = run("-t", "-c", path)
    assert r.returncode == 1
    assert "syntax is invalid" in r.stderr
    assert where in r.stderr and what in r.stderr, r.stderr
    # and legate refuses to start on it, the same way
    r = run("-c", path, "-o", str(tmp_path / "log"))
    assert r.returncode == 1
    assert where in r.stderr


def test_missing_config_file():
    r = run("-c", "/nonexistent/legate.yml")
    assert r.returncode == 1
    assert "/nonexistent/legate.yml: cannot open" in r.stderr


def test_listen_address_in_use_exits_1(tmp_path):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    lg = Legate(tmp_path, tcp_pool(f"127.0.0.1:{port}", ["127.0.0.1:1:1"]))
    lg.start()
    assert lg.proc.wait(10) == 1
    assert "cannot listen on" in lg.log()
    busy.close()


def test_sigterm_lets_open_transfer_finish(legate, echo_server):
    """SIGTERM: new connections are refused at once, the open one keeps
    working until its client is done, then legate exits 0."""
    echo = echo_server()
    port = free_port()
    lg = legate(tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{echo.port}:1"],
                         legate_section="legate:\n  workers: 2\n  shutdown_grace: 20s\n"),
                wait_addr=("127.0.0.1", port))
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"before")
    assert recv_exactly(s, 6) == b"before"
    lg.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: lg.log().count("stopped accepting") == 2, what="both workers to drain")
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    payload = os.urandom(5 * 1024 * 1024)
    assert echo_roundtrip(s, payload) == payload
    assert lg.proc.poll() is None  # still draining while the client is connected
    s.close()
    assert lg.proc.wait(10) == 0
    assert "legate stopped" in lg.log()


def test_shutdown_grace_closes_stragglers(legate, echo_server):
    echo = echo_server()
    port = free_port()
    lg = legate(tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{echo.port}:1"],
                         legate_section="legate:\n  workers: 1\n  shutdown_grace: 300ms\n"),
                wait_addr=("127.0.0.1", port))
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(b"x")
    assert recv_exactly(s, 1) == b"x"
    lg.proc.send_signal(signal.SIGTERM)
    assert lg.proc.wait(10) == 0
    assert "shutdown grace over" in lg.log()
    assert s.recv(10) == b""
    s.close()


def _thread_stat(pid, index):
    """One field of stat (counted after the command name) for each thread of pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            out[int(tid)] = int(f.read().rsplit(")", 1)[1].split()[index])
    return out


def _serving_workers(legate, echo_server, workers, key, setting):
    """A tcp pool with `workers` workers and `key: setting` in the legate
    section (left out when setting is None), after one echo through it:
    its pid."""
    echo = echo_server()
    port = free_port()
    extra = f"  {key}: {setting}\n" if setting is not None else ""
    lg = legate(tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{echo.port}:1"],
                         legate_section=f"legate:\n  workers: {workers}\n{extra}"),
                wait_addr=("127.0.0.1", port))
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        assert echo_roundtrip(s, b"ping") == b"ping"
    return lg.proc.pid


@pytest.mark.parametrize("setting,nice", [(None, -5), ("0", 0), ("7", 7), ("-20", -20)])
def test_worker_priority(legate, echo_server, setting, nice):
    """Workers run at the configured nice value (default -5); the main
    thread keeps the one legate was started with."""
    pid = _serving_workers(legate, echo_server, 2, "priority", setting)
    got = _thread_stat(pid, 16)  # field 19: nice
    assert got.pop(pid) == os.getpriority(os.PRIO_PROCESS, 0)
    assert sorted(got.values()) == [nice] * 2, got


@pytest.mark.parametrize("setting,policy", [(None, os.SCHED_BATCH),
                                            ("normal", os.SCHED_OTHER),
                                            ("batch", os.SCHED_BATCH)])
def test_worker_scheduling_policy(legate, echo_server, setting, policy):
    """Workers run under SCHED_BATCH unless `scheduling: normal`; the main
    thread (signals, health checks, discovery) keeps the normal policy."""
    pid = _serving_workers(legate, echo_server, 3, "scheduling", setting)
    got = _thread_stat(pid, 38)  # field 41: policy
    assert got.pop(pid) == os.SCHED_OTHER
    assert sorted(got.values()) == [policy] * 3, got


@pytest.mark.parametrize("protocol", ["redis", "memcache"])
def test_sharding_pools_run_workers_at_the_kernel_defaults(legate, protocol):
    """With only key-sharding pools, `scheduling: auto` (the default) means
    SCHED_OTHER at nice 0 for the workers, as nutcracker runs."""
    port = free_port()
    lg = legate(f"legate:\n  workers: 2\np:\n  listen: 127.0.0.1:{port}\n"
                f"  protocol: {protocol}\n  servers: [127.0.0.1:{free_port()}:1]\n",
                wait_addr=("127.0.0.1", port))
    deadline = time.monotonic() + 10  # the workers set theirs as they start
    while True:
        policy, nice = _thread_stat(lg.proc.pid, 38), _thread_stat(lg.proc.pid, 16)
        if len(policy) == 3 and set(nice.values()) == {0} or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert policy.pop(lg.proc.pid) == os.SCHED_OTHER
    assert nice.pop(lg.proc.pid) == os.getpriority(os.PRIO_PROCESS, 0)
    assert sorted(policy.values()) == [os.SCHED_OTHER] * 2, policy
    assert sorted(nice.values()) == [0] * 2, nice


def test_refused_priority_is_logged_and_legate_serves(echo_server):
    """An unprivileged user cannot lower its nice value: each worker says so
    and runs at the nice value it has, serving as usual."""
    import pwd
    import shutil
    import tempfile
    from pathlib import Path
    nobody = pwd.getpwnam("nobody")
    echo = echo_server()
    port = free_port()
    home = Path(tempfile.mkdtemp(prefix="legate-nobody-"))  # pytest's own tree is 0700
    os.chmod(home, 0o777)
    conf = home / "p.yml"
    conf.write_text(tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{echo.port}:1"]))
    log = home / "p.log"

    def drop():
        os.setgid(nobody.pw_gid)
        os.setgroups([])
        os.setuid(nobody.pw_uid)

    proc = subprocess.Popen([LEGATE_BIN, "-c", str(conf), "-o", str(log), "-s", str(free_port())],
                            preexec_fn=drop, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: log.exists() and log.read_text().count("cannot set priority -5") == 2,
                 what="both workers' warnings")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            assert echo_roundtrip(s, b"ping") == b"ping"
        got = _thread_stat(proc.pid, 16)
        assert set(got.values()) == {os.getpriority(os.PRIO_PROCESS, 0)}, got
    finally:
        proc.terminate()
        rc = proc.wait(10)
        shutil.rmtree(home, ignore_errors=True)
    assert rc == 0


def test_sigusr1_reopens_log_and_sighup_keeps_running(legate, echo_server):
    echo = echo_server()
    port = free_port()
    lg = legate(tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{echo.port}:1"]),
                wait_addr=("127.0.0.1", port))
    rotated = str(lg.log_path) + ".1"
    os.rename(lg.log_path, rotated)
    lg.proc.send_signal(signal.SIGUSR1)
    wait_for(lambda: os.path.exists(lg.log_path) and "reopened" in lg.log(),
             what="a new log file")
    lg.proc.send_signal(signal.SIGHUP)
    wait_for(lambda: "SIGHUP" in lg.log(), what="SIGHUP logged")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"still here")
        assert recv_exactly(s, 10) == b"still here"


def test_daemonize_with_pid_file(tmp_path, echo_server):
    echo = echo_server()
    port = free_port()
    conf = tmp_path / "d.yml"
    conf.write_text(tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{echo.port}:1"]))
    pid_file = tmp_path / "legate.pid"
    log = tmp_path / "d.log"
    r = subprocess.run([LEGATE_BIN, "-d", "-c", str(conf), "-p", str(pid_file), "-o", str(log),
                        "-s", str(free_port())],
                       timeout=10)
    assert r.returncode == 0  # the parent returns once the daemon is forked
    wait_for(lambda: pid_file.exists() and pid_file.read_text().strip() != "", what="pid file")
    pid = int(pid_file.read_text())
    wait_for(lambda: "started on pid" in log.read_text(), what="daemon start")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
            s.sendall(b"daemon")
            assert recv_exactly(s, 6) == b"daemon"
    finally:
        os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not os.path.exists(f"/proc/{pid}"), what="daemon exit")
    assert not pid_file.exists()  # removed on exit


def _nutcracker_idle_rss(tmp_path, backend_port):
    """Idle RSS of nutcracker 0.5.0 with one pool, after one request."""
    port, stats = free_port(), free_port()
    conf = tmp_path / "nutcracker.yml"
    conf.write_text(f"alpha:\n  listen: 127.0.0.1:{port}\n  servers:\n"
                    f"    - 127.0.0.1:{backend_port}:1\n")
    proc = subprocess.Popen(["nutcracker", "-c", str(conf), "-s", str(stats)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: can_connect(("127.0.0.1", port)), what="nutcracker")
        time.sleep(0.2)
        return rss_kib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(10)


def test_idle_rss_small(legate, echo_server, tmp_path):
    """Idle legate with one pool uses no more resident memory than an idle
    nutcracker 0.5.0 started in the same run (both are mostly the shared
    C library; absolute figures come from bench/tcp)."""
    if SANITIZED:
        pytest.skip("a sanitizer runtime adds tens of MiB; measured on the release build")
    echo = echo_server()
    port = free_port()
    lg = legate(tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{echo.port}:1"],
                         legate_section="legate:\n  workers: 2\n"),
                wait_addr=("127.0.0.1", port))
    # exercise it once, then let it idle
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(b"warm")
        assert recv_exactly(s, 4) == b"warm"
    time.sleep(0.2)
    rss = rss_kib(lg.proc.pid)
    reference = _nutcracker_idle_rss(tmp_path, echo.port)
    print(f"idle RSS: legate {rss} KiB, nutcracker {reference} KiB")
    assert rss <= reference, f"idle RSS {rss} KiB, nutcracker {reference} KiB"


def test_idle_client_connections_are_cheap(legate, echo_server):
    """2,000 idle client connections hold no buffers: RSS grows by well under
    a KiB each (session and kernel-side state only)."""
    if SANITIZED:
        pytest.skip("sanitizer redzones inflate every allocation")
    echo = echo_server()
    port = free_port()
    lg = legate(tcp_pool(f"127.0.0.1:{port}", [f"127.0.0.1:{echo.port}:1"]),
                wait_addr=("127.0.0.1", port))
    base = rss_kib(lg.proc.pid)
    conns = []
    try:
        for _ in range(2000):
            s = socket.create_connection(("127.0.0.1", port), timeout=10)
            conns.append(s)
        # one round trip on the last proves all were accepted and connected
        conns[-1].sendall(b"z")
        assert recv_exactly(conns[-1], 1) == b"z"
        grown = rss_kib(lg.proc.pid) - base
        print(f"2000 idle connections: +{grown} KiB")
        assert grown < 2000, f"+{grown} KiB for 2000 idle connections"
    finally:
        for s in conns:
            s.close()
