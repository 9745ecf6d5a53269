"""Posts numbered records to tailship's `http` input with Python's stdlib (urllib.request), a
client nobody on tailship wrote, for tests/it/input_http.rs.

    http_client.py URL COUNT FIRST BATCH ACKED_FILE

Records {"message": "http record <seq>", "seq": <seq>, "level": "warn"} go in NDJSON bodies of
BATCH records, gzipped (Content-Encoding: gzip). After each 200 the batch's seqs are appended to
ACKED_FILE (flushed): what the agent acknowledged. A 429/503 or a connection error (the agent
being restarted) is retried after 50 ms with the same body; any other answer fails the run.
"""

import gzip
import json
import sys
import time
import urllib.error
import urllib.request


def main():
    url, count, first, batch, acked = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    out = open(acked, "a")
    deadline = time.time() + 300
    seq = first
    while seq < first + count:
        n = min(batch, first + count - seq)
        lines = "".join(
            json.dumps({"message": f"http record {s}", "seq": s, "level": "warn"}) + "\n" for s in range(seq, seq + n)
        )
        body = gzip.compress(lines.encode())
        while True:
            if time.time() > deadline:
                sys.exit(f"gave up at seq {seq}")
            req = urllib.request.Request(
                url,
                data=body,
                method="POST",
                headers={"Content-Type": "application/x-ndjson", "Content-Encoding": "gzip"},
            )
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:
                    answer = json.load(resp)
                    if answer.get("accepted") != n:
                        sys.exit(f"accepted {answer} of {n}")
                    break
            except urllib.error.HTTPError as e:
                if e.code not in (429, 503):
                    sys.exit(f"status {e.code}: {e.read()!r}")
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                pass
            time.sleep(0.05)
        out.write("".join(f"{s}\n" for s in range(seq, seq + n)))
        out.flush()
        seq += n


if __name__ == "__main__":
    main()
