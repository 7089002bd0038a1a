#!/usr/bin/env python3
"""hookgate's load benchmark: the same signed GitHub-style load, in one run, against
(a) a loopback sink directly, (b) nginx as a plain reverse proxy to that sink, and
(c) hookgate with full verification, dedup and fsynced acceptance, delivering to that sink.

    python3 bench/load.py                 # 1 KiB and 64 KiB bodies, 3 interleaved rounds of 10 s
    python3 bench/load.py --quick         # 1 KiB, 1 round of 5 s

Needs wrk and nginx (Debian: apt-get install wrk nginx-light) and builds hookgate and the sink
(examples/sink.rs) in release mode. Everything listens on 127.0.0.1; every run is bounded in time.
Reports requests/s, latency percentiles, each mode's ratio to nginx, CPU per request, hookgate's idle
and peak RSS, how long hookgate's queue took to drain after the load, and whether every id that got
a 2xx reached the sink.
"""

import argparse
import hashlib
import hmac
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "bench-github-secret"
PORTS = {"sink": 39100, "nginx": 39101, "hookgate": 39102, "admin": 39103}
CONNECTIONS = 64
THREADS = 2

LUA = r"""
local counter = 0
local threads = {}
local next_id = 1
local body, signature, prefix

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  local f = assert(io.open(args[1], "rb")); body = f:read("*a"); f:close()
  signature = args[2]
  prefix = args[3] .. "-" .. tid .. "-"
end

function request()
  counter = counter + 1
  return wrk.format("POST", "/hooks/github", {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = prefix .. counter,
    ["X-Hub-Signature-256"] = signature,
  }, body)
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"status_errors":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50_us":%d,"p99_us":%d,"p999_us":%d,"max_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
  for _, t in ipairs(threads) do
    io.write(string.format("GENERATED %d %d\n", t:get("tid"), t:get("counter")))
  end
end
"""

NGINX_CONF = """
worker_processes 1;
daemon off;
user root;
pid {dir}/nginx.pid;
error_log {dir}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  client_max_body_size 1m;
  client_body_buffer_size 128k;
  upstream sink {{ server 127.0.0.1:{sink}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{nginx};
    location / {{
      proxy_pass http://sink;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }}
  }}
}}
"""

HOOKGATE_CONF = """
[server]
listen = "127.0.0.1:{hookgate}"
max_body_size = 1048576
[admin]
listen = "127.0.0.1:{admin}"
[store]
path = "{dir}/store"
[forward]
concurrency = 64
[[sources]]
name = "github"
path = "/hooks/github"
provider = "github"
secrets = ["{secret}"]
upstream = "http://127.0.0.1:{sink}/app"
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def wait_port(port, timeout=20.0):
    import socket
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def cpu_seconds(pids):
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except FileNotFoundError:
            pass
    return total


def rss_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def sink_ids(prefix):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['sink']}/_sink/ids", timeout=30) as r:
        return {line for line in r.read().decode().splitlines() if line.startswith(prefix)}


def run_wrk(port, body_file, signature, prefix, seconds):
    script = os.path.join(WORK, "load.lua")
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", script,
           f"http://127.0.0.1:{port}/hooks/github", "--", body_file, signature, prefix]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    result, generated = None, {}
    for line in out.stdout.splitlines():
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
        elif line.startswith("GENERATED "):
            _, tid, n = line.split()
            generated[int(tid)] = int(n)
    if result is None:
        raise SystemExit(f"wrk failed:\n{out.stdout}\n{out.stderr}")
    result["generated"] = generated
    return result


def start(cmd, **kw):
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def stop(proc):
    if proc and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def one_run(mode, size, body_file, signature, seconds, round_no):
    prefix = f"{mode}{size}r{round_no}"
    nginx = hookgate = None
    port = PORTS["sink"]
    pids = []
    extra = {}
    try:
        if mode == "nginx":
            conf = os.path.join(WORK, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(dir=WORK, **PORTS))
            for d in ("body", "proxy"):
                os.makedirs(os.path.join(WORK, d), exist_ok=True)
            nginx = start(["nginx", "-p", WORK, "-c", conf])
            port = PORTS["nginx"]
            wait_port(port)
            pids = [nginx.pid] + children(nginx.pid)
        elif mode == "hookgate":
            store = os.path.join(WORK, "store")
            shutil.rmtree(store, ignore_errors=True)
            conf = os.path.join(WORK, "hookgate.toml")
            with open(conf, "w") as f:
                f.write(HOOKGATE_CONF.format(dir=WORK, secret=SECRET, **PORTS))
            hookgate = start([HOOKGATE, "serve", "--config", conf], env={**os.environ, "RUST_LOG": "warn"})
            port = PORTS["hookgate"]
            wait_port(port)
            wait_port(PORTS["admin"])
            time.sleep(1.0)
            extra["idle_rss_kib"] = rss_kib(hookgate.pid, "VmRSS")
            pids = [hookgate.pid]
        cpu0 = cpu_seconds(pids)
        res = run_wrk(port, body_file, signature, prefix, seconds)
        res["cpu_s"] = cpu_seconds(pids) - cpu0
        ok = res["requests"] - res["status_errors"]
        res["ok"] = ok
        res["rps"] = ok / (res["duration_us"] / 1e6)
        if mode == "hookgate":
            extra["peak_rss_kib"] = rss_kib(hookgate.pid, "VmHWM")
            # Drain: every generated id but the few in flight when wrk stopped must reach the sink.
            t0 = time.time()
            expected = {f"{prefix}-{t}-{i}" for t, n in res["generated"].items() for i in range(1, n + 1)}
            deadline = t0 + max(60.0, 5 * seconds)
            missing = expected
            while time.time() < deadline:
                missing = expected - sink_ids(prefix)
                if len(missing) <= CONNECTIONS:
                    # Stable: the rest were never answered (cut by wrk's stop).
                    time.sleep(0.5)
                    missing = expected - sink_ids(prefix)
                    if len(missing) <= CONNECTIONS:
                        break
                time.sleep(0.1)
            extra["drain_s"] = time.time() - t0
            # Ids missing at the sink must be the last ones of their thread (unanswered at the stop):
            # at most one per connection, and never more than wrk left unanswered.
            unanswered = sum(res["generated"].values()) - res["requests"]
            extra["missing"] = len(missing)
            extra["acked_missing"] = max(0, len(missing) - max(unanswered, 0))
            extra["peak_rss_kib"] = max(extra["peak_rss_kib"], rss_kib(hookgate.pid, "VmHWM"))
        res.update(extra)
        return res
    finally:
        stop(nginx)
        stop(hookgate)


def fmt_us(us):
    return f"{us / 1000:.2f}ms"


def main():
    global WORK, HOOKGATE
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sizes", default="1024,65536")
    ap.add_argument("--quick", action="store_true", help="1 KiB only, 1 round of 5 s")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.sizes = 5, 1, "1024"
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install wrk nginx-light")
    log("building hookgate and the sink (release)...")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "hookgate", "--example", "sink"],
                   cwd=ROOT, check=True)
    HOOKGATE = os.path.join(ROOT, "target", "release", "hookgate")
    sink_bin = os.path.join(ROOT, "target", "release", "examples", "sink")
    WORK = tempfile.mkdtemp(prefix="hookgate-bench-")
    with open(os.path.join(WORK, "load.lua"), "w") as f:
        f.write(LUA)
    sink = start([sink_bin, f"127.0.0.1:{PORTS['sink']}"])
    results = {}
    try:
        wait_port(PORTS["sink"])
        for size in [int(s) for s in args.sizes.split(",")]:
            body = json.dumps({"ref": "refs/heads/main", "pad": "x" * max(0, size - 40)}).encode()[:size]
            body = body[:-2] + b'"}' if len(body) == size else body
            body_file = os.path.join(WORK, f"body-{size}.json")
            with open(body_file, "wb") as f:
                f.write(body)
            signature = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
            for r in range(1, args.rounds + 1):
                # Interleaved, and rotated per round, so that drift affects every mode alike.
                modes = ["direct", "nginx", "hookgate"]
                modes = modes[(r - 1) % 3:] + modes[:(r - 1) % 3]
                for mode in modes:
                    log(f"  {size} B, round {r}: {mode}...")
                    res = one_run(mode, size, body_file, signature, args.seconds, r)
                    results.setdefault((size, mode), []).append(res)
    finally:
        stop(sink)
        shutil.rmtree(WORK, ignore_errors=True)

    print(f"hookgate load benchmark: {os.cpu_count()} cores shared by wrk ({THREADS} threads), the sink, "
          f"and the proxy under test; {CONNECTIONS} connections; {args.rounds} round(s) of {args.seconds} s "
          f"per mode, interleaved. Compare ratios, not absolute numbers.")
    summary = {}
    for size in sorted({s for s, _ in results}):
        print(f"\n{size} B bodies          req/s (median, min-max)     p50      p99      p99.9    CPU/req   vs nginx")
        nginx_rps = statistics.median(r["rps"] for r in results[(size, "nginx")])
        for mode in ("direct", "nginx", "hookgate"):
            runs = results[(size, mode)]
            rps = [r["rps"] for r in runs]
            med = statistics.median(rps)
            p50 = statistics.median(r["p50_us"] for r in runs)
            p99 = statistics.median(r["p99_us"] for r in runs)
            p999 = statistics.median(r["p999_us"] for r in runs)
            cpu = statistics.median(r["cpu_s"] / max(r["ok"], 1) * 1e6 for r in runs) if mode != "direct" else None
            errors = sum(r["status_errors"] + r["connect"] + r["read"] + r["write"] + r["timeout"] for r in runs)
            cpu_text = f"{cpu:7.1f}us" if cpu is not None else "      -  "
            print(f"  {mode:9} {med:10.0f} ({min(rps):8.0f}-{max(rps):8.0f})   {fmt_us(p50):>8} {fmt_us(p99):>8} "
                  f"{fmt_us(p999):>8} {cpu_text}   {med / nginx_rps:5.2f}x   errors {errors}")
            summary[f"{size}/{mode}"] = {"rps": med, "rps_min": min(rps), "rps_max": max(rps), "p50_us": p50,
                                         "p99_us": p99, "p999_us": p999, "cpu_us_per_req": cpu,
                                         "ratio_to_nginx": med / nginx_rps, "errors": errors}
        hg = results[(size, "hookgate")]
        idle = max(r["idle_rss_kib"] for r in hg) / 1024
        peak = max(r["peak_rss_kib"] for r in hg) / 1024
        drain = statistics.median(r["drain_s"] for r in hg)
        acked_missing = sum(r["acked_missing"] for r in hg)
        print(f"  hookgate: idle RSS {idle:.1f} MiB, peak RSS {peak:.1f} MiB, queue drained {drain:.1f} s after "
              f"the load ({drain / args.seconds * 100:.0f}% of its duration); 2xx-answered ids missing at the "
              f"sink: {acked_missing}")
        summary[f"{size}/hookgate"].update({"idle_rss_mib": idle, "peak_rss_mib": peak, "drain_s": drain,
                                            "acked_missing": acked_missing})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    if any(r["acked_missing"] for runs in results.values() for r in runs if "acked_missing" in r):
        raise SystemExit("FAILED: some acknowledged events never reached the sink")


if __name__ == "__main__":
    main()
