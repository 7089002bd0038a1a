#!/usr/bin/env python3
"""hookgate's load benchmark: the same signed GitHub-style load, in one run, against
(a) a loopback sink directly, (b) nginx as a plain reverse proxy to that sink,
(c) the floor (examples/floor.rs): the least a verifying, forwarding gateway does, with nothing stored
(it checks the signature, answers 200 and forwards in the background, with hookgate's HTTP stack), and
(d) hookgate with full verification, dedup and fsynced acceptance, delivering to that sink, and
(e) the same hookgate behind [server.tls] (TLS 1.3, a P-256 certificate made with openssl at start):
what terminating TLS costs on top of (d). wrk opens its connections once and keeps them, so (e) measures
the encryption of a steady load, not handshakes.

    python3 bench/load.py                 # 1 KiB and 64 KiB bodies, 3 interleaved rounds of 10 s
    python3 bench/load.py --quick         # 1 KiB, 1 round of 5 s
    (each followed by the backlog scenario below)

Needs wrk, nginx and openssl (Debian: apt-get install wrk nginx-light openssl) and builds hookgate and the sink
(examples/sink.rs) in release mode. Everything listens on 127.0.0.1; every run is bounded in time.
Reports requests/s, latency percentiles, each mode's ratio to nginx, CPU per request, hookgate's idle
and peak RSS, the bytes hookgate wrote to disk per event, how long its queue took to drain after the
load, and whether every id that got a 2xx reached the sink. The floor tells hookgate's own cost apart
from the machine's: what hookgate takes above it is dedup, the fsynced log, the index, retries and
their bookkeeping, logs and metrics.

hookgate runs as a user runs it: its default log level (info: one line per request and per delivery
attempt), to stdout, which the script sends to /dev/null (so the lines are JSON).

The backlog scenario runs last (--backlog N, default 100000; 0 skips it): the app is down (nothing
listens on the upstream port) while exactly N signed events are sent and must all be answered 2xx;
then a fresh sink comes up on that port and the script measures how long the queue takes to reach it
(every one of the N ids), the drain rate, hookgate's peak RSS during the load and the drain, and its
RSS at the end. The source retries fast (initial_backoff 100ms, max_backoff 1s) and never
dead-letters during the test (max_attempts 1000000).

    python3 bench/load.py --quick --backlog 20000 --port-base 29300   # a short check, off the default ports
    python3 bench/load.py --rounds 0 --backlog 100000                  # the backlog scenario alone
    HOOKGATE_BIN=/path/to/other/hookgate python3 bench/load.py --quick   # another build, same load
"""

import argparse
import hashlib
import hmac
import json
import os
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "bench-github-secret"
# Offsets from --port-base (default 29100). Every port is below Linux's default ephemeral range
# (32768-60999), so that no outgoing connection of wrk, nginx or hookgate can hold one as its source port.
# "app", the backlog scenario's upstream, is 10000 below the others. While nothing listens on a port in the
# ephemeral range, hookgate's connection attempts could now and then get that very port as their source
# port and connect to themselves (a TCP self-connect), which holds the port and keeps the app from binding it.
PORT_OFFSETS = {"sink": 0, "nginx": 1, "hookgate": 2, "admin": 3, "floor": 4, "app": -10000}
PORTS = {}
# The peak RSS target: 64 MB, in MiB as the RSS is printed.
TARGET_RSS_MIB = 64e6 / 2**20
CONNECTIONS = 64
THREADS = 2

# What both wrk scripts share: numbered threads, and signed GitHub-style events read from the
# script's arguments (body file, signature, id prefix).
LUA_COMMON = r"""
local threads = {}
local next_id = 1
local body, signature, prefix

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local function read_args(args)
  local f = assert(io.open(args[1], "rb")); body = f:read("*a"); f:close()
  signature = args[2]
  prefix = args[3] .. "-" .. tid .. "-"
end

local function signed(id)
  return wrk.format("POST", "/hooks/github", {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = prefix .. id,
    ["X-Hub-Signature-256"] = signature,
  }, body)
end
"""

LUA = LUA_COMMON + r"""
-- Global, not local: done() reads it with thread:get, which sees only globals.
counter = 0

function init(args)
  read_args(args)
end

local verified = false

function request()
  -- wrk calls the first thread's request() once before the run, to check the request, and never
  -- sends that one: it gets no id.
  if tid == 1 and not verified then
    verified = true
    return signed("verify")
  end
  counter = counter + 1
  return signed(counter)
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

# The backlog load: exactly `total` signed events over all threads (thread t sends ids
# PREFIX-t-1 .. PREFIX-t-share), then each thread stops once every event it sent is answered. wrk cannot
# leave a connection idle, so a thread's connections that have nothing left to send meanwhile ask for an
# unknown path (404 from hookgate: no event); response() tells the two apart by that status.
BACKLOG_LUA = LUA_COMMON + r"""
local share
-- Globals, not locals: done() reads them with thread:get, which sees only globals.
sent, answered, ok, filler = 0, 0, 0, 0

function init(args)
  read_args(args)
  local total, n = tonumber(args[4]), tonumber(args[5])
  share = math.floor(total / n) + ((tid <= total % n) and 1 or 0)
end

local verified = false

function request()
  -- wrk calls the first thread's request() once before the run, to check the request, and never
  -- sends that one: it must not count.
  if tid == 1 and not verified then
    verified = true
    return wrk.format("GET", "/_bench/idle")
  end
  if sent < share then
    sent = sent + 1
    return signed(sent)
  end
  filler = filler + 1
  return wrk.format("GET", "/_bench/idle")
end

function response(status, headers, response_body)
  if status == 404 then return end
  answered = answered + 1
  if status >= 200 and status < 300 then ok = ok + 1 end
  if answered == share then
    io.write("THREAD_DONE\n"); io.flush()
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('RESULT {"duration_us":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,' ..
    '"p50_us":%d,"p99_us":%d,"max_us":%d}\n', summary.duration, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency.max))
  for _, t in ipairs(threads) do
    io.write(string.format("THREAD %d %d %d %d %d\n", t:get("tid"), t:get("sent"), t:get("answered"),
      t:get("ok"), t:get("filler")))
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
{tls}"""

# The TLS row's listener: a certificate for 127.0.0.1 made at start (wrk does not verify it).
HOOKGATE_TLS = """
[server.tls]
cert = "{dir}/cert.pem"
key = "{dir}/key.pem"
"""

# The backlog scenario's source policy: retries come back within a second once the app is up, and no
# event is dead-lettered while it is down.
BACKLOG_FORWARD = """
[sources.forward]
max_attempts = 1000000
initial_backoff = "100ms"
max_backoff = "1s"
"""


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def wait_port(port, timeout=20.0):
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


def write_bytes(pid):
    """What the process has caused to be written to storage so far (its threads included)."""
    with open(f"/proc/{pid}/io") as f:
        for line in f:
            if line.startswith("write_bytes:"):
                return int(line.split()[1])
    return 0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(p) for p in f.read().split()]
    except FileNotFoundError:
        return []


def sink_count():
    return int(http_get(PORTS["sink"], "/_sink/count"))


def sink_ids(prefix):
    with urllib.request.urlopen(f"http://127.0.0.1:{PORTS['sink']}/_sink/ids", timeout=30) as r:
        return {line for line in r.read().decode().splitlines() if line.startswith(prefix)}


def run_wrk(port, body_file, signature, prefix, seconds, scheme="http"):
    script = os.path.join(WORK, "load.lua")
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", script,
           f"{scheme}://127.0.0.1:{port}/hooks/github", "--", body_file, signature, prefix]
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


def hookgate_env():
    """hookgate's environment: RUST_LOG is not passed on, so it logs at its default level (info)."""
    return {k: v for k, v in os.environ.items() if k != "RUST_LOG"}


def port_listening(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def http_get(port, path, timeout=30):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


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
    nginx = floor = hookgate = None
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
        elif mode == "floor":
            floor = start([FLOOR_BIN, f"127.0.0.1:{PORTS['floor']}", f"http://127.0.0.1:{PORTS['sink']}/app",
                           SECRET])
            port = PORTS["floor"]
            wait_port(port)
            pids = [floor.pid]
        elif mode in ("hookgate", "hookgate_tls"):
            store = os.path.join(WORK, "store")
            shutil.rmtree(store, ignore_errors=True)
            conf = os.path.join(WORK, "hookgate.toml")
            tls = HOOKGATE_TLS.format(dir=WORK) if mode == "hookgate_tls" else ""
            with open(conf, "w") as f:
                f.write(HOOKGATE_CONF.format(dir=WORK, secret=SECRET, tls=tls, **PORTS))
            hookgate = start([HOOKGATE, "serve", "--config", conf], env=hookgate_env())
            port = PORTS["hookgate"]
            wait_port(port)
            wait_port(PORTS["admin"])
            time.sleep(1.0)
            extra["idle_rss_kib"] = rss_kib(hookgate.pid, "VmRSS")
            pids = [hookgate.pid]
            received_before = sink_count()
        cpu0 = cpu_seconds(pids)
        written0 = write_bytes(hookgate.pid) if hookgate else 0
        res = run_wrk(port, body_file, signature, prefix, seconds, "https" if mode == "hookgate_tls" else "http")
        res["cpu_s"] = cpu_seconds(pids) - cpu0
        ok = res["requests"] - res["status_errors"]
        res["ok"] = ok
        res["rps"] = ok / (res["duration_us"] / 1e6)
        if hookgate:
            extra["peak_rss_kib"] = rss_kib(hookgate.pid, "VmHWM")
            # Drain: every 2xx-answered id must reach the sink. Its count of distinct ids is cheap to read,
            # so it is polled often; the full list of ids, which grows with every run and costs the sink and
            # this script a lot of CPU on the machine under test, is read once the count says done.
            t0 = time.time()
            expected = {f"{prefix}-{t}-{i}" for t, n in res["generated"].items() for i in range(1, n + 1)}
            deadline = t0 + max(60.0, 5 * seconds)
            drained_at = None
            while time.time() < deadline:
                if sink_count() - received_before >= ok:
                    drained_at = time.time()
                    break
                time.sleep(0.02)
            # Ids missing at the sink must be the last ones of their thread (unanswered at the stop): at
            # most one per connection, and never more than wrk left unanswered. More means that some
            # answered ids are still on their way (the count includes the unanswered ids that hookgate
            # accepted), or lost: wait for them, less often.
            unanswered = max(sum(res["generated"].values()) - res["requests"], 0)
            missing = expected - sink_ids(prefix)
            while len(missing) > unanswered and time.time() < deadline:
                time.sleep(0.5)
                missing = expected - sink_ids(prefix)
                drained_at = time.time()
            extra["drain_s"] = (drained_at or time.time()) - t0
            extra["missing"] = len(missing)
            extra["acked_missing"] = max(0, len(missing) - unanswered)
            extra["peak_rss_kib"] = max(extra["peak_rss_kib"], rss_kib(hookgate.pid, "VmHWM"))
            # Everything the events cost the disk, the index's background writes included, once delivered.
            extra["written_per_event"] = (write_bytes(hookgate.pid) - written0) / max(ok, 1)
        res.update(extra)
        return res
    finally:
        stop(nginx)
        stop(floor)
        stop(hookgate)


def make_certificate():
    """A self-signed P-256 certificate for 127.0.0.1, for the TLS row."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", os.path.join(WORK, "key.pem"), "-out", os.path.join(WORK, "cert.pem"),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)


def send_exactly(n, body_file, signature, prefix, deadline_s):
    """Sends exactly n events to hookgate with BACKLOG_LUA; returns wrk's result and per-thread counts.

    Each wrk thread stops once its share is answered, but wrk's main thread sleeps for all of -d: when
    every thread has said THREAD_DONE, SIGINT ends that sleep (sent again until wrk exits, in case the
    first one came before wrk installed its handler). -d is the deadline of the whole load."""
    script = os.path.join(WORK, "backlog.lua")
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{deadline_s}s", "--timeout", "10s", "-s", script,
           f"http://127.0.0.1:{PORTS['hookgate']}/hooks/github", "--", body_file, signature, prefix, str(n),
           str(THREADS)]
    with open(os.path.join(WORK, "wrk-backlog.err"), "w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, text=True)
        lines = queue.Queue()

        def pump():
            for line in proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        out, threads_done, signalled = [], 0, 0.0
        hard_deadline = time.time() + deadline_s + 60
        while time.time() < hard_deadline:
            if threads_done == THREADS and time.time() - signalled > 0.5:
                proc.send_signal(signal.SIGINT)
                signalled = time.time()
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            out.append(line)
            if line.startswith("THREAD_DONE"):
                threads_done += 1
        else:
            proc.kill()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        err.seek(0)
        errors = err.read()
    result, threads = None, {}
    for line in out:
        if line.startswith("RESULT "):
            result = json.loads(line[len("RESULT "):])
        elif line.startswith("THREAD "):
            tid, sent, answered, ok, filler = (int(x) for x in line.split()[1:])
            threads[tid] = {"sent": sent, "answered": answered, "ok": ok, "filler": filler}
    if result is None or len(threads) != THREADS:
        raise SystemExit(f"wrk failed:\n{''.join(out)}\n{errors}")
    result["threads"] = threads
    return result


def backlog_run(n, body_file, signature):
    """The app is down while n events are sent, then comes up: how fast, and in how much memory, the
    queue reaches it. Returns the measurements; `acked_missing` > 0 means acknowledged events were lost."""
    prefix = f"backlog{n}"
    if port_listening(PORTS["app"]):
        raise SystemExit(f"127.0.0.1:{PORTS['app']} (the backlog's app port) is in use: choose another --port-base")
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
        if low <= PORTS["app"] <= high:
            log(f"warning: the app port {PORTS['app']} is in the ephemeral range {low}-{high}: hookgate may "
                f"self-connect to it while the app is down")
    except (OSError, ValueError):
        pass
    store = os.path.join(WORK, "store")
    shutil.rmtree(store, ignore_errors=True)
    conf = os.path.join(WORK, "hookgate-backlog.toml")
    with open(conf, "w") as f:
        f.write(HOOKGATE_CONF.format(dir=WORK, secret=SECRET, **{**PORTS, "sink": PORTS["app"]}) + BACKLOG_FORWARD)
    hookgate = app = None
    res = {"events": n}
    try:
        hookgate = start([HOOKGATE, "serve", "--config", conf], env=hookgate_env())
        wait_port(PORTS["hookgate"])
        wait_port(PORTS["admin"])
        time.sleep(1.0)
        res["idle_rss_kib"] = rss_kib(hookgate.pid, "VmRSS")

        # The app is down: send exactly n events, each of which must be answered 2xx.
        log(f"  backlog: sending {n} events, the app down...")
        t0 = time.time()
        load = send_exactly(n, body_file, signature, prefix, deadline_s=60 + n // 200)
        res["load_s"] = time.time() - t0
        per_thread = load["threads"].values()
        for key in ("sent", "answered", "ok", "filler"):
            res[key] = sum(t[key] for t in per_thread)
        res["accept_rps"] = res["ok"] / res["load_s"]
        res["p50_us"], res["p99_us"] = load["p50_us"], load["p99_us"]
        res["socket_errors"] = {k: load[k] for k in ("connect", "read", "write", "timeout")}
        res["load_peak_rss_kib"] = rss_kib(hookgate.pid, "VmHWM")
        res["after_load_rss_kib"] = rss_kib(hookgate.pid, "VmRSS")
        res["refused_attempts"] = deliveries(PORTS["admin"], "retry")
        # Resets VmHWM (Linux's clear_refs "5"), so that the next reading is the drain's own peak.
        try:
            with open(f"/proc/{hookgate.pid}/clear_refs", "w") as f:
                f.write("5")
            drain_hwm = True
        except OSError:
            drain_hwm = False

        # The app comes up: wait until every answered id has reached it.
        log("  backlog: the app is up, draining...")
        t_up = time.time()
        app = start([SINK_BIN, f"127.0.0.1:{PORTS['app']}"])
        up_deadline = time.time() + 20
        while not port_listening(PORTS["app"]):
            if app.poll() is not None:
                raise SystemExit(f"the app could not bind 127.0.0.1:{PORTS['app']} (a TCP self-connect of hookgate's "
                                 f"attempts may hold it: choose a port outside the ephemeral range)")
            if time.time() > up_deadline:
                raise SystemExit(f"nothing listens on 127.0.0.1:{PORTS['app']} after 20 s")
            time.sleep(0.02)
        deadline = t_up + 60 + n / 250
        count, rss_max = 0, 0
        while time.time() < deadline:
            count = int(http_get(PORTS["app"], "/_sink/count", timeout=10))
            rss_max = max(rss_max, rss_kib(hookgate.pid, "VmRSS"))
            if count >= res["ok"]:
                break
            time.sleep(0.1)
        res["drain_s"] = time.time() - t_up
        res["delivered"] = count
        res["drained"] = count >= res["ok"]
        res["drain_rps"] = count / res["drain_s"]
        res["drain_peak_rss_kib"] = rss_kib(hookgate.pid, "VmHWM") if drain_hwm else rss_max
        res["end_rss_kib"] = rss_kib(hookgate.pid, "VmRSS")
        res["peak_rss_kib"] = max(res["load_peak_rss_kib"], res["drain_peak_rss_kib"])
        res["dead_letters"] = deliveries(PORTS["admin"], "dead_letter")
        received = set(http_get(PORTS["app"], "/_sink/ids", timeout=60).split())
        expected = {f"{prefix}-{tid}-{i}" for tid, t in load["threads"].items() for i in range(1, t["sent"] + 1)}
        res["missing"] = len(expected - received)
        # Ids that were not answered 2xx may be missing; if every event was answered 2xx, none may.
        res["acked_missing"] = max(0, res["missing"] - (res["sent"] - res["ok"]))
        return res
    finally:
        stop(app)
        stop(hookgate)


def deliveries(admin_port, outcome):
    """hookgate_deliveries_total for one outcome, summed over its labels, from the admin /metrics."""
    total = 0
    for line in http_get(admin_port, "/metrics", timeout=10).splitlines():
        if line.startswith("hookgate_deliveries_total{") and f'outcome="{outcome}"' in line:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def fmt_us(us):
    return f"{us / 1000:.2f}ms"


def make_body(size):
    """A JSON body of exactly `size` bytes, and its GitHub signature."""
    body = json.dumps({"ref": "refs/heads/main", "pad": "x" * max(0, size - 40)}).encode()[:size]
    body = body[:-2] + b'"}' if len(body) == size else body
    body_file = os.path.join(WORK, f"body-{size}.json")
    with open(body_file, "wb") as f:
        f.write(body)
    return body_file, "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()


def main():
    global WORK, HOOKGATE, SINK_BIN, FLOOR_BIN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3,
                    help="rounds of direct/nginx/floor/hookgate/hookgate_tls (0: none)")
    ap.add_argument("--sizes", default="1024,65536")
    ap.add_argument("--quick", action="store_true", help="1 KiB only, 1 round of 5 s")
    ap.add_argument("--backlog", type=int, default=100000,
                    help="events queued while the app is down, then drained (default 100000; 0 skips it)")
    ap.add_argument("--port-base", type=int, default=29100,
                    help="loopback ports: this one and the next 4, and the backlog's app 10000 below it "
                         "(default 29100)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.sizes = 5, 1, "1024"
    if not 11024 <= args.port_base <= 65531:
        raise SystemExit("--port-base must be between 11024 and 65531")
    if 0 < args.backlog < THREADS:
        raise SystemExit(f"--backlog must be 0 or at least {THREADS} (one event per wrk thread)")
    PORTS.update({name: args.port_base + offset for name, offset in PORT_OFFSETS.items()})
    for tool in ("wrk", "nginx", "openssl"):
        if not shutil.which(tool):
            raise SystemExit(f"{tool} is missing: apt-get install wrk nginx-light openssl")
    log("building hookgate, the sink and the floor (release)...")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "hookgate", "--example", "sink",
                    "--example", "floor"],
                   cwd=ROOT, check=True, timeout=3600)
    # HOOKGATE_BIN runs another build (say, main's) against the same sink and load, for an A/B.
    HOOKGATE = os.environ.get("HOOKGATE_BIN") or os.path.join(ROOT, "target", "release", "hookgate")
    SINK_BIN = os.path.join(ROOT, "target", "release", "examples", "sink")
    FLOOR_BIN = os.path.join(ROOT, "target", "release", "examples", "floor")
    WORK = tempfile.mkdtemp(prefix="hookgate-bench-")
    for name, text in (("load.lua", LUA), ("backlog.lua", BACKLOG_LUA)):
        with open(os.path.join(WORK, name), "w") as f:
            f.write(text)
    make_certificate()
    sink = None
    results, backlog = {}, None
    try:
        if args.rounds > 0:
            sink = start([SINK_BIN, f"127.0.0.1:{PORTS['sink']}"])
            wait_port(PORTS["sink"])
        for size in [int(s) for s in args.sizes.split(",")] if args.rounds > 0 else []:
            body_file, signature = make_body(size)
            for r in range(1, args.rounds + 1):
                # Interleaved, and rotated per round, so that drift affects every mode alike.
                modes = ["direct", "nginx", "floor", "hookgate", "hookgate_tls"]
                modes = modes[(r - 1) % len(modes):] + modes[:(r - 1) % len(modes)]
                for mode in modes:
                    log(f"  {size} B, round {r}: {mode}...")
                    res = one_run(mode, size, body_file, signature, args.seconds, r)
                    results.setdefault((size, mode), []).append(res)
        stop(sink)
        if args.backlog:
            body_file, signature = make_body(1024)
            backlog = backlog_run(args.backlog, body_file, signature)
    finally:
        stop(sink)
        shutil.rmtree(WORK, ignore_errors=True)

    print(f"hookgate load benchmark: {os.cpu_count()} cores shared by wrk ({THREADS} threads), the sink, "
          f"and the proxy under test; {CONNECTIONS} connections; {args.rounds} round(s) of {args.seconds} s "
          f"per mode, interleaved. Compare ratios, not absolute numbers.")
    summary = {}
    for size in sorted({s for s, _ in results}):
        print(f"\n{size} B bodies             req/s (median, min-max)     p50      p99      p99.9    CPU/req   vs nginx")
        nginx_rps = statistics.median(r["rps"] for r in results[(size, "nginx")])
        for mode in ("direct", "nginx", "floor", "hookgate", "hookgate_tls"):
            runs = results[(size, mode)]
            rps = [r["rps"] for r in runs]
            med = statistics.median(rps)
            p50 = statistics.median(r["p50_us"] for r in runs)
            p99 = statistics.median(r["p99_us"] for r in runs)
            p999 = statistics.median(r["p999_us"] for r in runs)
            cpu = statistics.median(r["cpu_s"] / max(r["ok"], 1) * 1e6 for r in runs) if mode != "direct" else None
            errors = sum(r["status_errors"] + r["connect"] + r["read"] + r["write"] + r["timeout"] for r in runs)
            cpu_text = f"{cpu:7.1f}us" if cpu is not None else "      -  "
            print(f"  {mode:12} {med:10.0f} ({min(rps):8.0f}-{max(rps):8.0f})   {fmt_us(p50):>8} {fmt_us(p99):>8} "
                  f"{fmt_us(p999):>8} {cpu_text}   {med / nginx_rps:5.2f}x   errors {errors}")
            summary[f"{size}/{mode}"] = {"rps": med, "rps_min": min(rps), "rps_max": max(rps), "p50_us": p50,
                                         "p99_us": p99, "p999_us": p999, "cpu_us_per_req": cpu,
                                         "ratio_to_nginx": med / nginx_rps, "errors": errors}
        hg = results[(size, "hookgate")]
        idle = max(r["idle_rss_kib"] for r in hg) / 1024
        peak = max(r["peak_rss_kib"] for r in hg) / 1024
        drain = statistics.median(r["drain_s"] for r in hg)
        written = statistics.median(r["written_per_event"] for r in hg) / 1024
        acked_missing = sum(r["acked_missing"] for r in hg)
        floor_rps = statistics.median(r["rps"] for r in results[(size, "floor")])
        print(f"  hookgate: {statistics.median(r['rps'] for r in hg) / floor_rps:.2f}x the floor; disk writes "
              f"{written:.1f} KiB per event ({size / 1024:.0f} KiB of body)")
        print(f"  hookgate: idle RSS {idle:.1f} MiB, peak RSS {peak:.1f} MiB, queue drained {drain:.1f} s after "
              f"the load ({drain / args.seconds * 100:.0f}% of its duration); 2xx-answered ids missing at the "
              f"sink: {acked_missing}")
        plain, tls = summary[f"{size}/hookgate"], summary[f"{size}/hookgate_tls"]
        print(f"  hookgate over TLS: {tls['rps'] / plain['rps']:.2f}x plain hookgate's req/s, "
              f"{tls['cpu_us_per_req'] - plain['cpu_us_per_req']:+.1f} us of CPU per request")
        summary[f"{size}/hookgate"].update({"idle_rss_mib": idle, "peak_rss_mib": peak, "drain_s": drain,
                                            "acked_missing": acked_missing, "written_kib_per_event": written,
                                            "ratio_to_floor": statistics.median(r["rps"] for r in hg) / floor_rps})
    failures = []
    if backlog:
        b = backlog
        mib = {k: b[k] / 1024 for k in ("idle_rss_kib", "load_peak_rss_kib", "drain_peak_rss_kib", "end_rss_kib",
                                          "peak_rss_kib")}
        answered = "all answered 2xx" if b["ok"] == b["events"] else \
            f"only {b['ok']} answered 2xx ({b['sent']} sent, {b['answered']} answered; wrk's socket errors " \
            f"{b['socket_errors']})"
        print(f"\nbacklog, 1 KiB bodies: {b['events']} events sent while the app was down, in {b['load_s']:.1f} s "
              f"({b['accept_rps']:.0f}/s, p50 {fmt_us(b['p50_us'])}, p99 {fmt_us(b['p99_us'])}), {answered}; "
              f"{b['refused_attempts']} delivery attempts failed meanwhile")
        reached = f"all {b['ok']} answered ids reached it in" if b["drained"] else \
            f"only {b['delivered']} of the {b['ok']} answered ids reached it before the deadline,"
        print(f"  the app came up: {reached} {b['drain_s']:.1f} s ({b['drain_rps']:.0f} events/s); dead letters "
              f"{b['dead_letters']}; 2xx-answered ids missing at the sink: {b['acked_missing']}")
        bounded = "yes" if mib["peak_rss_kib"] <= TARGET_RSS_MIB and b["end_rss_kib"] <= b["peak_rss_kib"] else "NO"
        print(f"  hookgate RSS: idle {mib['idle_rss_kib']:.1f} MiB, peak {mib['load_peak_rss_kib']:.1f} MiB during "
              f"the load and {mib['drain_peak_rss_kib']:.1f} MiB during the drain, {mib['end_rss_kib']:.1f} MiB at "
              f"the end; within the 64 MB ({TARGET_RSS_MIB:.1f} MiB) target: {bounded}")
        summary["backlog"] = {**{k: v for k, v in b.items() if k not in mib},
                              **{k.replace("_kib", "_mib"): v for k, v in mib.items()}}
        if b["ok"] != b["events"]:
            failures.append(f"backlog: {b['events'] - b['ok']} of {b['events']} events were not answered 2xx")
        if not b["drained"]:
            failures.append("backlog: the queue did not drain before the deadline")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    if any(r["acked_missing"] for runs in results.values() for r in runs if "acked_missing" in r) or \
            (backlog and backlog["acked_missing"]):
        failures.append("some acknowledged events never reached the sink")
    if failures:
        raise SystemExit("FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    main()
