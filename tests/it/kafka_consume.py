"""Reads topics back for tests/it/kafka.rs with kafka-python, a client nobody on this project
wrote (the agent produces with librdkafka). Reads every partition of every topic named from
offset 0, without a consumer group, until `--expect` messages arrived, nothing new came for
`--idle` seconds after the first, or `--deadline` passed; prints one JSON object a message:
{"topic", "partition", "offset", "key", "id" (the `id` header), "value"}.
A missing kafka-python is an ImportError: the test fails loudly (.ci/run installs it).
"""

import argparse
import json
import sys
import time

from kafka import KafkaConsumer, TopicPartition


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--topic", action="append", required=True)
    p.add_argument("--expect", type=int, default=0)
    p.add_argument("--idle", type=float, default=10.0)
    p.add_argument("--deadline", type=float, default=300.0)
    a = p.parse_args()

    consumer = KafkaConsumer(
        bootstrap_servers=a.bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 << 20,
        fetch_max_bytes=16 << 20,
        request_timeout_ms=30000,
        # Answer as soon as there is something: the default 500 ms wait per fetch makes
        # reading a large topic from tansu's SQLite engine crawl.
        fetch_max_wait_ms=50,
    )
    parts = []
    start = time.monotonic()
    for topic in a.topic:
        while True:
            ids = consumer.partitions_for_topic(topic)
            if ids:
                break
            if time.monotonic() - start > a.deadline:
                sys.exit(f"topic {topic}: no partitions known after {a.deadline} s")
            time.sleep(0.2)
        parts += [TopicPartition(topic, i) for i in sorted(ids)]
    consumer.assign(parts)
    # Offset 0, not seek_to_beginning: tansu's SQLite engine answers the "earliest offset"
    # lookup so that kafka-python then reads nothing. The tests' topics are new and never
    # trimmed, so 0 is where they begin.
    for tp in parts:
        consumer.seek(tp, 0)

    seen = 0
    last = time.monotonic()
    out = sys.stdout
    while True:
        batch = consumer.poll(timeout_ms=500, max_records=10000)
        for tp, messages in batch.items():
            for m in messages:
                headers = dict(m.headers or [])
                out.write(
                    json.dumps(
                        {
                            "topic": m.topic,
                            "partition": m.partition,
                            "offset": m.offset,
                            "key": m.key.decode("utf-8", "replace") if m.key is not None else None,
                            "id": headers.get("id", b"").decode("utf-8", "replace"),
                            "value": m.value.decode("utf-8", "replace") if m.value is not None else None,
                        }
                    )
                    + "\n"
                )
                seen += 1
        if batch:
            last = time.monotonic()
        now = time.monotonic()
        if a.expect and seen >= a.expect:
            # Whatever else is there (duplicates) arrives within a short idle wait.
            if now - last > 1.0:
                break
        elif now - start > a.deadline:
            break
        # Idle counts from the first message: tansu's SQLite engine can take seconds to answer
        # the first fetches (an empty partition's among them).
        elif seen and now - last > a.idle:
            break
    out.flush()
    consumer.close()


if __name__ == "__main__":
    main()
