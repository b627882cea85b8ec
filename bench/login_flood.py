#!/usr/bin/env python3
"""Bad-login flood benchmark (issue 2, F10): does a flood of failing logins starve the rest?

Starts a release `gatehouse serve` on embedded SQLite, creates a verified account with a live
session, then measures an authenticated endpoint (GET /_gh/api/v1/account: token lookup,
session checks, device binding) with wrk, interleaved A/B/A/B…:
  A: the endpoint alone;
  B: the endpoint while a second wrk floods POST /_gh/api/v1/sessions with wrong passwords for
     random addresses (every one of which would cost an Argon2 verification).
Reports req/s and latency percentiles of the endpoint in each phase (median over rounds), what
happened to the flood (how many were hashed and answered 401, how many were shed with 503),
and the server's CPU time. Speed is measured here, never asserted in tests.

Usage: bench/login_flood.py [--rounds 3] [--seconds 8] [--binary target/release/gatehouse]
"""
import argparse
import glob
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PW = "violet tram harbour 77"

# wrk runs request/response in per-thread Lua states and done() in the main one: collect the
# per-thread tables through setup()/thread:get().
COLLECT_LUA = r"""
threads = {}
setup = function(thread) table.insert(threads, thread) end
function report_statuses()
  local total = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    if s then for k, v in pairs(s) do total[k] = (total[k] or 0) + v end end
  end
  local parts = {}
  for k, v in pairs(total) do table.insert(parts, string.format('"%d":%d', k, v)) end
  io.write("STATUSES {" .. table.concat(parts, ",") .. "}\n")
end
"""

FLOOD_LUA = COLLECT_LUA + r"""
counter = 0
statuses = {}
request = function()
  counter = counter + 1
  local body = string.format('{"email":"flood%d-%d@example.com","password":"wrong password %d"}', math.random(1, 1e9), counter, counter)
  return wrk.format("POST", "/_gh/api/v1/sessions", {["Content-Type"] = "application/json", ["User-Agent"] = "flood/1.0"}, body)
end
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  report_statuses()
end
"""

ACCOUNT_LUA = COLLECT_LUA.replace("%", "%%") + r"""
wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer %s"
wrk.headers["Gatehouse-Device"] = "%s"
wrk.headers["User-Agent"] = "bench-client/1.0"
statuses = {}
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  report_statuses()
  io.write(string.format("P50 %%d\nP90 %%d\nP99 %%d\n", latency:percentile(50), latency:percentile(90), latency:percentile(99)))
end
"""


def post(base, path, body, headers=None):
    req = urllib.request.Request(base + path, data=json.dumps(body).encode(), method="POST")
    req.add_header("content-type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def wrk(args, script):
    out = subprocess.run(["wrk", *args, "-s", script], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    statuses = json.loads(re.search(r"STATUSES (\{.*\})", out).group(1))
    pct = {k: int(v) / 1000.0 for k, v in re.findall(r"^(P\d+) (\d+)$", out, re.M)}
    return {"rps": rps, "total": total, "statuses": statuses, "pct_ms": pct}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--binary", default=os.path.join(ROOT, "target/release/gatehouse"))
    ap.add_argument("--flood-connections", type=int, default=64)
    args = ap.parse_args()
    if not shutil.which("wrk"):
        sys.exit("wrk is required: apt-get install -y wrk")
    tmp = tempfile.mkdtemp(prefix="gh-flood-")
    env = dict(os.environ, GATEHOUSE_LOG="warn")
    srv = subprocess.Popen([args.binary, "serve", "--listen", "127.0.0.1:0", "--data-dir", tmp + "/data"],
                           stdout=subprocess.PIPE, stderr=open(tmp + "/server.log", "w"), text=True, env=env)
    try:
        line = srv.stdout.readline()
        base = line.split()[-1]
        s, _ = post(base, "/_gh/api/v1/accounts", {"email": "bench@example.com", "password": PW})
        assert s == 202, s
        deadline = time.time() + 10
        while not glob.glob(tmp + "/data/mail/*.eml"):
            assert time.time() < deadline, "no verification mail"
            time.sleep(0.05)
        eml = open(glob.glob(tmp + "/data/mail/*.eml")[0]).read().replace("=\r\n", "").replace("=\n", "")
        token = re.search(r"token=3D([A-Za-z0-9_-]{43})|token=([A-Za-z0-9_-]{43})", eml)
        token = token.group(1) or token.group(2)
        assert post(base, "/_gh/api/v1/accounts/verify-email", {"token": token})[0] == 200
        s, login = post(base, "/_gh/api/v1/sessions", {"email": "bench@example.com", "password": PW},
                        {"user-agent": "bench-client/1.0"})
        assert s == 201, login
        with open(tmp + "/account.lua", "w") as f:
            f.write(ACCOUNT_LUA % (login["access_token"], login["device_id"]))
        with open(tmp + "/flood.lua", "w") as f:
            f.write(FLOOD_LUA)
        url = base + "/_gh/api/v1/account"
        d = str(args.seconds)
        results = {"alone": [], "flood": [], "flood_side": []}
        cpu = {"alone": [], "flood": []}
        for _ in range(args.rounds):
            c0 = cpu_seconds(srv.pid)
            a = wrk(["-t1", "-c8", f"-d{d}s", "--latency", url], tmp + "/account.lua")
            cpu["alone"].append((cpu_seconds(srv.pid) - c0) / max(a["total"], 1) * 1e6)
            results["alone"].append(a)
            c0 = cpu_seconds(srv.pid)
            flood = subprocess.Popen(["wrk", "-t1", f"-c{args.flood_connections}", f"-d{args.seconds + 2}s",
                                      "-s", tmp + "/flood.lua", base + "/_gh/api/v1/sessions"],
                                     stdout=subprocess.PIPE, text=True)
            time.sleep(1)  # let the flood ramp up before measuring (not synchronisation of results)
            b = wrk(["-t1", "-c8", f"-d{d}s", "--latency", url], tmp + "/account.lua")
            fout = flood.communicate()[0]
            results["flood"].append(b)
            results["flood_side"].append({
                "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", fout).group(1)),
                "statuses": json.loads(re.search(r"STATUSES (\{.*\})", fout).group(1)),
            })
            cpu["flood"].append(cpu_seconds(srv.pid) - c0)
        med = lambda xs: statistics.median(xs)
        def row(name, rs):
            return (f"| {name} | {med([r['rps'] for r in rs]):,.0f} | {med([r['pct_ms']['P50'] for r in rs]):.2f} | "
                    f"{med([r['pct_ms']['P90'] for r in rs]):.2f} | {med([r['pct_ms']['P99'] for r in rs]):.2f} | "
                    f"{sum(int(v) for r in rs for k, v in r['statuses'].items() if k != '200')} |")
        print(f"\nrounds={args.rounds} seconds={args.seconds} flood_connections={args.flood_connections} "
              f"cpus={os.cpu_count()}")
        print("| GET /_gh/api/v1/account | req/s | p50 ms | p90 ms | p99 ms | non-200 |")
        print("|---|---:|---:|---:|---:|---:|")
        print(row("alone", results["alone"]))
        print(row("during bad-login flood", results["flood"]))
        ratio = med([r["rps"] for r in results["flood"]]) / med([r["rps"] for r in results["alone"]])
        print(f"\nthroughput during flood / alone: {ratio:.2f}")
        hashed = sum(int(s.get("401", 0)) for s in (r["statuses"] for r in results["flood_side"]))
        shed = sum(int(s.get("503", 0)) for s in (r["statuses"] for r in results["flood_side"]))
        other = sum(int(v) for r in results["flood_side"] for k, v in r["statuses"].items() if k not in ("401", "503"))
        print(f"flood: {med([r['rps'] for r in results['flood_side']]):,.0f} req/s answered; "
              f"{hashed} hashed and refused (401), {shed} shed without hashing (503), {other} other")
        print(f"server CPU per /account request alone: {med(cpu['alone']):.1f} µs")
    finally:
        srv.terminate()
        srv.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
