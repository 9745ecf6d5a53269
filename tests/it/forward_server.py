"""A Fluent Forward protocol server for the forward sink's tests, decoding with the msgpack
package from PyPI (an implementation nobody on this project wrote).

    forward_server.py PORT OUT_FILE [--shared-key KEY] [--chaos]

Writes every record of every whole message it reads to OUT_FILE as one JSON line (the record
with "tag" and "time_ns" added), flushed before the message is acknowledged. Prints "ready"
once listening. With --chaos it misbehaves on a fixed schedule (by message and connection
number): it withholds some acks, closes some connections in the middle of a message, and
acks others late, so the sink must resend (duplicates are expected, loss is not).
"""

import gzip
import hashlib
import json
import os
import socket
import sys
import threading

import msgpack


def event_time(code, data):
    if code == 0 and len(data) == 8:
        return int.from_bytes(data[:4], "big") * 1_000_000_000 + int.from_bytes(data[4:], "big")
    return msgpack.ExtType(code, data)


def entries(raw):
    u = msgpack.Unpacker(ext_hook=event_time, raw=False)
    u.feed(raw)
    for t, record in u:
        yield t, record


def digest(*parts):
    h = hashlib.sha512()
    for p in parts:
        h.update(p if isinstance(p, bytes) else p.encode())
    return h.hexdigest()


class Server:
    def __init__(self, port, out, key, chaos):
        self.port, self.key, self.chaos = port, key, chaos
        self.out = open(out, "a", encoding="utf-8")
        self.lock = threading.Lock()
        self.messages = 0
        self.connections = 0

    def serve(self):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", self.port))
        s.listen(16)
        print("ready", flush=True)
        while True:
            c, _ = s.accept()
            with self.lock:
                self.connections += 1
                n = self.connections
            threading.Thread(target=self.conn, args=(c, n), daemon=True).start()

    def handshake(self, c, u):
        nonce = os.urandom(16)
        c.sendall(msgpack.packb(["HELO", {"nonce": nonce, "auth": b"", "keepalive": True}]))
        while True:
            data = c.recv(65536)
            if not data:
                return False
            u.feed(data)
            for msg in u:
                _, host, salt, theirs = msg[:4]
                salt = salt if isinstance(salt, bytes) else salt.encode()
                ok = theirs == digest(salt, host, nonce, self.key)
                mine = digest(salt, "server", nonce, self.key) if ok else ""
                c.sendall(msgpack.packb(["PONG", ok, "" if ok else "shared key mismatch", "server", mine]))
                return ok

    def conn(self, c, number):
        u = msgpack.Unpacker(raw=False, ext_hook=event_time, max_buffer_size=64 << 20)
        try:
            if self.key is not None and not self.handshake(c, u):
                return
            # Every 4th connection is closed in the middle of a message, after 50 KB.
            cut = 50_000 if self.chaos and number % 4 == 2 else None
            read = 0
            while True:
                data = c.recv(65536)
                if not data:
                    return
                read += len(data)
                if cut is not None and read >= cut:
                    return
                u.feed(data)
                for msg in u:
                    self.message(c, msg)
        except (ConnectionError, OSError):
            pass
        finally:
            c.close()

    def message(self, c, msg):
        tag, stream, opts = msg[0], msg[1], (msg[2] if len(msg) > 2 else {})
        if isinstance(stream, str):
            stream = stream.encode()
        if opts.get("compressed") == "gzip":
            stream = gzip.decompress(stream)
        lines = []
        for t, record in entries(stream):
            record["tag"] = tag
            record["time_ns"] = t
            lines.append(json.dumps(record))
        if len(lines) != opts.get("size", len(lines)):
            raise ValueError("size option does not match the entries")
        with self.lock:
            self.messages += 1
            k = self.messages
            self.out.write("".join(l + "\n" for l in lines))
            self.out.flush()
        chunk = opts.get("chunk")
        if chunk is None:
            return
        # Withhold every 5th ack: the sink must resend after its ack_timeout.
        if self.chaos and k % 5 == 3:
            return
        c.sendall(msgpack.packb({"ack": chunk}))


def main():
    args = sys.argv[1:]
    port, out = int(args[0]), args[1]
    key = args[args.index("--shared-key") + 1] if "--shared-key" in args else None
    Server(port, out, key, "--chaos" in args).serve()


if __name__ == "__main__":
    main()
