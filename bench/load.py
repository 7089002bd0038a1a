#!/usr/bin/env python3
"""hookgate's load benchmark (issue 22): hookgate as users run it (its default config: the benchmark's
config sets only the ports, the path, the secret and the store path) under signed GitHub-style load with
random UUID event ids, unique per request, against nginx and the floor in the same run.

Scenarios, each with req/s (median and spread over interleaved rounds), p50/p99/p99.9, CPU per request,
peak RSS and the ratio to nginx:

1. A fast app (examples/sink.rs), 1 KiB and 64 KiB bodies, with these rows, interleaved and rotated per
   round: straight to the sink; nginx as a plain reverse proxy; the floor (examples/floor.rs: the least
   a verifying, forwarding gateway does, with nothing stored, on hookgate's HTTP stack); hookgate;
   hookgate tuned (`[forward] concurrency = 64` and counting ids `prefix-1-1`, `prefix-1-2`: what this
   benchmark measured before issue 22); hookgate behind [server.tls] (TLS 1.3, a P-256 certificate made
   with openssl at start; wrk keeps its connections, so this is the encryption of a steady load, not
   handshakes); and, at the first size only, hookgate publishing to NATS JetStream, RabbitMQ and Redis
   Streams (issue 19; local servers on 4222, 5672 and 6379; each run has its own subject and stream,
   exchange and queue, or stream key, removed after it; a row whose broker is absent is skipped and
   said so). hookgate's rows also report how fast events were delivered, from the load's start until
   the last one, and check that every id answered 2xx reached the sink (or, for a broker, that it
   holds at least as many messages).
2. A 20 ms app (the sink with a delay): hookgate's accept rate and p99 against nginx proxying to the
   same app, then hookgate's drain rate against the app's capacity, `concurrency / 20 ms`.
3. The backlog: the app down (nothing listens on its port) while exactly N events arrive (--backlog N,
   default 100000; 0 skips it), each of which must be answered 2xx; then a fresh sink comes up and the
   script measures how long the queue takes to reach it, the drain rate, and hookgate's peak RSS during
   the load and the drain. The source retries fast (initial_backoff 100ms, max_backoff 1s) and never
   dead-letters during the test (max_attempts 1000000).

Then it prints issue 22's targets and whether this run meets each, and the load average before and after
(the machine may be shared: compare ratios, not absolute numbers).

    python3 bench/load.py                 # everything: 3 rounds of 10 s per row (about 20 minutes)
    python3 bench/load.py --quick         # 1 KiB, 1 round of 5 s, a 3 s 20 ms-app round, a backlog of 20000
    python3 bench/load.py --quick --no-brokers --backlog 0 --slow-rounds 0    # the fast-app rows only
    python3 bench/load.py --rounds 0 --slow-rounds 0 --backlog 100000          # the backlog alone
    HOOKGATE_BIN=/path/to/other/hookgate python3 bench/load.py --quick         # another build, same load
    python3 bench/load.py --compare /tmp/hookgate-main --rows hookgate,hookgate_b   # before/after, interleaved

Needs wrk, nginx and openssl (Debian: apt-get install wrk nginx-light openssl), redis-cli for the Redis
row and the Python module pika for the RabbitMQ one (pip install pika), and builds hookgate, the sink and
the floor in release mode. Everything listens on 127.0.0.1; every loop and wait is bounded in time.
hookgate runs at its default log level (info: one line per request and per delivery attempt), to stdout,
which the script sends to /dev/null (so the lines are JSON).
"""

import argparse
import hashlib
import hmac
import json
import os
import queue
import re
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
# "slow" is the 20 ms app.
PORT_OFFSETS = {"sink": 0, "nginx": 1, "hookgate": 2, "admin": 3, "floor": 4, "slow": 5, "app": -10000}
PORTS = {}
# The peak RSS target: 64 MB, in MiB as the RSS is printed.
TARGET_RSS_MIB = 64e6 / 2**20
CONNECTIONS = 64
THREADS = 2
# The slow app's time per request.
SLOW_MS = 20
# The brokers of the queue outputs (issue 19), on the machine's usual ports.
NATS_PORT, AMQP_PORT, REDIS_PORT = 4222, 5672, 6379

# What both wrk scripts share: numbered threads, and signed GitHub-style events read from the
# script's arguments (body file, signature, id prefix, id kind, seed).
#
# Event ids are random-looking UUIDs (version 4 in form), unique per request, like GitHub's
# X-GitHub-Delivery: thread t's i-th id is a keyed xorshift permutation of i (so ids spread all over
# the store's index, and two ids of a thread never collide), then the run's tag and t. `uuid_for` below
# computes the same ids, so the script knows which ids each answered request carried. With the id kind
# "count" (the tuned row only), ids count up instead: PREFIX-t-1, PREFIX-t-2, ...
LUA_COMMON = r"""
local bit = require("bit")
local threads = {}
local next_id = 1
local body, signature, prefix, kind, ka, kb, tag

function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local function mix(x)
  x = bit.bxor(x, bit.lshift(x, 13))
  x = bit.bxor(x, bit.rshift(x, 17))
  return bit.bxor(x, bit.lshift(x, 5))
end

local function read_args(args)
  local f = assert(io.open(args[1], "rb")); body = f:read("*a"); f:close()
  signature = args[2]
  prefix = args[3] .. "-" .. tid .. "-"
  kind = args[4]
  local seed = tonumber(args[5])
  ka = mix(mix(bit.tobit(seed + tid * 7919)))
  kb = mix(bit.bxor(ka, 0x5bd1e995))
  tag = mix(bit.bxor(bit.tobit(seed), 0x1e3779b9))
end

local function event_id(i)
  if kind == "count" then return prefix .. i end
  local a, b = mix(mix(bit.bxor(i, ka))), mix(bit.bxor(i, kb))
  return bit.tohex(a, 8) .. "-" .. bit.tohex(bit.rshift(b, 16), 4) .. "-4" .. bit.tohex(b, 3) .. "-8" ..
    bit.tohex(bit.rshift(b, 12), 3) .. "-" .. bit.tohex(tag, 8) .. bit.tohex(tid, 4)
end

local function signed(id)
  return wrk.format("POST", "/hooks/github", {
    ["Content-Type"] = "application/json",
    ["X-GitHub-Event"] = "push",
    ["X-GitHub-Delivery"] = type(id) == "number" and event_id(id) or id,
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

# The backlog load: exactly `total` signed events over all threads (thread t sends its ids 1 .. share),
# then each thread stops once every event it sent is answered. wrk cannot
# leave a connection idle, so a thread's connections that have nothing left to send meanwhile ask for an
# unknown path (404 from hookgate: no event); response() tells the two apart by that status.
BACKLOG_LUA = LUA_COMMON + r"""
local share
-- Globals, not locals: done() reads them with thread:get, which sees only globals.
sent, answered, ok, filler = 0, 0, 0, 0

function init(args)
  read_args(args)
  local total, n = tonumber(args[6]), tonumber(args[7])
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
  upstream sink {{ server 127.0.0.1:{upstream}; keepalive 64; }}
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

# hookgate as a user runs it: its default config, with only the ports, the path, the secret and the store
# path set. {output} is empty for HTTP delivery, or a broker's [sources.output] table; {tuned} is empty
# but in the tuned row.
HOOKGATE_CONF = """
[server]
listen = "127.0.0.1:{hookgate}"
[admin]
listen = "127.0.0.1:{admin}"
[store]
path = "{dir}/store"
{tuned}
[[sources]]
name = "github"
path = "/hooks/github"
provider = "github"
secrets = ["{secret}"]
upstream = "{upstream}"
{output}{tls}"""

# The tuned row: what the benchmark ran before issue 22 (more forwards in flight, and counting ids).
TUNED_FORWARD = """
[forward]
concurrency = 64
"""

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


M32 = 0xFFFFFFFF


def mix(x):
    """LUA_COMMON's mix: three xorshift steps, a bijection of 32-bit values."""
    x ^= (x << 13) & M32
    x ^= x >> 17
    return x ^ ((x << 5) & M32)


class Ids:
    """The event ids of one wrk run: random-looking UUIDs (or, for the tuned row, counting ids), the same
    as LUA_COMMON's event_id computes, so that the script knows which id each answered request carried."""

    def __init__(self, prefix, kind="uuid"):
        self.prefix, self.kind = prefix, kind
        self.seed = int.from_bytes(os.urandom(4), "big") & 0x3FFFFFFF

    def args(self):
        return [self.prefix, self.kind, str(self.seed)]

    def of_thread(self, tid, n):
        if self.kind == "count":
            return [f"{self.prefix}-{tid}-{i}" for i in range(1, n + 1)]
        ka = mix(mix((self.seed + tid * 7919) & M32))
        kb = mix(ka ^ 0x5BD1E995)
        tail = f"{mix(self.seed ^ 0x1E3779B9):08x}{tid:04x}"
        out = []
        for i in range(1, n + 1):
            a, b = mix(mix(i ^ ka)), mix(i ^ kb)
            out.append(f"{a:08x}-{b >> 16:04x}-4{b & 0xFFF:03x}-8{(b >> 12) & 0xFFF:03x}-{tail}")
        return out

    def expected(self, per_thread):
        """Every id sent, given how many each thread sent ({tid: n})."""
        return {i for tid, n in per_thread.items() for i in self.of_thread(tid, n)}


def sink_count(port=None):
    return int(http_get(port or PORTS["sink"], "/_sink/count"))


def sink_ids(port=None):
    with urllib.request.urlopen(f"http://127.0.0.1:{port or PORTS['sink']}/_sink/ids", timeout=60) as r:
        return set(r.read().decode().split())


def sink_reset(port=None):
    http_get(port or PORTS["sink"], "/_sink/reset")


def run_wrk(port, body_file, signature, ids, seconds, scheme="http"):
    script = os.path.join(WORK, "load.lua")
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "-s", script,
           f"{scheme}://127.0.0.1:{port}/hooks/github", "--", body_file, signature, *ids.args()]
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
    result["ok"] = result["requests"] - result["status_errors"]
    result["rps"] = result["ok"] / (result["duration_us"] / 1e6)
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


# ---- The queue outputs (issue 19): each run publishes to a subject, exchange or stream of its own. ----

def nats_request(subject, payload=b""):
    """One request to the NATS server (the JetStream API is request/reply on $JS.API subjects)."""
    with socket.create_connection(("127.0.0.1", NATS_PORT), timeout=10) as s:
        f = s.makefile("rb")
        f.readline()  # INFO
        s.sendall(b'CONNECT {"verbose":false,"pedantic":false}\r\nSUB _INBOX.hookgate_bench 1\r\n'
                  b"PUB %s _INBOX.hookgate_bench %d\r\n%s\r\n" % (subject.encode(), len(payload), payload))
        for _ in range(100):
            line = f.readline()
            if not line:
                break
            if line.startswith(b"MSG "):
                data = f.read(int(line.split()[-1]))
                return json.loads(data)
            if line.startswith(b"PING"):
                s.sendall(b"PONG\r\n")
            if line.startswith(b"-ERR"):
                raise RuntimeError(line.decode().strip())
    raise RuntimeError(f"no reply from NATS to {subject}")


def amqp_channel():
    import pika  # pip install pika; the RabbitMQ row is skipped without it
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", AMQP_PORT, credentials=pika.PlainCredentials("guest", "guest")))
    return conn, conn.channel()


def redis_cli(*args):
    return subprocess.run(["redis-cli", "-p", str(REDIS_PORT), *args], capture_output=True, text=True,
                          timeout=60, check=True).stdout.strip()


def broker_missing(kind):
    """Why the broker row `kind` cannot run here, or None."""
    port = {"nats": NATS_PORT, "amqp": AMQP_PORT, "redis": REDIS_PORT}[kind]
    if not port_listening(port):
        return f"nothing listens on 127.0.0.1:{port}"
    if kind == "amqp":
        try:
            import pika  # noqa: F401
        except ImportError:
            return "the Python module pika is missing (pip install pika)"
    if kind == "redis" and not shutil.which("redis-cli"):
        return "redis-cli is missing"
    return None


def broker_setup(kind, name):
    """The upstream and [sources.output] table for a run named `name`, with what it needs created."""
    if kind == "nats":
        return (f"nats://127.0.0.1:{NATS_PORT}",
                f'[sources.output]\nsubject = "hookgate_bench.{name}"\ncreate_stream = true\n')
    if kind == "amqp":
        conn, ch = amqp_channel()
        ch.exchange_declare(f"hookgate-bench-{name}", exchange_type="topic", durable=True)
        ch.queue_declare(f"hookgate-bench-{name}", durable=True)
        ch.queue_bind(f"hookgate-bench-{name}", f"hookgate-bench-{name}", routing_key="github")
        conn.close()
        return (f"amqp://guest:guest@127.0.0.1:{AMQP_PORT}/%2f",
                f'[sources.output]\nexchange = "hookgate-bench-{name}"\n')
    redis_cli("DEL", f"hookgate-bench:{name}")
    return f"redis://127.0.0.1:{REDIS_PORT}/0", f'[sources.output]\nstream = "hookgate-bench:{name}"\n'


def broker_count(kind, name):
    """How many messages the run's subject, queue or stream holds."""
    if kind == "nats":
        return int(nats_request(f"$JS.API.STREAM.INFO.hookgate_bench_{name}").get("state", {}).get("messages", 0))
    if kind == "amqp":
        conn, ch = amqp_channel()
        n = ch.queue_declare(f"hookgate-bench-{name}", passive=True).method.message_count
        conn.close()
        return n
    return int(redis_cli("XLEN", f"hookgate-bench:{name}") or 0)


def broker_cleanup(kind, name):
    try:
        if kind == "nats":
            nats_request(f"$JS.API.STREAM.DELETE.hookgate_bench_{name}")
        elif kind == "amqp":
            conn, ch = amqp_channel()
            ch.queue_delete(f"hookgate-bench-{name}")
            ch.exchange_delete(f"hookgate-bench-{name}")
            conn.close()
        else:
            redis_cli("DEL", f"hookgate-bench:{name}")
    except Exception as e:  # noqa: BLE001 (a leftover stream is not worth failing the run over)
        log(f"  warning: could not remove the {kind} run {name}: {e}")


# What each row of the fast-app rounds runs. hookgate's rows deliver to the sink over HTTP, or publish to a
# broker (output); the tuned row adds TUNED_FORWARD and sends counting ids.
MODES = {
    "direct": {}, "nginx": {}, "floor": {},
    "hookgate": {"hookgate": True},
    "hookgate_tuned": {"hookgate": True, "tuned": True},
    "hookgate_b": {"hookgate": True, "other": True},
    "hookgate_tls": {"hookgate": True, "tls": True},
    "hookgate_nats": {"hookgate": True, "output": "nats"},
    "hookgate_amqp": {"hookgate": True, "output": "amqp"},
    "hookgate_redis": {"hookgate": True, "output": "redis"},
}
LABELS = {
    "direct": "direct to the sink", "nginx": "nginx", "floor": "floor",
    "hookgate": "hookgate", "hookgate_tuned": "hookgate, tuned", "hookgate_b": "hookgate, --compare build", "hookgate_tls": "hookgate, TLS",
    "hookgate_nats": "hookgate -> NATS", "hookgate_amqp": "hookgate -> RabbitMQ",
    "hookgate_redis": "hookgate -> Redis",
}


def write_hookgate_conf(name, upstream, output="", tls=False, tuned=False, extra=""):
    conf = os.path.join(WORK, f"{name}.toml")
    with open(conf, "w") as f:
        f.write(HOOKGATE_CONF.format(dir=WORK, secret=SECRET, upstream=upstream, output=output,
                                     tls=HOOKGATE_TLS.format(dir=WORK) if tls else "",
                                     tuned=TUNED_FORWARD if tuned else "", **PORTS) + extra)
    return conf


def start_hookgate(conf, other=False):
    shutil.rmtree(os.path.join(WORK, "store"), ignore_errors=True)
    hookgate = start([OTHER if other else HOOKGATE, "serve", "--config", conf], env=hookgate_env())
    wait_port(PORTS["hookgate"])
    wait_port(PORTS["admin"])
    time.sleep(1.0)
    return hookgate


def start_nginx(upstream):
    conf = os.path.join(WORK, "nginx.conf")
    with open(conf, "w") as f:
        f.write(NGINX_CONF.format(dir=WORK, upstream=upstream, **PORTS))
    for d in ("body", "proxy"):
        os.makedirs(os.path.join(WORK, d), exist_ok=True)
    nginx = start(["nginx", "-p", WORK, "-c", conf])
    wait_port(PORTS["nginx"])
    return nginx


def forward_concurrency(conf):
    """The source's forward concurrency, as `hookgate check` prints it."""
    out = subprocess.run([HOOKGATE, "check", "--config", conf], capture_output=True, text=True, timeout=60)
    m = re.search(r"concurrency (\d+)", out.stdout + out.stderr)
    return int(m.group(1)) if m else None


def await_delivery(res, ids, delivered, received, deadline):
    """Waits until every 2xx-answered id is delivered: `delivered()` counts what reached the app or the
    broker, `received()` (HTTP only) lists the ids the app has. Sets drained_at, missing, acked_missing."""
    ok = res["ok"]
    drained_at = None
    while time.time() < deadline:
        if delivered() >= ok:
            drained_at = time.time()
            break
        time.sleep(0.02)
    # Ids missing at the app must be the last ones of their thread (unanswered at the stop): never more
    # than wrk left unanswered. More means that some answered ids are still on their way (the count
    # includes the unanswered ids that hookgate accepted), or lost: wait for them, less often.
    unanswered = max(sum(res["generated"].values()) - res["requests"], 0)
    if received is None:
        res["drained_at"] = drained_at or time.time()
        res["missing"] = max(0, ok - delivered())
        res["acked_missing"] = res["missing"]
        return
    expected = ids.expected(res["generated"])
    missing = expected - received()
    while len(missing) > unanswered and time.time() < deadline:
        time.sleep(0.5)
        missing = expected - received()
        drained_at = time.time()
    res["drained_at"] = drained_at or time.time()
    res["missing"] = len(missing)
    res["acked_missing"] = max(0, len(missing) - unanswered)


def make_certificate():
    """A self-signed P-256 certificate for 127.0.0.1, for the TLS row."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", os.path.join(WORK, "key.pem"), "-out", os.path.join(WORK, "cert.pem"),
                    "-days", "2", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)


def send_exactly(n, body_file, signature, ids, deadline_s):
    """Sends exactly n events to hookgate with BACKLOG_LUA; returns wrk's result and per-thread counts.

    Each wrk thread stops once its share is answered, but wrk's main thread sleeps for all of -d: when
    every thread has said THREAD_DONE, SIGINT ends that sleep (sent again until wrk exits, in case the
    first one came before wrk installed its handler). -d is the deadline of the whole load."""
    script = os.path.join(WORK, "backlog.lua")
    cmd = ["wrk", f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{deadline_s}s", "--timeout", "10s", "-s", script,
           f"http://127.0.0.1:{PORTS['hookgate']}/hooks/github", "--", body_file, signature, *ids.args(), str(n),
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


def one_run(mode, size, body_file, signature, seconds, round_no):
    """One row's round against the fast app (the sink), or its broker."""
    spec = MODES[mode]
    name = f"s{size}r{round_no}"
    ids = Ids(f"{mode}{size}r{round_no}", "count" if spec.get("tuned") else "uuid")
    nginx = floor = hookgate = None
    port, pids, res = PORTS["sink"], [], {}
    kind = spec.get("output")
    try:
        if mode == "nginx":
            nginx = start_nginx(PORTS["sink"])
            port = PORTS["nginx"]
            pids = [nginx.pid] + children(nginx.pid)
        elif mode == "floor":
            floor = start([FLOOR_BIN, f"127.0.0.1:{PORTS['floor']}", f"http://127.0.0.1:{PORTS['sink']}/app",
                           SECRET])
            port = PORTS["floor"]
            wait_port(port)
            pids = [floor.pid]
        elif spec.get("hookgate"):
            if kind:
                upstream, output = broker_setup(kind, name)
            else:
                upstream, output = f"http://127.0.0.1:{PORTS['sink']}/app", ""
                sink_reset()
            conf = write_hookgate_conf("hookgate", upstream, output, tls=spec.get("tls"), tuned=spec.get("tuned"))
            hookgate = start_hookgate(conf, spec.get("other"))
            port = PORTS["hookgate"]
            idle_rss = rss_kib(hookgate.pid, "VmRSS")
            pids = [hookgate.pid]
        cpu0 = cpu_seconds(pids)
        written0 = write_bytes(hookgate.pid) if hookgate else 0
        t0 = time.time()
        res = run_wrk(port, body_file, signature, ids, seconds, "https" if spec.get("tls") else "http")
        t_load = time.time()
        res["cpu_s"] = cpu_seconds(pids) - cpu0
        if hookgate:
            res["idle_rss_kib"] = idle_rss
            deadline = t_load + min(300.0, 60.0 + res["ok"] / 2000)
            if kind:
                await_delivery(res, ids, lambda: deliveries(PORTS["admin"], "delivered"), None, deadline)
            else:
                await_delivery(res, ids, sink_count, sink_ids, deadline)
            # CPU per request: from the load's start until its last event was delivered.
            res["cpu_s"] = cpu_seconds(pids) - cpu0
            res["drain_s"] = res["drained_at"] - t_load
            delivered = deliveries(PORTS["admin"], "delivered")
            res["delivered_rps"] = delivered / (res["drained_at"] - t0)
            if kind:
                held = broker_count(kind, name)
                res["broker_messages"] = held
                res["acked_missing"] = max(0, res["ok"] - held)
            res["peak_rss_kib"] = rss_kib(hookgate.pid, "VmHWM")
            # Everything the events cost the disk, the index's background writes included, once delivered.
            res["written_per_event"] = (write_bytes(hookgate.pid) - written0) / max(res["ok"], 1)
        return res
    finally:
        stop(nginx)
        stop(floor)
        stop(hookgate)
        if kind:
            broker_cleanup(kind, name)


def slow_run(mode, body_file, signature, seconds, round_no):
    """A round against the 20 ms app: nginx waits for it; hookgate accepts, queues and drains it at
    `concurrency / 20 ms`. Returns wrk's result, and for hookgate the drain."""
    ids = Ids(f"slow{mode}r{round_no}")
    proc = None
    sink_reset(PORTS["slow"])
    try:
        if mode == "nginx":
            proc = start_nginx(PORTS["slow"])
            pids = [proc.pid] + children(proc.pid)
            port = PORTS["nginx"]
        else:
            conf = write_hookgate_conf("hookgate-slow", f"http://127.0.0.1:{PORTS['slow']}/app")
            proc = start_hookgate(conf, mode == "hookgate_b")
            pids = [proc.pid]
            port = PORTS["hookgate"]
        cpu0 = cpu_seconds(pids)
        res = run_wrk(port, body_file, signature, ids, seconds)
        t_load = time.time()
        res["cpu_s"] = cpu_seconds(pids) - cpu0
        if mode != "nginx":
            res["concurrency"] = forward_concurrency(conf)
            at_load_end = sink_count(PORTS["slow"])
            capacity = (res["concurrency"] or 32) / (SLOW_MS / 1000)
            deadline = t_load + min(600.0, 30.0 + 2 * res["ok"] / capacity)
            await_delivery(res, ids, lambda: sink_count(PORTS["slow"]), lambda: sink_ids(PORTS["slow"]), deadline)
            res["cpu_s"] = cpu_seconds(pids) - cpu0
            res["drain_s"] = res["drained_at"] - t_load
            drained = sink_count(PORTS["slow"]) - at_load_end
            res["drain_rps"] = drained / max(res["drain_s"], 1e-3)
            res["capacity_rps"] = capacity
            res["peak_rss_kib"] = rss_kib(proc.pid, "VmHWM")
        return res
    finally:
        stop(proc)


def backlog_run(n, body_file, signature):
    """The app is down while n events are sent, then comes up: how fast, and in how much memory, the
    queue reaches it. Returns the measurements; `acked_missing` > 0 means acknowledged events were lost."""
    ids = Ids(f"backlog{n}")
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
    conf = write_hookgate_conf("hookgate-backlog", f"http://127.0.0.1:{PORTS['app']}/app", extra=BACKLOG_FORWARD)
    hookgate = app = None
    res = {"events": n}
    try:
        hookgate = start_hookgate(conf)
        res["idle_rss_kib"] = rss_kib(hookgate.pid, "VmRSS")

        # The app is down: send exactly n events, each of which must be answered 2xx.
        log(f"  backlog: sending {n} events, the app down...")
        t0 = time.time()
        load = send_exactly(n, body_file, signature, ids, deadline_s=60 + n // 200)
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
            count = sink_count(PORTS["app"])
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
        received = sink_ids(PORTS["app"])
        expected = ids.expected({tid: t["sent"] for tid, t in load["threads"].items()})
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




def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def med(runs, key):
    vals = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def report_row(label, runs, nginx_rps, floor_rps):
    """One table row (markdown), and its summary."""
    rps = [r["rps"] for r in runs]
    m = statistics.median(rps)
    cpu = statistics.median(r["cpu_s"] / max(r["ok"], 1) * 1e6 for r in runs) if runs[0].get("cpu_s") else None
    peak = max((r["peak_rss_kib"] for r in runs if "peak_rss_kib" in r), default=None)
    errors = sum(r["status_errors"] + r["connect"] + r["read"] + r["write"] + r["timeout"] for r in runs)
    delivered = med(runs, "delivered_rps")
    out = {"rps": m, "rps_min": min(rps), "rps_max": max(rps), "p50_us": med(runs, "p50_us"),
           "p99_us": med(runs, "p99_us"), "p999_us": med(runs, "p999_us"), "cpu_us_per_req": cpu,
           "peak_rss_mib": peak / 1024 if peak else None, "ratio_to_nginx": m / nginx_rps,
           "ratio_to_floor": m / floor_rps if floor_rps else None, "errors": errors,
           "delivered_rps": delivered, "drain_s": med(runs, "drain_s"),
           "written_kib_per_event": (med(runs, "written_per_event") or 0) / 1024 or None,
           "acked_missing": sum(r.get("acked_missing", 0) for r in runs)}
    cells = [label, f"{m:,.0f} ({min(rps):,.0f}-{max(rps):,.0f})", fmt_us(out["p50_us"]), fmt_us(out["p99_us"]),
             fmt_us(out["p999_us"]), f"{cpu:.1f} µs" if cpu else "-",
             f"{out['peak_rss_mib']:.1f} MiB" if peak else "-", f"{out['ratio_to_nginx']:.2f}x",
             f"{out['ratio_to_floor']:.2f}x" if floor_rps and label != "nginx" else "-",
             f"{delivered:,.0f}/s" if delivered else "-"]
    print("| " + " | ".join(cells) + " |")
    return out


def main():
    global WORK, HOOKGATE, OTHER, SINK_BIN, FLOOR_BIN
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the fast-app rows (0: none)")
    ap.add_argument("--sizes", default="1024,65536")
    ap.add_argument("--quick", action="store_true",
                    help="1 KiB, 1 round of 5 s, a 3 s slow-app round, a backlog of 20000 (unless given)")
    ap.add_argument("--no-brokers", action="store_true", help="skip the NATS, RabbitMQ and Redis rows")
    ap.add_argument("--rows", help="only these fast-app rows, comma-separated (nginx and the floor always run), "
                                   "e.g. hookgate,hookgate_tuned: for probes")
    ap.add_argument("--slow-rounds", type=int, default=None,
                    help="interleaved rounds of the 20 ms app (default: --rounds; 0 skips it)")
    ap.add_argument("--slow-seconds", type=int, default=5, help="seconds of load per 20 ms-app round")
    ap.add_argument("--backlog", type=int, default=None,
                    help="events queued while the app is down, then drained (default 100000; 0 skips it)")
    ap.add_argument("--port-base", type=int, default=29100,
                    help="loopback ports: this one and the next 5, and the backlog's app 10000 below it "
                         "(default 29100)")
    ap.add_argument("--compare", metavar="BIN",
                    help="another hookgate binary (say, main's) as an extra row, interleaved with this build's in "
                         "the fast-app and 20 ms-app rounds: before and after in the same run")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.quick:
        args.seconds, args.rounds, args.sizes, args.slow_seconds = 5, 1, "1024", 3
        if args.backlog is None:
            args.backlog = 20000
    if args.backlog is None:
        args.backlog = 100000
    if args.slow_rounds is None:
        args.slow_rounds = args.rounds
    if not 11024 <= args.port_base <= 65530:
        raise SystemExit("--port-base must be between 11024 and 65530")
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
    OTHER = os.path.abspath(args.compare) if args.compare else None
    SINK_BIN = os.path.join(ROOT, "target", "release", "examples", "sink")
    FLOOR_BIN = os.path.join(ROOT, "target", "release", "examples", "floor")
    WORK = tempfile.mkdtemp(prefix="hookgate-bench-")
    for name, text in (("load.lua", LUA), ("backlog.lua", BACKLOG_LUA)):
        with open(os.path.join(WORK, name), "w") as f:
            f.write(text)
    make_certificate()
    brokers, skipped = [], {}
    for kind in ("nats", "amqp", "redis"):
        why = "--no-brokers" if args.no_brokers else broker_missing(kind)
        if why:
            skipped[kind] = why
            log(f"  the {kind} row is skipped: {why}")
        else:
            brokers.append(f"hookgate_{kind}")
    load_before = loadavg()
    sink = slow = None
    results, slow_results, backlog = {}, {}, None
    sizes = [int(s) for s in args.sizes.split(",")] if args.rounds > 0 else []
    try:
        if args.rounds > 0:
            sink = start([SINK_BIN, f"127.0.0.1:{PORTS['sink']}"])
            wait_port(PORTS["sink"])
        for size in sizes:
            body_file, signature = make_body(size)
            modes = ["direct", "nginx", "floor", "hookgate"] + (["hookgate_b"] if OTHER else []) + \
                ["hookgate_tuned", "hookgate_tls"]
            # The broker rows run at the first size only (1 KiB by default), to bound the run's time.
            if size == sizes[0]:
                modes += brokers
            if args.rows:
                modes = [m for m in modes if m in ("nginx", "floor") or m in args.rows.split(",")]
            for r in range(1, args.rounds + 1):
                # Interleaved, and rotated per round, so that drift affects every mode alike.
                order = modes[(r - 1) % len(modes):] + modes[:(r - 1) % len(modes)]
                for mode in order:
                    log(f"  {size} B, round {r}: {mode}...")
                    results.setdefault((size, mode), []).append(
                        one_run(mode, size, body_file, signature, args.seconds, r))
        stop(sink)
        sink = None
        if args.slow_rounds > 0:
            body_file, signature = make_body(1024)
            slow = start([SINK_BIN, f"127.0.0.1:{PORTS['slow']}", str(SLOW_MS)])
            wait_port(PORTS["slow"])
            for r in range(1, args.slow_rounds + 1):
                order = ["nginx", "hookgate"] + (["hookgate_b"] if OTHER else [])
                for mode in order if r % 2 else order[::-1]:
                    log(f"  {SLOW_MS} ms app, round {r}: {mode}...")
                    slow_results.setdefault(mode, []).append(
                        slow_run(mode, body_file, signature, args.slow_seconds, r))
            stop(slow)
            slow = None
        if args.backlog:
            body_file, signature = make_body(1024)
            backlog = backlog_run(args.backlog, body_file, signature)
    finally:
        stop(sink)
        stop(slow)
        shutil.rmtree(WORK, ignore_errors=True)
    load_after = loadavg()

    print(f"hookgate load benchmark: {os.cpu_count()} cores shared by wrk ({THREADS} threads), the app, "
          f"and the proxy under test; {CONNECTIONS} connections; hookgate with its default config and random "
          f"UUID event ids; {args.rounds} interleaved round(s) of {args.seconds} s per row. Load average "
          f"(1, 5, 15 min) before: {load_before}, after: {load_after}. Compare ratios, not absolute numbers.")
    summary = {"load_before": load_before, "load_after": load_after, "skipped": skipped}
    columns = ("| row | req/s median (min-max) | p50 | p99 | p99.9 | CPU/req | peak RSS | vs nginx | vs floor "
               "| delivered/s |\n|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        print(f"\nFast app, {size / 1024:.0f} KiB bodies (delivered/s: events delivered from the load's start "
              f"until its last one; CPU/req: until then too)\n")
        print(columns)
        nginx_rps = statistics.median(r["rps"] for r in results[(size, "nginx")])
        floor_rps = statistics.median(r["rps"] for r in results[(size, "floor")])
        for mode in MODES:
            if (size, mode) in results:
                summary[f"{size}/{mode}"] = report_row(LABELS[mode], results[(size, mode)], nginx_rps,
                                                       None if mode in ("direct", "nginx", "floor") else floor_rps)
        print()
        for mode in MODES:
            s = summary.get(f"{size}/{mode}")
            if s and mode.startswith("hookgate"):
                held = f", drained {s['drain_s']:.1f} s after the load"
                disk = f", disk writes {s['written_kib_per_event']:.1f} KiB per event" \
                    if s["written_kib_per_event"] else ""
                print(f"- {LABELS[mode]}: 2xx-answered ids missing {s['acked_missing']}{held}{disk}")
        for kind, why in skipped.items():
            print(f"- hookgate -> {kind}: skipped ({why})")
    if slow_results:
        n, h = slow_results["nginx"], slow_results["hookgate"]
        nginx_rps = statistics.median(r["rps"] for r in n)
        print(f"\nA {SLOW_MS} ms app (1 KiB bodies, {len(h)} interleaved round(s) of {args.slow_seconds} s): nginx "
              f"waits for the app; hookgate accepts, queues and then drains at its forward concurrency\n")
        print(columns)
        summary["slow/nginx"] = report_row("nginx", n, nginx_rps, None)
        summary["slow/hookgate"] = report_row("hookgate", h, nginx_rps, None)
        if "hookgate_b" in slow_results:
            summary["slow/hookgate_b"] = report_row(LABELS["hookgate_b"], slow_results["hookgate_b"], nginx_rps,
                                                    None)
        drain = statistics.median(r["drain_rps"] for r in h)
        cap = h[0]["capacity_rps"]
        summary["slow/hookgate"].update({"drain_rps": drain, "capacity_rps": cap, "concurrency": h[0]["concurrency"]})
        rounds = ", ".join(f"{r['drain_rps']:,.0f}" for r in h)
        print(f"\n- hookgate's drain after the load: {drain:,.0f} events/s (rounds: {rounds}), {drain / cap:.1%} of the app's capacity at "
              f"concurrency {h[0]['concurrency']} ({cap:,.0f}/s); 2xx-answered ids missing "
              f"{summary['slow/hookgate']['acked_missing']}")
        if "hookgate_b" in slow_results:
            b = slow_results["hookgate_b"]
            print(f"- the --compare build's drain: {statistics.median(r['drain_rps'] for r in b):,.0f} events/s at "
                  f"concurrency {b[0]['concurrency']} ({b[0]['capacity_rps']:,.0f}/s)")
    failures = []
    if backlog:
        b = backlog
        mib = {k: b[k] / 1024 for k in ("idle_rss_kib", "load_peak_rss_kib", "drain_peak_rss_kib", "end_rss_kib",
                                          "peak_rss_kib")}
        answered = "all answered 2xx" if b["ok"] == b["events"] else \
            f"only {b['ok']} answered 2xx ({b['sent']} sent, {b['answered']} answered; wrk's socket errors " \
            f"{b['socket_errors']})"
        print(f"\nBacklog, 1 KiB bodies: {b['events']} events sent while the app was down, in {b['load_s']:.1f} s "
              f"({b['accept_rps']:,.0f}/s, p50 {fmt_us(b['p50_us'])}, p99 {fmt_us(b['p99_us'])}), {answered}; "
              f"{b['refused_attempts']} delivery attempts failed meanwhile")
        reached = f"all {b['ok']} answered ids reached it in" if b["drained"] else \
            f"only {b['delivered']} of the {b['ok']} answered ids reached it before the deadline,"
        print(f"- the app came up: {reached} {b['drain_s']:.1f} s ({b['drain_rps']:,.0f} events/s); dead letters "
              f"{b['dead_letters']}; 2xx-answered ids missing at the app: {b['acked_missing']}")
        print(f"- hookgate RSS: idle {mib['idle_rss_kib']:.1f} MiB, peak {mib['load_peak_rss_kib']:.1f} MiB during "
              f"the load and {mib['drain_peak_rss_kib']:.1f} MiB during the drain, {mib['end_rss_kib']:.1f} MiB at "
              f"the end")
        summary["backlog"] = {**{k: v for k, v in b.items() if k not in mib},
                              **{k.replace("_kib", "_mib"): v for k, v in mib.items()}}
        if b["ok"] != b["events"]:
            failures.append(f"backlog: {b['events'] - b['ok']} of {b['events']} events were not answered 2xx")
        if not b["drained"]:
            failures.append("backlog: the queue did not drain before the deadline")

    # Issue 22's targets, against this run.
    print("\nTargets (issue 22), this run:\n")
    targets = []

    def target(what, value, ok):
        targets.append({"target": what, "value": value, "met": ok})
        print(f"- {'met    ' if ok else 'NOT met'}  {what}: {value}")

    for size, floor_ratio in ((1024, 0.45), (65536, 0.35)):
        s = summary.get(f"{size}/hookgate")
        if s:
            target(f"{size // 1024} KiB, fast app: >= {floor_ratio}x nginx", f"{s['ratio_to_nginx']:.2f}x",
                   s["ratio_to_nginx"] >= floor_ratio)
            if size == 1024:
                target("1 KiB, fast app: p99 <= 10 ms", fmt_us(s["p99_us"]), s["p99_us"] <= 10000)
                target("1 KiB, fast app: every 2xx-answered id delivered", f"{s['acked_missing']} missing",
                       s["acked_missing"] == 0)
    if slow_results:
        s = summary["slow/hookgate"]
        target(f"{SLOW_MS} ms app: >= 5x nginx", f"{s['ratio_to_nginx']:.2f}x", s["ratio_to_nginx"] >= 5)
        target(f"{SLOW_MS} ms app: p99 <= 10 ms", fmt_us(s["p99_us"]), s["p99_us"] <= 10000)
        target(f"{SLOW_MS} ms app: drain >= 90% of concurrency / {SLOW_MS} ms",
               f"{s['drain_rps'] / s['capacity_rps']:.1%}", s["drain_rps"] >= 0.9 * s["capacity_rps"])
    peaks = [(k, v["peak_rss_mib"]) for k, v in summary.items()
             if isinstance(v, dict) and v.get("peak_rss_mib")]
    if peaks:
        worst = max(peaks, key=lambda kv: kv[1])
        target("peak RSS <= 64 MB in every scenario", f"highest {worst[1]:.1f} MiB ({worst[0]})",
               worst[1] <= TARGET_RSS_MIB)
    if backlog:
        target("backlog drained at >= 15k events/s", f"{backlog['drain_rps']:,.0f}/s",
               backlog["drained"] and backlog["drain_rps"] >= 15000)
    summary["targets"] = targets
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    if OTHER:
        print(f"\n--compare build: {OTHER}")
    if any(r.get("acked_missing") for runs in results.values() for r in runs) or \
            any(r.get("acked_missing") for runs in slow_results.values() for r in runs) or \
            (backlog and backlog["acked_missing"]):
        failures.append("some acknowledged events never reached the app or the broker")
    if failures:
        raise SystemExit("FAILED: " + "; ".join(failures))


if __name__ == "__main__":
    main()
