#!/usr/bin/env python3
# Times a restart with many checkpoint entries: N files are read and checkpointed (a `file`
# sink), the agent stops, half of the files are renamed (`fN.log` -> `fN.log.1`, globs on the
# live names only) and every file gets a line; then the time from spawn to `/readyz` 200 is
# printed for each binary given, with how many lines arrived in all (2 * N expected).
#   scripts/restart-ready.py [--files N] BINARY...   e.g. an old and a new target/debug/tailship
import os, shutil, signal, socket, subprocess, sys, tempfile, time, urllib.request

def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p

def start(binary, d, port):
    cfg = f'''data_dir = "{d}/data"
[metrics]
address = "127.0.0.1:{port}"
[[sources]]
name = "app"
include = ["{d}/logs/f*.log"]
[[sinks]]
name = "out"
type = "file"
path = "{d}/out.ndjson"
'''
    open(f"{d}/t.toml", "w").write(cfg)
    return subprocess.Popen([binary, "--config", f"{d}/t.toml"], stderr=open(f"{d}/err-{port}", "w"))

def ready(port):
    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1).status == 200
    except Exception:
        return False

def lines(path):
    try:
        return sum(1 for _ in open(path))
    except FileNotFoundError:
        return 0

def run(binary, n):
    d = tempfile.mkdtemp(prefix="tsbench-")
    os.makedirs(f"{d}/logs")
    for i in range(n):
        open(f"{d}/logs/f{i}.log", "w").write(f"line {i}\n")
    p = start(binary, d, free_port())
    t = time.time()
    while lines(f"{d}/out.ndjson") < n and time.time() - t < 120:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM); p.wait(60)
    for i in range(n):
        path = f"{d}/logs/f{i}.log"
        with open(path, "a") as f:
            if i < n // 2:
                os.rename(path, path + ".1")
            f.write(f"more {i}\n")
    port = free_port()
    t0 = time.time()
    p = start(binary, d, port)
    while not ready(port):
        if time.time() - t0 > 300:
            break
        time.sleep(0.005)
    took = time.time() - t0
    t1 = time.time()
    while lines(f"{d}/out.ndjson") < 2 * n and time.time() - t1 < 120:
        time.sleep(0.05)
    got = lines(f"{d}/out.ndjson")
    p.send_signal(signal.SIGTERM); p.wait(60)
    shutil.rmtree(d)
    return took, got

ARGS = sys.argv[1:]
N = 3000
if ARGS[:1] == ["--files"]:
    N, ARGS = int(ARGS[1]), ARGS[2:]
for b in ARGS:
    took, got = run(b, N)
    print(f"{b}: ready {took:.3f} s after spawn; {got} of {2 * N} lines delivered")
