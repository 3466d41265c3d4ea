"""deploy/: the container image, the Kubernetes manifests and the systemd
unit, each checked against the real binary: the image's one file serves
and reloads in an empty root as an unprivileged user; every manifest's
configuration passes `legate -t` and agrees with its probes, ports, user
and grace period; the unit verifies and its start, reload and stop
commands do what they say."""

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import urllib.request

import pytest
import yaml

from conftest import LEGATE_BIN, free_port, recv_all, wait_for

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
RELEASE = os.path.join(ROOT, "build", "legate")  # the static binary the image holds


def containerfile():
    """Instruction -> arguments of deploy/Containerfile (JSON forms parsed)."""
    out = {}
    with open(os.path.join(DEPLOY, "Containerfile")) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            word, _, rest = line.partition(" ")
            out.setdefault(word, []).append(json.loads(rest) if rest.startswith("[") else rest)
    return out


def name_at(port):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        return recv_all(s).decode()


def get(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return None, ""


def ms(duration):
    m = re.fullmatch(r"(\d+)(ms|s)?", str(duration))
    return int(m.group(1)) * (1000 if m.group(2) == "s" else 1)


def test_the_image_is_the_static_binary_alone(tmp_path, echo_server):
    """The Containerfile copies build/legate into an empty image: the
    binary must serve, resolve a name from /etc/hosts and reload from its
    mounted file as the image's user, with no libc, shell, /proc or /dev."""
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    cf = containerfile()
    assert cf["FROM"] == ["scratch"]
    assert cf["COPY"] == ["build/legate /legate"]
    entry, cmd, user = cf["ENTRYPOINT"][0], cf["CMD"][0], cf["USER"][0]
    assert entry == ["/legate"] and cmd[0] == "-c"
    root = tmp_path / "image"
    (root / "etc").mkdir(parents=True)
    shutil.copy(RELEASE, root / "legate")
    (root / "etc" / "hosts").write_text("127.0.0.1 localhost backend\n")
    a, b = echo_server(mode="name", name="a"), echo_server(mode="name", name="b")
    port, admin, sport = free_port(), free_port(), free_port()
    conf = root / cmd[1].lstrip("/")
    conf.parent.mkdir(parents=True, exist_ok=True)

    def write(server):
        conf.write_text(f"legate:\n  workers: 1\n  priority: 0\n  watch_config: 200ms\n"
                        f"  admin: 127.0.0.1:{admin}\n"
                        f"p:\n  listen: 127.0.0.1:{port}\n  protocol: tcp\n"
                        f"  servers: [backend:{server.port}]\n")

    write(a)
    err = open(tmp_path / "stderr", "w")
    proc = subprocess.Popen(["chroot", f"--userspec={user}", str(root)] + entry + cmd +
                            ["-s", str(sport)], stdout=err, stderr=err)
    try:
        wait_for(lambda: proc.poll() is not None or get(f"http://127.0.0.1:{admin}/healthz")[0],
                 what="the admin listener")
        assert proc.poll() is None, (tmp_path / "stderr").read_text()
        assert get(f"http://127.0.0.1:{admin}/healthz") == (200, "ok\n")
        assert name_at(port) == "a"
        uid = int(user.split(":")[0])
        with open(f"/proc/{proc.pid}/status") as f:
            assert re.search(rf"^Uid:\s+{uid}\s", f.read(), re.M)
        write(b)  # the image has no kill: the watched file reloads it
        wait_for(lambda: name_at(port) == "b", what="the reload from the changed file")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        err.close()
    log = (tmp_path / "stderr").read_text()
    assert "changed, reloading" in log and "legate stopped" in log, log


def manifests():
    out = []
    for name in sorted(os.listdir(os.path.join(DEPLOY, "kubernetes"))):
        with open(os.path.join(DEPLOY, "kubernetes", name)) as f:
            out.append((name, [d for d in yaml.safe_load_all(f) if d]))
    return out


@pytest.mark.parametrize("name,docs", manifests(), ids=[m[0] for m in manifests()])
def test_kubernetes_manifests_agree_with_their_configuration(name, docs, tmp_path):
    maps = {d["metadata"]["name"]: d["data"] for d in docs if d["kind"] == "ConfigMap"}
    workloads = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    assert workloads, name
    uid = int(containerfile()["USER"][0].split(":")[0])
    for w in workloads:
        pod = w["spec"]["template"]["spec"]
        every = pod.get("initContainers", []) + pod["containers"]
        legates = [c for c in every if c["image"].startswith("legate:")]
        assert len(legates) == 1, name
        c = legates[0]
        if c in pod.get("initContainers", []):
            assert c.get("restartPolicy") == "Always", "a sidecar init container must keep running"
        # the config the args name is a key of the mounted ConfigMap
        assert c["args"][0] == "-c"
        path = c["args"][1]
        mount = next(m for m in c["volumeMounts"] if m["mountPath"] == os.path.dirname(path))
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        text = maps[volume["configMap"]["name"]][os.path.basename(path)]
        conf_file = tmp_path / f"{w['metadata']['name']}.yml"
        conf_file.write_text(text)
        r = subprocess.run([LEGATE_BIN, "-t", "-c", str(conf_file)], capture_output=True,
                           text=True, timeout=30)
        assert r.returncode == 0 and "syntax is ok" in r.stderr, r.stderr
        conf = yaml.safe_load(text)
        process = conf["legate"]
        # the kubelet probes the pod's address: admin must listen there
        host, port = process["admin"].rsplit(":", 1)
        assert host == "0.0.0.0"
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        assert ports["admin"] == int(port)
        for probe in ("livenessProbe", "readinessProbe"):
            assert c[probe]["httpGet"]["port"] == "admin"
        assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
        # every pool port the container declares is a pool's listener
        listens = {int(p["listen"].rsplit(":", 1)[1]) for k, p in conf.items() if k != "legate"}
        assert {v for k, v in ports.items() if k != "admin"} <= listens
        # drain before the kubelet's SIGKILL
        grace = ms(process.get("shutdown_grace", "10s"))
        assert pod["terminationGracePeriodSeconds"] * 1000 > grace
        # the image's user, which may not raise the workers' priority
        sc = c["securityContext"]
        assert sc["runAsNonRoot"] and sc["runAsUser"] == uid
        assert process.get("priority", -5) >= 0
        # no kill in the image: a ConfigMap edit reloads through the watch
        assert ms(process["watch_config"]) > 0


def unit():
    """The [Service] lines of deploy/legate.service: key -> [values]."""
    out, section = {}, None
    with open(os.path.join(DEPLOY, "legate.service")) as f:
        for line in f:
            line = line.strip()
            if line.startswith("["):
                section = line
            elif line and not line.startswith("#") and section == "[Service]":
                k, _, v = line.partition("=")
                out.setdefault(k, []).append(v)
    return out


def test_systemd_unit_verifies_and_its_commands_work(tmp_path, echo_server):
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze missing: scripts/bootstrap installs systemd")
    text = open(os.path.join(DEPLOY, "legate.service")).read()
    local = tmp_path / "legate.service"
    local.write_text(text.replace("/usr/local/bin/legate", LEGATE_BIN))
    r = subprocess.run(["systemd-analyze", "verify", str(local)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr

    # Run what systemd would: ExecStartPre, ExecStart, ExecReload, KillSignal.
    svc = unit()
    a, b = echo_server(mode="name", name="a"), echo_server(mode="name", name="b")
    port = free_port()
    conf = tmp_path / "legate.yml"

    def write(server):
        conf.write_text(f"legate:\n  workers: 1\n"
                        f"p:\n  listen: 127.0.0.1:{port}\n  protocol: tcp\n"
                        f"  servers: [127.0.0.1:{server.port}]\n")

    def argv(line, pid=None):
        line = line.replace("/usr/local/bin/legate", LEGATE_BIN)
        line = line.replace("/etc/legate/legate.yml", str(conf))
        if pid is not None:
            line = line.replace("$MAINPID", str(pid))
        return shlex.split(line)

    write(a)
    for pre in svc["ExecStartPre"]:
        assert subprocess.run(argv(pre), timeout=30).returncode == 0
    err = open(tmp_path / "stderr", "w")
    main = subprocess.Popen(argv(svc["ExecStart"][0]) + ["-s", str(free_port())], stdout=err,
                            stderr=err)
    try:
        wait_for(lambda: "started on pid" in (tmp_path / "stderr").read_text(),
                 what="legate started")
        assert name_at(port) == "a"
        write(b)
        for line in svc["ExecReload"]:
            assert subprocess.run(argv(line, main.pid), timeout=30).returncode == 0
        wait_for(lambda: name_at(port) == "b", what="systemctl reload's new configuration")
        # a broken file: ExecReload's check fails first and no signal is sent
        conf.write_text("p: [\n")
        first = svc["ExecReload"][0]
        assert "-t" in argv(first) and subprocess.run(argv(first), capture_output=True,
                                                      timeout=30).returncode == 1
        assert name_at(port) == "b"
        assert svc["KillSignal"] == ["SIGTERM"]
        main.send_signal(signal.SIGTERM)
        assert main.wait(timeout=int(svc["TimeoutStopSec"][0])) == 0
    finally:
        if main.poll() is None:
            main.kill()
            main.wait()
        err.close()
