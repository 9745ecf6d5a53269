"""Sends raw OTLP/gRPC Export calls (grpcio and the generated LogsService stub from the
opentelemetry-proto package, both PyPI) until the agent answers RESOURCE_EXHAUSTED, the
pushback of a full spool.

Usage: otlp_grpc_push.py HOST:PORT FIRST ACKED_FILE

Each call carries 100 records of ~1 KiB numbered from FIRST; the seqs of every call answered
OK are appended to ACKED_FILE. Prints "pushed back after N calls: DETAILS" and exits 0 at the
first RESOURCE_EXHAUSTED; exits 1 on any other error, or if 200 calls all succeed.
"""

import sys

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2


def request(first, n):
    records = [
        logs_pb2.LogRecord(
            time_unix_nano=1_800_000_000_000_000_000 + i,
            severity_number=9,
            body=common_pb2.AnyValue(string_value=f"{i} " + "x" * 1000),
            attributes=[common_pb2.KeyValue(key="seq", value=common_pb2.AnyValue(int_value=i))],
        )
        for i in range(first, first + n)
    ]
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[logs_pb2.ResourceLogs(scope_logs=[logs_pb2.ScopeLogs(log_records=records)])]
    )


def main():
    target, first, acked = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    stub = logs_service_pb2_grpc.LogsServiceStub(grpc.insecure_channel(target))
    out = open(acked, "a")
    seq = first
    for call in range(200):
        try:
            stub.Export(request(seq, 100), timeout=30)
        except grpc.RpcError as e:
            if e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                print(f"pushed back after {call} calls: {e.details()}")
                return
            print(f"call {call}: {e.code()} {e.details()}", file=sys.stderr)
            sys.exit(1)
        out.write("".join(f"{s}\n" for s in range(seq, seq + 100)))
        out.flush()
        seq += 100
    print("200 calls and no pushback", file=sys.stderr)
    sys.exit(1)


if __name__ == "__main__":
    main()
