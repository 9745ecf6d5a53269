"""Emits numbered log records through the OpenTelemetry Python SDK (the stdlib logging bridge,
a BatchLogRecordProcessor and the OTLP exporter over HTTP or gRPC), as an application would.

Usage: otlp_client.py http|grpc ENDPOINT COUNT FIRST ACKED_FILE

Record i (FIRST <= i < FIRST + COUNT) has the body "otlp record <i>", the level info, warning
or error by i % 3, and the attributes seq=i and tag="otlp". The seqs of the records in every
batch the exporter reported exported (the agent answered success) are appended to
ACKED_FILE, one per line, flushed at once: what this client saw acknowledged.
"""

import logging
import sys

from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import (
    BatchLogRecordProcessor,
    LogRecordExporter,
    LogRecordExportResult,
)
from opentelemetry.sdk.resources import Resource


def exporter_for(protocol, endpoint):
    if protocol == "http":
        from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter

        return OTLPLogExporter(endpoint=endpoint + "/v1/logs", timeout=30)
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter

    return OTLPLogExporter(endpoint=endpoint, insecure=True, timeout=30)


class Recording(LogRecordExporter):
    """Passes batches to the OTLP exporter and notes the seqs of those it exported."""

    def __init__(self, inner, acked):
        self.inner = inner
        self.acked = acked

    def export(self, batch):
        result = self.inner.export(batch)
        if result == LogRecordExportResult.SUCCESS:
            seqs = [str(r.log_record.attributes["seq"]) for r in batch]
            self.acked.write("\n".join(seqs) + "\n")
            self.acked.flush()
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


def main():
    protocol, endpoint, count, first, acked_path = sys.argv[1:6]
    count, first = int(count), int(first)
    acked = open(acked_path, "a")
    provider = LoggerProvider(resource=Resource.create({"service.name": "webapp"}))
    provider.add_log_record_processor(
        BatchLogRecordProcessor(
            Recording(exporter_for(protocol, endpoint), acked),
            max_export_batch_size=512,
            # Never drop a record for want of room: the test counts every one.
            max_queue_size=max(2048, count),
            schedule_delay_millis=50,
        )
    )
    logger = logging.getLogger("webapp")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=provider))
    levels = [logging.INFO, logging.WARNING, logging.ERROR]
    for i in range(first, first + count):
        logger.log(levels[i % 3], "otlp record %d", i, extra={"seq": i, "tag": "otlp"})
    provider.shutdown()
    acked.close()


if __name__ == "__main__":
    main()
