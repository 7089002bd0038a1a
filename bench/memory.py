#!/usr/bin/env python3
"""hookgate's memory under slow bodies: N connections each declare a large body (Content-Length) and
send only part of it, then stall. Prints hookgate's RSS idle, with the N connections stalled, and how
many of them were answered early (503 when `[server] max_buffered_bytes` is reached) or are still open.

    python3 bench/memory.py                                  # 4000 x (declare 1 MiB, send 64 KiB)
    python3 bench/memory.py --connections 2000 --sent 262144 --max-buffered 33554432
    HOOKGATE_BIN=/tmp/hookgate-before python3 bench/memory.py   # another build, same load (an A/B)

Builds hookgate in release mode unless HOOKGATE_BIN names a binary. Everything listens on 127.0.0.1;
every wait is bounded. The requests are unsigned: the body never completes, so verification never runs.
"""

import argparse
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def wait_ready(port, proc, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"hookgate exited with {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit("hookgate was not ready within 30 s")


def settled_rss(pid, seconds):
    """The highest RSS seen while it still grows, for at most `seconds`: stop after 1 s without growth."""
    peak, last_growth = rss_kib(pid), time.monotonic()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and time.monotonic() - last_growth < 1.0:
        time.sleep(0.1)
        now = rss_kib(pid)
        if now > peak:
            peak, last_growth = now, time.monotonic()
    return peak


def answered(socks):
    """What hookgate has answered on each socket so far: status line -> count, and how many are open."""
    statuses, still_open = {}, 0
    for s in socks:
        s.setblocking(False)
        try:
            data = s.recv(4096)
        except BlockingIOError:
            still_open += 1
            continue
        except OSError:
            data = b""
        line = data.split(b"\r\n", 1)[0].decode(errors="replace") if data else "closed without an answer"
        statuses[line] = statuses.get(line, 0) + 1
    return statuses, still_open


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connections", type=int, default=4000, help="slow connections (default 4000, at most 15000)")
    ap.add_argument("--declared", type=int, default=1 << 20, help="Content-Length each declares (default 1 MiB)")
    ap.add_argument("--sent", type=int, default=64 << 10, help="body bytes each sends (default 64 KiB)")
    ap.add_argument("--max-buffered", type=int, help="[server] max_buffered_bytes (default: hookgate's)")
    args = ap.parse_args()
    if not 0 < args.connections <= 15000 or not 0 <= args.sent < args.declared:
        raise SystemExit("--connections must be in (0, 15000] and --sent below --declared")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = args.connections + 512
    if soft < want:
        if hard != resource.RLIM_INFINITY and hard < want:
            raise SystemExit(f"the open-file limit ({hard}) is too low for {args.connections} connections")
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # hookgate inherits it too

    binary = os.environ.get("HOOKGATE_BIN")
    if not binary:
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "hookgate"], cwd=ROOT, check=True)
        binary = os.path.join(ROOT, "target", "release", "hookgate")

    work = tempfile.mkdtemp(prefix="hookgate-memory-")
    port, admin, app = free_port(), free_port(), free_port()
    budget = f"max_buffered_bytes = {args.max_buffered}\n" if args.max_buffered else ""
    conf = os.path.join(work, "hookgate.toml")
    with open(conf, "w") as f:
        f.write(f"""[server]
listen = "127.0.0.1:{port}"
max_body_size = {args.declared}
max_connections = {args.connections + 100}
request_timeout = "120s"
{budget}
[store]
path = "{work}/data"

[admin]
listen = "127.0.0.1:{admin}"

[[sources]]
name = "github"
path = "/hooks/github"
provider = "github"
secrets = ["bench-memory-secret"]
upstream = "http://127.0.0.1:{app}/github"
""")
    proc = subprocess.Popen([binary, "serve", "--config", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    socks = []
    try:
        wait_ready(admin, proc)
        idle = settled_rss(proc.pid, 3)
        head = (f"POST /hooks/github HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
                f"Content-Type: application/json\r\nX-GitHub-Event: push\r\n"
                f"X-GitHub-Delivery: memory-bench\r\nContent-Length: {args.declared}\r\n\r\n").encode()
        chunk = head + b"x" * args.sent
        started = time.monotonic()
        for _ in range(args.connections):
            s = socket.create_connection(("127.0.0.1", port), timeout=30)
            s.sendall(chunk)
            socks.append(s)
        sent_in = time.monotonic() - started
        loaded = settled_rss(proc.pid, 30)
        statuses, still_open = answered(socks)
        print(f"binary: {binary}")
        print(f"{args.connections} connections, each declaring {args.declared} B and sending {args.sent} B "
              f"(sent in {sent_in:.1f} s); max_buffered_bytes: {args.max_buffered or 'default'}")
        print(f"RSS idle:     {idle / 1024:8.1f} MiB")
        print(f"RSS stalled:  {loaded / 1024:8.1f} MiB  (+{(loaded - idle) / 1024:.1f} MiB, "
              f"{(loaded - idle) * 1024 / args.connections / 1024:.1f} KiB per connection)")
        print(f"still waiting for their body: {still_open}")
        for line, n in sorted(statuses.items()):
            print(f"answered early: {n:6d} x {line}")
    finally:
        for s in socks:
            s.close()
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
