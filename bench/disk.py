#!/usr/bin/env python3
"""What this machine's disk charges for durable appends, with nothing else running: the cost that any
gateway which stores an event before it answers 2xx pays, whatever its design.

Appends records of SIZE bytes to one file in DIR and calls fdatasync after every GROUP records (as the
event log does once per group commit), for SECONDS; prints records/s, MB/s, syncs/s and the CPU time
per record (user and kernel, this process only).

    python3 bench/disk.py                       # 64 KiB and 1 KiB records, 16 per sync, 5 s each, in /tmp
    python3 bench/disk.py --size 65536 --group 4 --dir /var/lib/hookgate
"""

import argparse
import os
import resource
import tempfile
import time


def probe(directory, size, group, seconds):
    record = os.urandom(size)
    fd, path = tempfile.mkstemp(prefix="hookgate-disk-", dir=directory)
    try:
        records = syncs = 0
        usage0 = resource.getrusage(resource.RUSAGE_SELF)
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            for _ in range(group):
                os.write(fd, record)
            os.fdatasync(fd)
            records += group
            syncs += 1
        elapsed = time.monotonic() - start
        usage1 = resource.getrusage(resource.RUSAGE_SELF)
    finally:
        os.close(fd)
        os.unlink(path)
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    print(f"{size:6d} B records, {group} per sync: {records / elapsed:8.0f} records/s, "
          f"{records * size / elapsed / 1e6:6.0f} MB/s, {syncs / elapsed:6.0f} syncs/s, "
          f"{cpu / records * 1e6:6.1f} us of CPU per record")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=tempfile.gettempdir(), help="where to write (default: the temp dir)")
    ap.add_argument("--size", type=int, action="append", help="record size in bytes (repeatable; "
                    "default 65536 and 1024)")
    ap.add_argument("--group", type=int, default=16, help="records per fdatasync (default 16)")
    ap.add_argument("--seconds", type=float, default=5.0, help="per size (default 5, at most 60)")
    args = ap.parse_args()
    if not 0 < args.seconds <= 60 or args.group < 1:
        raise SystemExit("--seconds must be in (0, 60] and --group at least 1")
    for size in args.size or [65536, 1024]:
        if size < 1:
            raise SystemExit("--size must be at least 1")
        probe(args.dir, size, args.group, args.seconds)


if __name__ == "__main__":
    main()
