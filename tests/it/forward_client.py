"""Forward clients for the forward input's tests.

    forward_client.py logger PORT COUNT FIRST
        fluent-logger (PyPI): COUNT records {"seq", "message"} from FIRST, Message mode with
        EventTime; exits 1 if an emit fails.
    forward_client.py packed PORT COUNT FIRST
        msgpack (PyPI): the same records in Forward, PackedForward and CompressedPackedForward
        messages of 100 entries in turn, each with a chunk id; waits for every ack and exits 1
        on a missing or wrong one.
    forward_client.py acked PORT COUNT FIRST ACKED_FILE
        msgpack (PyPI): the same records in PackedForward chunks of 100, one at a time; the
        seqs of each chunk acknowledged are appended to ACKED_FILE. A lost connection (the
        agent killed) is retried for up to 60 s and the unacknowledged chunk sent again; an ack
        may take as long as the agent withholds it (a full spool).
    forward_client.py shared PORT COUNT FIRST KEY
        the shared-key handshake as the Forward protocol specifies it (hashlib's SHA-512):
        reads HELO, sends PING, checks PONG (its digest too), then sends COUNT records in
        acknowledged PackedForward chunks of 100. A refused handshake prints
        "refused: REASON" on stderr and exits 3.
"""

import hashlib
import os

import gzip
import socket
import sys
import time
import uuid

import msgpack


def record(seq):
    return {"seq": seq, "message": f"forward record {seq}", "kind": "test"}


def logger(port, count, first):
    from fluent import sender

    s = sender.FluentSender("app", host="127.0.0.1", port=port, nanosecond_precision=True, timeout=10)
    for seq in range(first, first + count):
        if not s.emit("line", record(seq)):
            print(f"emit {seq} failed: {s.last_error}", file=sys.stderr)
            sys.exit(1)
    s.close()


def event_time(t):
    secs = int(t)
    return msgpack.ExtType(0, secs.to_bytes(4, "big") + int((t - secs) * 1e9).to_bytes(4, "big"))


def packed(port, count, first):
    c = socket.create_connection(("127.0.0.1", port), timeout=30)
    u = msgpack.Unpacker(raw=False)
    mode = 0
    for start in range(first, first + count, 100):
        seqs = range(start, min(start + 100, first + count))
        now = time.time()
        chunk = uuid.uuid4().hex
        if mode == 0:
            msg = ["app.fwd", [[event_time(now), record(s)] for s in seqs], {"chunk": chunk}]
        else:
            stream = b"".join(msgpack.packb([event_time(now), record(s)]) for s in seqs)
            opts = {"chunk": chunk, "size": len(seqs)}
            if mode == 2:
                stream = gzip.compress(stream)
                opts["compressed"] = "gzip"
            msg = ["app.fwd", stream, opts]
        mode = (mode + 1) % 3
        c.sendall(msgpack.packb(msg, use_bin_type=True))
        while True:
            got = next(u, None)
            if got is not None:
                break
            data = c.recv(4096)
            if not data:
                print("the input closed the connection before the ack", file=sys.stderr)
                sys.exit(1)
            u.feed(data)
        if got != {"ack": chunk}:
            print(f"wrong ack {got!r} for {chunk}", file=sys.stderr)
            sys.exit(1)
    c.close()


def connect(port, deadline):
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port), timeout=120)
        except OSError:
            if time.time() > deadline:
                raise
            time.sleep(0.1)


def send_chunk(c, msg, chunk):
    """Sends one chunk and waits for its ack; False if the connection ended first."""
    u = msgpack.Unpacker(raw=False)
    try:
        c.sendall(msg)
        while True:
            got = next(u, None)
            if got is not None:
                break
            data = c.recv(4096)
            if not data:
                return False
            u.feed(data)
    except OSError:
        return False
    if got != {"ack": chunk}:
        print(f"wrong ack {got!r} for {chunk}", file=sys.stderr)
        sys.exit(1)
    return True


def acked(port, count, first, path):
    out = open(path, "a")
    c = connect(port, time.time() + 60)
    for start in range(first, first + count, 100):
        seqs = range(start, min(start + 100, first + count))
        stream = b"".join(msgpack.packb([event_time(time.time()), record(s)]) for s in seqs)
        deadline = time.time() + 60
        while True:
            chunk = uuid.uuid4().hex
            msg = msgpack.packb(["app.fwd", stream, {"chunk": chunk, "size": len(seqs)}], use_bin_type=True)
            if send_chunk(c, msg, chunk):
                break
            c.close()
            if time.time() > deadline:
                print(f"no ack for the chunk from {start} within 60 s", file=sys.stderr)
                sys.exit(1)
            c = connect(port, deadline)
        out.write("".join(f"{s}\n" for s in seqs))
        out.flush()
    c.close()


def next_value(c, u):
    while True:
        got = next(u, None)
        if got is not None:
            return got
        data = c.recv(4096)
        if not data:
            print("the server closed the connection", file=sys.stderr)
            sys.exit(1)
        u.feed(data)


def shared(port, count, first, key):
    c = socket.create_connection(("127.0.0.1", port), timeout=30)
    u = msgpack.Unpacker(raw=False)
    helo = next_value(c, u)
    if not (isinstance(helo, list) and helo[0] == "HELO"):
        print(f"expected HELO, got {helo!r}", file=sys.stderr)
        sys.exit(1)
    nonce = helo[1]["nonce"]
    nonce = nonce.encode() if isinstance(nonce, str) else nonce
    salt, hostname = os.urandom(16), "forward-client"
    digest = hashlib.sha512(salt + hostname.encode() + nonce + key.encode()).hexdigest()
    c.sendall(msgpack.packb(["PING", hostname, salt, digest, "", ""], use_bin_type=True))
    pong = next_value(c, u)
    if not (isinstance(pong, list) and pong[0] == "PONG"):
        print(f"expected PONG, got {pong!r}", file=sys.stderr)
        sys.exit(1)
    if not pong[1]:
        print(f"refused: {pong[2]}", file=sys.stderr)
        sys.exit(3)
    theirs = hashlib.sha512(salt + pong[3].encode() + nonce + key.encode()).hexdigest()
    if pong[4] != theirs:
        print("the server's PONG digest does not prove the key", file=sys.stderr)
        sys.exit(1)
    for start in range(first, first + count, 100):
        seqs = range(start, min(start + 100, first + count))
        stream = b"".join(msgpack.packb([event_time(time.time()), record(s)]) for s in seqs)
        chunk = uuid.uuid4().hex
        c.sendall(msgpack.packb(["app.fwd", stream, {"chunk": chunk, "size": len(seqs)}], use_bin_type=True))
        got = next_value(c, u)
        if got != {"ack": chunk}:
            print(f"wrong ack {got!r} for {chunk}", file=sys.stderr)
            sys.exit(1)
    c.close()


def main():
    kind, port, count, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    if kind == "shared":
        shared(port, count, first, sys.argv[5])
        return
    if kind == "acked":
        acked(port, count, first, sys.argv[5])
        return
    {"logger": logger, "packed": packed}[kind](port, count, first)


if __name__ == "__main__":
    main()
