"""benchlib: what every bench script shares. Ports on loopback, waiting
for a listener, CPU seconds and RSS of a process and its descendants (from
/proc), and Run: a scratch directory whose spawned processes are logged
there, shown when the bench fails, and stopped when it ends."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LEGATE = os.environ.get("LEGATE_BIN", os.path.join(ROOT, "build", "legate"))
TICKS = os.sysconf("SC_CLK_TCK")


def require(*tools):
    """Exit with a hint when a program the bench runs is missing."""
    for tool in tools:
        if not shutil.which(tool):
            sys.exit(f"bench: {tool} missing (run scripts/bootstrap)")


_ports_given = set()  # the kernel may offer a port it just gave again


def free_port():
    """A free loopback port, never the same one twice in a run."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def wait_port(port, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"bench: nothing listening on {port}")


def tree(pid):
    """pid and its descendants (nginx and haproxy run workers)."""
    pids = [pid]
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                with open(f"/proc/{p}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        pids += tree(int(p))
            except OSError:
                pass
    return pids


def cpu_seconds(pid):
    """user+system CPU seconds of a process, its threads and descendants."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total / TICKS


def machine_jiffies():
    """(idle, total) jiffies of all cores so far, from /proc/stat; idle
    counts iowait too."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v)


def read_calls(pid):
    """read-type syscalls (read, recv*, readv) a process has made so far,
    from /proc/PID/io."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("syscr:"):
                return int(line.split()[1])
    return 0


def rss_kib(pid):
    """Resident memory of a process and its descendants, KiB."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                total += int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))
        except (OSError, AttributeError):
            pass
    return total


class Run:
    """with Run() as run: run.tmp is a scratch directory; run.spawn(cmd)
    starts a process logging to run.tmp/<name>.log. On an exception the
    logs' tails go to stderr; at the end every process gets SIGTERM (then
    SIGKILL after 10 s) and the directory is removed."""

    def __init__(self, prefix="legate-bench-"):
        self.tmp = tempfile.mkdtemp(prefix=prefix)
        self.procs = []

    def path(self, name):
        return os.path.join(self.tmp, name)

    def spawn(self, cmd, name=None, **kw):
        log = open(self.path((name or os.path.basename(cmd[0])) + ".log"), "a")
        p = subprocess.Popen(cmd, stdout=log, stderr=log, **kw)
        self.procs.append(p)
        return p

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if kind is not None:
            for name in sorted(os.listdir(self.tmp)):
                if name.endswith((".log", ".err")):
                    with open(self.path(name), errors="replace") as f:
                        print(f"--- {name}\n" + f.read()[-3000:], file=sys.stderr)
        for p in self.procs:
            p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        shutil.rmtree(self.tmp, ignore_errors=True)
        return False
