#!/usr/bin/env python3
"""Ingest rate of the syslog (TCP, octet counting) and http (NDJSON) inputs: starts the agent
with one source of each and a `file` sink, sends N numbered records as fast as one client
thread can, and waits until the sink has written all of them (tailship_records_sent_total).

    scripts/input-rate.py BINARY [N] [spool_fsync]

Prints records/s (first byte sent → last record written by the sink), the agent's CPU
seconds per million records, and its peak RSS. One sender per input, one after the other.
"""

import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def metric(port, name, source=None):
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (source is None or f'"{source}"' in line):
            total += float(line.rsplit(" ", 1)[1])
    return total


def cpu_s(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(pid):
    m = re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{pid}/status").read())
    return int(m.group(1)) if m else 0


def wait_sent(mport, want):
    deadline = time.time() + 600
    while metric(mport, "tailship_records_sent_total") < want:
        if time.time() > deadline:
            sys.exit("gave up waiting for the sink")
        time.sleep(0.01)


def main():
    binary = sys.argv[1]
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 200_000
    fsync = sys.argv[3] if len(sys.argv) > 3 else "batch"
    d = tempfile.mkdtemp(prefix="input-rate-")
    sport, hport, mport = free_port(), free_port(), free_port()
    cfg = f"""data_dir = "{d}/data"
[metrics]
address = "127.0.0.1:{mport}"

[[sources]]
name = "sys"
type = "syslog"
mode = "tcp"
address = "127.0.0.1:{sport}"
spool_fsync = "{fsync}"

[[sources]]
name = "web"
type = "http"
address = "127.0.0.1:{hport}"
spool_fsync = "{fsync}"

[[sinks]]
type = "file"
path = "{d}/out.ndjson"
"""
    open(f"{d}/t.toml", "w").write(cfg)
    agent = subprocess.Popen([binary, "--config", f"{d}/t.toml"], stderr=open(f"{d}/agent.log", "w"))
    try:
        for _ in range(200):
            try:
                socket.create_connection(("127.0.0.1", hport)).close()
                break
            except OSError:
                time.sleep(0.05)
        # syslog over TCP, octet counting, one connection.
        cpu0, t0 = cpu_s(agent.pid), time.time()
        s = socket.create_connection(("127.0.0.1", sport))
        buf = []
        for i in range(n):
            msg = f"<14>1 2026-12-01T00:00:00Z host rate {i % 32768} - - syslog record {i}".encode()
            buf.append(b"%d %s" % (len(msg), msg))
            if len(buf) == 1000:
                s.sendall(b"".join(buf))
                buf = []
        s.sendall(b"".join(buf))
        s.close()
        wait_sent(mport, n)
        t1, cpu1 = time.time(), cpu_s(agent.pid)
        print(f"syslog tcp octet-count: {n} records in {t1 - t0:.2f} s = {n / (t1 - t0):,.0f} records/s, agent {1e6 * (cpu1 - cpu0) / n:.2f} CPU-s per million (spool_fsync={fsync})")
        # http NDJSON, batches of 1000, one connection after another.
        url = f"http://127.0.0.1:{hport}/"
        cpu0, t0 = cpu_s(agent.pid), time.time()
        for first in range(0, n, 1000):
            body = "".join(json.dumps({"message": f"http record {i}", "seq": i}) + "\n" for i in range(first, min(n, first + 1000)))
            req = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/x-ndjson"})
            urllib.request.urlopen(req, timeout=30).read()
        wait_sent(mport, 2 * n)
        t1, cpu1 = time.time(), cpu_s(agent.pid)
        print(f"http ndjson (batches of 1000): {n} records in {t1 - t0:.2f} s = {n / (t1 - t0):,.0f} records/s, agent {1e6 * (cpu1 - cpu0) / n:.2f} CPU-s per million (spool_fsync={fsync})")
        print(f"agent peak RSS {peak_rss_kib(agent.pid) / 1024:.1f} MiB")
    finally:
        agent.terminate()
        agent.wait()


if __name__ == "__main__":
    main()
