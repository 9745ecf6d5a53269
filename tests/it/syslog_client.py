"""Sends numbered records through Python's stdlib syslog handler (logging.handlers.SysLogHandler),
a syslog client nobody on tailship wrote, for tests/it/input_syslog.rs.

    syslog_client.py udp|tcp PORT COUNT FIRST

Record `seq` is logged as "py record <seq>" at WARNING (severity 4) with facility local1, behind
an RFC 3164 header the formatter writes: `Mmm dd hh:mm:ss pyhost pyapp[PID]: ` (UTC). Over UDP
it sends at most ~10,000 a second, a rate the kernel's receive buffer takes; over TCP as fast as
the socket takes them (the handler frames each message with a trailing NUL).
"""

import logging
import logging.handlers
import socket
import sys
import time


def main():
    transport, port, count, first = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    socktype = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
    handler = logging.handlers.SysLogHandler(
        address=("127.0.0.1", port),
        facility=logging.handlers.SysLogHandler.LOG_LOCAL1,
        socktype=socktype,
    )
    formatter = logging.Formatter("%(asctime)s pyhost pyapp[%(process)d]: %(message)s", "%b %d %H:%M:%S")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    # The handler swallows send errors into handleError; make them fail the run.
    def fail(record):
        raise sys.exc_info()[1]
    handler.handleError = fail
    log = logging.getLogger("pyapp")
    log.propagate = False
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    for seq in range(first, first + count):
        log.warning("py record %d", seq)
        if transport == "udp" and seq % 10 == 9:
            time.sleep(0.001)
    handler.close()


if __name__ == "__main__":
    main()
