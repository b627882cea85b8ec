#!/usr/bin/env python3
"""Gateway load benchmark (issue 3): gatehouse's verifying proxy and forward auth against
nginx baselines measured in the same run, interleaved.

Prerequisite (this script builds nothing):
    cargo build --release -p gatehouse-server        # → target/release/gatehouse
    apt-get install -y nginx wrk                       # Debian packages

Everything runs on loopback and is started here:
  * upstream  — nginx, one worker, `return 200` with a small JSON body (the fast exchange);
  * front     — nginx, one worker: (a) `return 200`, (b) plain `proxy_pass` to the upstream,
                and nginx `auth_request` → gatehouse forward auth + `proxy_pass` (the snippets
                of tests/tools/nginx/, also used by the nginx e2e test);
  * gatehouse — release binary on embedded SQLite, one process per replay store:
                `database` (group commit), `memory`, and `redis` (the 127.0.0.1:6379 server,
                if it answers; rate limits then live in Redis too).
Cases, each round running all of them in turn (A, B, C, … A, B, C, …), median of the rounds:
  (a) nginx return 200                 (b) nginx proxy_pass → upstream
  (c) gatehouse reverse proxy → upstream, Binance HMAC-SHA256 signed GET /api/v3/account
      (and Ed25519-signed, memory replay store)
  (d) gatehouse forward auth answering the check alone: GET /_gh/auth/forward with
      X-Original-Method / X-Original-URI / X-MBX-APIKEY, as nginx asks it
  (e) nginx auth_request → gatehouse → proxy_pass (the whole forward-auth deployment)
Load: wrk -t1 -cC -dS with bench/gateway/walk.lua walking a file of unique signed targets,
generated just before each run (every signature is single-use; timestamps are fresh), the
same kind of file for every case so the generator does the same work everywhere.
Server CPU per request: utime+stime from /proc/<pid>/stat of the process(es) under test
(nginx master + workers; gatehouse, all threads) from the moment wrk has loaded its target file
(walk.lua prints LOADED) until wrk exits, divided by the requests; the cores' busy shares over the
same interval (wrk reading a million-line file is not counted as load).
Fixed rate: bench/gateway/fixed_rate.py (open loop, each target once) at --rate req/s through
nginx, with and without auth_request, interleaved; latency percentiles.
Pinning (taskset): the server(s) under test on --server-cpu (default 0: front nginx and every
gatehouse), the load generator and the upstream nginx on --load-cpu (default 1). Every process
started here runs at --nice (default -20 when root) so that other work on a shared machine
takes as little of the pinned cores as possible; the share it still took is reported per case
(from /proc/stat) as "others".

Usage: bench/gateway_load.py [--rounds 3] [--seconds 8] [--connections 64] [--rate 2000]
                             [--binary target/release/gatehouse] [--json out.json]
Prints the tables in Markdown (as pasted into BENCHMARKS.md).
"""
import argparse
import base64
import hashlib
import hmac
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "bench", "gateway")
TOOLS = os.path.join(ROOT, "tests", "tools", "nginx")
PW = "violet tram harbour 77"
EMAIL = "bench@example.com"
BODY = '{"makerCommission":10,"canTrade":true,"balances":[{"asset":"BTC","free":"1.0","locked":"0.0"}]}'
RECV_WINDOW = 30000  # ms: each request file must be used up within 30 s of its timestamp
PATH = "/api/v3/account"
TICKS = os.sysconf("SC_CLK_TCK")


NICE = ["nice", "-n", "0"]


def pinned(cpu):
    """Command prefix: the CPU pinning and the scheduling priority (--nice) of what we start."""
    return NICE + ["taskset", "-c", str(cpu)]


def die(msg):
    sys.exit(f"gateway_load: {msg}")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def proc_cpu(pid):
    """utime+stime (s) of a process, all its threads."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICKS
    except FileNotFoundError:
        return 0.0


def core_busy(cpu):
    """Busy time (s) of one CPU from /proc/stat: user+nice+system+irq+softirq+steal."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{cpu} "):
                v = [int(x) for x in line.split()[1:9]]
                return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / TICKS
    return 0.0


def children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return out


def wait_port(port, proc, what, log=None):
    deadline = time.time() + 20
    while time.time() < deadline:
        if proc.poll() is not None:
            die(f"{what} exited: {open(log).read() if log else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    die(f"{what} not listening on {port}")


class Nginx:
    def __init__(self, name, tmp, template, subst, cpu):
        self.dir = os.path.join(tmp, name)
        os.makedirs(os.path.join(self.dir, "tmp"), exist_ok=True)
        text = open(template).read()
        for k, v in dict(subst, DIR=self.dir, TOOLS=TOOLS, BODY=BODY).items():
            text = text.replace(f"@{k}@", str(v))
        if any(re.search(r"@[A-Z_]+@", line) for line in text.splitlines() if not line.lstrip().startswith("#")):
            die(f"unfilled placeholder in {template}")
        with open(os.path.join(self.dir, "nginx.conf"), "w") as f:
            f.write(text)
        d = self.dir
        self.proc = subprocess.Popen(
            [*pinned(cpu), nginx_binary(), "-p", d, "-e", f"{d}/error.log", "-c", f"{d}/nginx.conf",
             "-g", f"daemon off; pid {d}/nginx.pid; error_log {d}/error.log;"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ready(self, port):
        wait_port(port, self.proc, "nginx " + self.dir, os.path.join(self.dir, "error.log"))
        deadline = time.time() + 10
        while not children(self.proc.pid):
            if time.time() > deadline:
                die("nginx has no worker")
            time.sleep(0.02)

    def pids(self):
        return [self.proc.pid] + children(self.proc.pid)

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


def nginx_binary():
    for p in [shutil.which("nginx"), "/usr/sbin/nginx", "/usr/local/sbin/nginx"]:
        if p and os.path.isfile(p):
            return p
    die("nginx is required: apt-get install -y nginx")


class Gatehouse:
    """One `gatehouse serve` with its own data directory, account and keys."""

    def __init__(self, name, tmp, binary, upstream_port, replay, cpu, redis_url=None):
        self.name = name
        self.binary = binary
        self.dir = os.path.join(tmp, "gh-" + name)
        self.data = os.path.join(self.dir, "data")
        os.makedirs(self.data, exist_ok=True)
        secret = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        redis = f'\n[storage]\nredis_url = "{redis_url}"\n' if redis_url else ""
        self.config = os.path.join(self.dir, "gatehouse.toml")
        with open(self.config, "w") as f:
            f.write(f"""[server]
trusted_proxies = ["127.0.0.1/32"]
{redis}
[gateway]
identity_secret = "{secret}"
replay_store = "{replay}"
# GCRA emission intervals are whole milliseconds (crates/core/src/ratelimit.rs, Gcra::per_period),
# so no bucket refills faster than 1000/s and burst × interval must stay ≤ 1 day: a load test
# from one client address switches the per-IP budget off (0) and lives on the key's burst.
per_ip_per_second = 0

[[gateway.routes]]
prefix = "/api"
dialect = "binance"
upstream = "http://127.0.0.1:{upstream_port}"
table = "binance"
public = ["/api/v3/ping"]
limits = "bench"

[gateway.limits]
bench = [{{ name = "default", count = 1000, period_ms = 1000, burst = 80000000 }}, {{ name = "order", count = 1000, period_ms = 1000, burst = 80000000 }}, {{ name = "sapi", count = 1000, period_ms = 1000, burst = 80000000 }}]
""")
        self.env = dict(os.environ, GATEHOUSE_LOG="warn")
        self.log = os.path.join(self.dir, "server.log")
        self.proc = subprocess.Popen(
            [*pinned(cpu), binary, "serve", "--config", self.config, "--listen", "127.0.0.1:0",
             "--data-dir", self.data],
            stdout=subprocess.PIPE, stderr=open(self.log, "w"), text=True, env=self.env)
        line = self.proc.stdout.readline()
        if "listening on" not in line:
            die(f"gatehouse {name} did not start: {line!r} {open(self.log).read()}")
        self.addr = line.split()[-1].replace("http://", "")
        self.port = int(self.addr.rsplit(":", 1)[1])
        self.cli(["admin", "create", "--email", EMAIL], stdin=PW + "\n")
        k = json.loads(self.cli(["apikey", "create", "--email", EMAIL, "--label", "bench", "--kind", "hmac",
                                 "--scopes", "view_assets,view_orders,place_orders", "--json"]))
        self.hmac_id, self.hmac_secret = k["id"], k["secret"].encode()
        self.ed = None

    def cli(self, args, stdin=None):
        r = subprocess.run([self.binary, *args, "--config", self.config, "--data-dir", self.data], input=stdin,
                           capture_output=True, text=True, env=self.env)
        if r.returncode != 0:
            die(f"gatehouse {' '.join(args)}: {r.stderr}")
        return r.stdout

    def add_ed25519(self):
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        key = Ed25519PrivateKey.generate()
        pem = os.path.join(self.dir, "ed25519.pub.pem")
        with open(pem, "wb") as f:
            f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
        k = json.loads(self.cli(["apikey", "create", "--email", EMAIL, "--label", "bench-ed", "--kind", "ed25519",
                                 "--scopes", "view_assets,view_orders,place_orders", "--public-key-file", pem,
                                 "--json"]))
        self.ed = (k["id"], key)

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


class HyperFloor:
    """`examples/hyper_floor`: a bare hyper server answering 200 — the floor under any
    hyper-based answer, gatehouse's included."""

    def __init__(self, binary, cpu):
        self.proc = subprocess.Popen([*pinned(cpu), binary, "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        self.port = int(line.rsplit(":", 1)[1])

    def pids(self):
        return [self.proc.pid]

    def stop(self):
        self.proc.terminate()
        self.proc.wait()


SEQ = [0]


def gen_targets(path, n, kind, secret):
    """n unique signed targets of GET /api/v3/account; returns the file path."""
    ts = int(time.time() * 1000)
    SEQ[0] += 1
    prefix = f"timestamp={ts}&recvWindow={RECV_WINDOW}&n={SEQ[0]}-"
    with open(path, "w") as f:
        if kind == "hmac":
            base = hmac.new(secret, digestmod=hashlib.sha256)
            lines = []
            for i in range(n):
                q = f"{prefix}{i}"
                m = base.copy()
                m.update(q.encode())
                lines.append(f"{PATH}?{q}&signature={m.hexdigest()}\n")
                if len(lines) == 65536:
                    f.writelines(lines)
                    lines = []
            f.writelines(lines)
        else:  # ed25519 private key
            for i in range(n):
                q = f"{prefix}{i}"
                sig = urllib.parse.quote(base64.b64encode(secret.sign(q.encode())).decode(), safe="")
                f.write(f"{PATH}?{q}&signature={sig}\n")
    return path


def run_wrk(args, port, targets, mode, apikey, sample):
    """Runs wrk; `sample(wrk_pid)` is called once wrk has loaded its file (walk.lua prints
    LOADED) and again when it has finished, so CPU counters cover the load alone — not the
    seconds wrk spends reading a file of a million targets."""
    out_path = targets + ".out"
    with open(out_path, "w") as out:
        p = subprocess.Popen([*pinned(args.load_cpu), "wrk", "-t1", f"-c{args.connections}",
                              f"-d{args.seconds}s", "--timeout", "5s", "-s", os.path.join(HERE, "walk.lua"),
                              f"http://127.0.0.1:{port}", "--", targets, mode, apikey or ""],
                             stdout=out, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while "LOADED" not in open(out_path).read():
            if p.poll() is not None or time.time() > deadline:
                die(f"wrk did not start: {open(out_path).read()}")
            time.sleep(0.005)
        before = sample(p.pid)
        while True:  # poll, so /proc/<pid> can be read before the child is reaped
            with open(f"/proc/{p.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.002)
        after = sample(p.pid)
        _, status = os.waitpid(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
    text = open(out_path).read()
    m = re.search(r"RESULT requests=(\d+) non2xx=(\d+) errors=(\d+) p50_us=(\d+) p99_us=(\d+) wrapped=(\d+) duration_us=(\d+)", text)
    if p.returncode != 0 or not m:
        die(f"wrk failed: {text}")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    req, non2xx, errors, p50, p99, wrapped, duration = map(int, m.groups())
    return {"rps": rps, "requests": req, "non2xx": non2xx, "errors": errors, "p50_ms": p50 / 1000,
            "p99_ms": p99 / 1000, "wrapped": wrapped, "load_s": duration / 1e6,
            **{k: after[k] - before[k] for k in before}}


def one_request(port, target, headers):
    req = urllib.request.Request(f"http://127.0.0.1:{port}{target}", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def loadavg():
    return open("/proc/loadavg").read().split()[:3]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--rate", type=float, default=2000)
    ap.add_argument("--rate-seconds", type=float, default=10)
    ap.add_argument("--server-cpu", type=int, default=0)
    ap.add_argument("--load-cpu", type=int, default=1)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/gatehouse"))
    ap.add_argument("--nice", type=int, default=-20 if os.geteuid() == 0 else 0,
                    help="priority of every process started (default -20 as root: the machine may be shared)")
    ap.add_argument("--floor-binary", default=os.path.join(ROOT, "target/release/examples/hyper_floor"),
                    help="bare hyper server for case (f); skipped when missing")
    ap.add_argument("--no-redis", action="store_true")
    ap.add_argument("--no-ed25519", action="store_true")
    ap.add_argument("--only", default="", help="comma-separated case names (default: all)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    for tool in ("wrk", "taskset"):
        if not shutil.which(tool):
            die(f"{tool} is required (apt-get install -y {'wrk' if tool == 'wrk' else 'util-linux'})")
    NICE[2] = str(args.nice)
    # With autogroup scheduling (sched_autogroup_enabled=1) a process's nice value only counts
    # inside its session's group; groups share a CPU by their own nice. Set ours (this session
    # only, i.e. this script and what it starts) so the priority is real.
    try:
        with open("/proc/self/autogroup", "w") as f:
            f.write(str(args.nice))
    except OSError:
        pass
    if not os.access(args.binary, os.X_OK):
        die(f"{args.binary} missing: cargo build --release -p gatehouse-server")
    nginx_binary()

    redis_url = None
    if not args.no_redis:
        try:
            s = socket.create_connection(("127.0.0.1", 6379), timeout=0.5)
            s.sendall(b"PING\r\n")
            if s.recv(16).startswith(b"+PONG"):
                redis_url = "redis://127.0.0.1:6379"
            s.close()
        except OSError:
            pass
    ed_ok = not args.no_ed25519
    if ed_ok:
        try:
            import cryptography  # noqa: F401
        except ImportError:
            ed_ok = False

    tmp = tempfile.mkdtemp(prefix="gh-gwload-")
    started = []
    try:
        up_port = free_port()
        upstream = Nginx("upstream", tmp, os.path.join(HERE, "upstream.conf.in"), {"UPSTREAM_PORT": up_port},
                         args.load_cpu)
        started.append(upstream)
        upstream.ready(up_port)
        gh = {"db": Gatehouse("db", tmp, args.binary, up_port, "database", args.server_cpu)}
        started.append(gh["db"])
        gh["mem"] = Gatehouse("mem", tmp, args.binary, up_port, "memory", args.server_cpu)
        started.append(gh["mem"])
        if redis_url:
            gh["redis"] = Gatehouse("redis", tmp, args.binary, up_port, "auto", args.server_cpu, redis_url)
            started.append(gh["redis"])
        if ed_ok:
            gh["mem"].add_ed25519()
        ports = {k: free_port() for k in ("RETURN_PORT", "PROXY_PORT", "AUTH_DB_PORT", "AUTH_MEM_PORT")}
        front_dir = os.path.join(tmp, "front")
        os.makedirs(front_dir, exist_ok=True)
        snippet = open(os.path.join(TOOLS, "gatehouse_auth.conf")).read()
        for name in ("db", "mem"):
            assert "http://gatehouse/" in snippet
            with open(os.path.join(front_dir, f"gatehouse_auth_{name}.conf"), "w") as f:
                f.write(snippet.replace("http://gatehouse/", f"http://gh_{name}/"))
        front = Nginx("front", tmp, os.path.join(HERE, "front.conf.in"),
                      dict(ports, UPSTREAM_PORT=up_port, GH_DB=gh["db"].addr, GH_MEM=gh["mem"].addr),
                      args.server_cpu)
        started.append(front)
        for p in ports.values():
            front.ready(p)

        # name → (port, wrk mode, gatehouse instance for keys, key kind, pids under test)
        cases = {
            "a_nginx_return": (ports["RETURN_PORT"], "path", "mem", "hmac", front.pids),
            "b_nginx_proxy": (ports["PROXY_PORT"], "path", "mem", "hmac", front.pids),
            "c_gh_proxy_db": (gh["db"].port, "path", "db", "hmac", gh["db"].pids),
            "c_gh_proxy_mem": (gh["mem"].port, "path", "mem", "hmac", gh["mem"].pids),
        }
        if redis_url:
            cases["c_gh_proxy_redis"] = (gh["redis"].port, "path", "redis", "hmac", gh["redis"].pids)
        if ed_ok:
            cases["c_gh_proxy_mem_ed25519"] = (gh["mem"].port, "path", "mem", "ed25519", gh["mem"].pids)
        if os.access(args.floor_binary, os.X_OK):
            floor = HyperFloor(args.floor_binary, args.server_cpu)
            started.append(floor)
            wait_port(floor.port, floor.proc, "hyper_floor", os.devnull)
            cases["f_hyper_floor"] = (floor.port, "path", "mem", "hmac", floor.pids)
        cases["d_gh_forward_db"] = (gh["db"].port, "forward", "db", "hmac", gh["db"].pids)
        cases["d_gh_forward_mem"] = (gh["mem"].port, "forward", "mem", "hmac", gh["mem"].pids)
        if redis_url:
            cases["d_gh_forward_redis"] = (gh["redis"].port, "forward", "redis", "hmac", gh["redis"].pids)
        cases["e_nginx_authreq_mem"] = (ports["AUTH_MEM_PORT"], "path", "mem", "hmac",
                                        lambda: front.pids() + gh["mem"].pids())
        cases["e_nginx_authreq_db"] = (ports["AUTH_DB_PORT"], "path", "db", "hmac",
                                       lambda: front.pids() + gh["db"].pids())
        if args.only:
            keep = set(args.only.split(","))
            cases = {k: v for k, v in cases.items() if k in keep}

        def key_for(inst, kind):
            g = gh[inst]
            return (g.hmac_id, g.hmac_secret) if kind == "hmac" else (g.ed[0], g.ed[1])

        # Sanity: one request per case must be answered 200 (a signed request that verifies).
        for name, (port, mode, inst, kind, _pids) in cases.items():
            kid, sec = key_for(inst, kind)
            t = open(gen_targets(os.path.join(tmp, "probe.txt"), 1, kind, sec)).read().strip()
            if mode == "forward":
                status, body = one_request(port, "/_gh/auth/forward",
                                           {"X-Original-Method": "GET", "X-Original-URI": t, "X-MBX-APIKEY": kid})
            else:
                status, body = one_request(port, t, {"X-MBX-APIKEY": kid})
            if status != 200:
                die(f"probe {name}: {status} {body}")

        results = {name: [] for name in cases}
        expected = {name: 150_000.0 for name in cases}  # req/s, to size the request files
        facts = {"load_before": loadavg()}
        for rnd in range(args.rounds):
            for name, (port, mode, inst, kind, pids_of) in cases.items():
                kid, sec = key_for(inst, kind)
                n = int(expected[name] * args.seconds * 1.4) + 1000
                if kind == "ed25519":
                    n = min(n, 40_000 * args.seconds)
                targets = gen_targets(os.path.join(tmp, "targets.txt"), n, kind, sec)
                pids = pids_of()
                up_pids = upstream.pids()

                def sample(wrk_pid):
                    return {"server_cpu_s": sum(proc_cpu(p) for p in pids),
                            "upstream_cpu_s": sum(proc_cpu(p) for p in up_pids),
                            "wrk_cpu_s": proc_cpu(wrk_pid), "server_core_s": core_busy(args.server_cpu),
                            "load_core_s": core_busy(args.load_cpu), "wall_s": time.time()}
                r = run_wrk(args, port, targets, mode, kid, sample)
                wall = r["wall_s"]
                r["cpu_us_per_req"] = r["server_cpu_s"] / max(r["requests"], 1) * 1e6
                r["server_core_busy"] = r["server_cpu_s"] / wall
                r["load_core_busy"] = (r["wrk_cpu_s"] + r["upstream_cpu_s"]) / wall
                # Time the pinned cores spent on anything else (other users of the machine).
                r["server_core_foreign"] = max(0.0, r["server_core_s"] - r["server_cpu_s"]) / wall
                r["load_core_foreign"] = max(0.0, r["load_core_s"] - r["wrk_cpu_s"] - r["upstream_cpu_s"]) / wall
                r["load"] = loadavg()
                results[name].append(r)
                seen_rate = r["requests"] / args.seconds
                # Size the next rounds' files from what was seen, with headroom: a first round
                # slowed by other work on the machine must not leave a quiet round too few
                # targets (the walk would wrap and replays would show up as non-2xx).
                expected[name] = max(expected[name] if rnd else 0.0, seen_rate * 1.5)
                print(f"round {rnd + 1} {name}: {r['rps']:,.0f} req/s, {r['cpu_us_per_req']:.1f} µs CPU/req, "
                      f"non-2xx {r['non2xx']}, errors {r['errors']}, wrapped {r['wrapped']}, cores busy "
                      f"{r['server_core_busy']:.0%}/{r['load_core_busy']:.0%}, foreign {r['server_core_foreign']:.0%}/"
                      f"{r['load_core_foreign']:.0%}, load {r['load']}",
                      file=sys.stderr, flush=True)
                os.remove(targets)

        # Fixed rate through nginx: direct proxy vs auth_request → gatehouse (memory, database).
        fixed = {"direct": [], "auth_mem": [], "auth_db": []}
        fixed_ports = {"direct": ports["PROXY_PORT"], "auth_mem": ports["AUTH_MEM_PORT"],
                       "auth_db": ports["AUTH_DB_PORT"]}
        if not args.only:
            for rnd in range(args.rounds):
                for name in fixed:
                    inst = "db" if name == "auth_db" else "mem"
                    kid, sec = key_for(inst, "hmac")
                    n = int(args.rate * (args.rate_seconds + 1)) + 100
                    targets = gen_targets(os.path.join(tmp, "fixed.txt"), n, "hmac", sec)
                    out = subprocess.run(
                        [*pinned(args.load_cpu), sys.executable, os.path.join(HERE, "fixed_rate.py"),
                         "--port", str(fixed_ports[name]), "--rate", str(args.rate), "--seconds",
                         str(args.rate_seconds), "--targets", targets, "--header", f"X-MBX-APIKEY: {kid}"],
                        capture_output=True, text=True)
                    if out.returncode != 0:
                        die(f"fixed_rate {name}: {out.stderr}")
                    r = json.loads(out.stdout.strip().splitlines()[-1])
                    r["load"] = loadavg()
                    fixed[name].append(r)
                    print(f"fixed round {rnd + 1} {name}: p50 {r['p50_ms']:.3f} p99 {r['p99_ms']:.3f} ms "
                          f"rate {r['rate']:.0f} statuses {r['statuses']} lag {r['max_send_lag_ms']:.2f} ms",
                          file=sys.stderr, flush=True)
        facts["load_after"] = loadavg()
        report(args, cases, results, fixed, facts, redis_url, ed_ok)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"results": results, "fixed": fixed, "facts": facts}, f, indent=1)
    finally:
        for s in reversed(started):
            s.stop()
        shutil.rmtree(tmp, ignore_errors=True)


LABELS = {
    "a_nginx_return": "(a) nginx `return 200`",
    "b_nginx_proxy": "(b) nginx `proxy_pass` → upstream",
    "c_gh_proxy_db": "(c) gatehouse proxy → upstream, HMAC, replay `database`",
    "c_gh_proxy_mem": "(c) gatehouse proxy → upstream, HMAC, replay `memory`",
    "c_gh_proxy_redis": "(c) gatehouse proxy → upstream, HMAC, replay + limits in Redis",
    "c_gh_proxy_mem_ed25519": "(c) gatehouse proxy → upstream, Ed25519, replay `memory`",
    "d_gh_forward_db": "(d) gatehouse forward auth alone, replay `database`",
    "d_gh_forward_mem": "(d) gatehouse forward auth alone, replay `memory`",
    "d_gh_forward_redis": "(d) gatehouse forward auth alone, Redis",
    "e_nginx_authreq_mem": "(e) nginx `auth_request` → gatehouse (`memory`) + `proxy_pass`",
    "e_nginx_authreq_db": "(e) nginx `auth_request` → gatehouse (`database`) + `proxy_pass`",
    "f_hyper_floor": "(f) bare hyper `200` (examples/hyper_floor: no routing, no verification)",
}


def report(args, cases, results, fixed, facts, redis_url, ed_ok):
    med = statistics.median
    rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    cpu_model = ""
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    nginx_v = subprocess.run([nginx_binary(), "-v"], capture_output=True, text=True).stderr.strip()
    print(f"\nMachine: {os.cpu_count()} CPUs ({cpu_model}), Linux {platform.release()}, {nginx_v}, "
          f"gatehouse {rev}; load average before {' '.join(facts['load_before'])}, after "
          f"{' '.join(facts['load_after'])}.")
    print(f"Pinning: server(s) under test on CPU {args.server_cpu}; wrk / fixed_rate.py and the upstream nginx "
          f"on CPU {args.load_cpu}; all of them at nice {args.nice}. wrk -t1 -c{args.connections} -d{args.seconds}s, {args.rounds} rounds "
          f"interleaved, medians. recvWindow={RECV_WINDOW}.\n")
    print("| case | req/s | server CPU µs/req | server core: ours + others | load core: ours + others "
          "| wrk p50 / p99 ms | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in cases:
        rs = results[name]
        print(f"| {LABELS[name]} | {med([r['rps'] for r in rs]):,.0f} | {med([r['cpu_us_per_req'] for r in rs]):.1f} | "
              f"{med([r['server_core_busy'] for r in rs]):.0%} + {med([r['server_core_foreign'] for r in rs]):.0%} | "
              f"{med([r['load_core_busy'] for r in rs]):.0%} + {med([r['load_core_foreign'] for r in rs]):.0%} | "
              f"{med([r['p50_ms'] for r in rs]):.2f} / {med([r['p99_ms'] for r in rs]):.2f} | "
              f"{sum(r['non2xx'] + r['errors'] for r in rs)} |")

    def ratio(x, y, key="rps"):
        if x not in results or y not in results:
            return None
        return med([a[key] / b[key] for a, b in zip(results[x], results[y])])

    print("\nTargets (per-round ratios, median):")
    for c in ("c_gh_proxy_mem", "c_gh_proxy_db", "c_gh_proxy_redis"):
        r = ratio(c, "b_nginx_proxy")
        if r is not None:
            cpu = ratio(c, "b_nginx_proxy", "cpu_us_per_req")
            print(f"- {LABELS[c]} / (b) req/s = {r:.2f}× (target ≥ 1.0×: {'met' if r >= 1.0 else 'NOT met'}); "
                  f"CPU/req ratio {cpu:.2f}×")
    for d in ("d_gh_forward_mem", "d_gh_forward_db", "d_gh_forward_redis"):
        r = ratio(d, "a_nginx_return")
        if r is not None:
            cpu = ratio(d, "a_nginx_return", "cpu_us_per_req")
            print(f"- {LABELS[d]} / (a) req/s = {r:.2f}× (target ≥ 0.85×: {'met' if r >= 0.85 else 'NOT met'}); "
                  f"CPU/req ratio {cpu:.2f}×")
    r = ratio("f_hyper_floor", "a_nginx_return")
    if r is not None:
        print(f"- floor: (f) bare hyper / (a) req/s = {r:.2f}×, CPU/req ratio "
              f"{ratio('f_hyper_floor', 'a_nginx_return', 'cpu_us_per_req'):.2f}×; "
              f"(d) `memory` / (f) req/s = {ratio('d_gh_forward_mem', 'f_hyper_floor') or 0:.2f}×")
    if any(fixed.values()):
        print(f"\nFixed rate {args.rate:.0f} req/s for {args.rate_seconds:.0f} s (after 1 s warm-up), bench/gateway/"
              f"fixed_rate.py, {args.rounds} rounds interleaved, medians:\n")
        print("| through nginx | p50 ms | p90 ms | p99 ms | p99.9 ms | achieved req/s | non-200 |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        names = {"direct": "`proxy_pass` → upstream (no auth)",
                 "auth_mem": "`auth_request` → gatehouse (`memory`) + `proxy_pass`",
                 "auth_db": "`auth_request` → gatehouse (`database`) + `proxy_pass`"}
        for name, rs in fixed.items():
            bad = sum(sum(v for k, v in r["statuses"].items() if k != "200") + r["errors"] for r in rs)
            print(f"| {names[name]} | {med([r['p50_ms'] for r in rs]):.3f} | {med([r['p90_ms'] for r in rs]):.3f} | "
                  f"{med([r['p99_ms'] for r in rs]):.3f} | {med([r['p999_ms'] for r in rs]):.3f} | "
                  f"{med([r['rate'] for r in rs]):,.0f} | {bad} |")
        for name in ("auth_mem", "auth_db"):
            added = med([a["p99_ms"] - b["p99_ms"] for a, b in zip(fixed[name], fixed["direct"])])
            added50 = med([a["p50_ms"] - b["p50_ms"] for a, b in zip(fixed[name], fixed["direct"])])
            print(f"- {names[name]}: adds {added50:.3f} ms to p50, {added:.3f} ms to p99 (target ≤ 0.5 ms: "
                  f"{'met' if added <= 0.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
