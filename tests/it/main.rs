//! The integration test suite: one test binary (`cargo test --test it`) that runs the real
//! `tailship` binary against real files and a real TCP receiver on 127.0.0.1.
//!
//! One binary rather than one per file: the helpers compile once, and the heavy tests can share
//! a lock (`util::heavy`) so that on a 2-core machine they do not starve each other.
//! Set `TAILSHIP_KEEP_TEST_DIRS=1` to keep the scratch directory of a failed test.

/// Helpers: scratch dirs, the agent process, the receiver, writers, sequence checks, metrics.
mod util;

/// The adapter through the binary: cri pieces + pod metadata, a multiline event across
/// kill -9, the multiline timeout, auto detection and parse-error counts.
mod adapt;
/// The receiver down for 10 s: no loss, bounded memory, catch-up.
mod backpressure;
/// The tailer's blind spots: copytruncate by `cp` over the same copy, 50 files renamed at
/// random through ten `kill -9`s, a restart with 3,000 checkpoint entries, 1,100 files under a
/// 1,024-descriptor limit.
mod blind;
/// Bad configs exit 2 naming the key; validate, --help, --version, TAILSHIP_CONFIG.
mod config;
/// `tailship convert` on Fluent Bit's documented example configs (classic and YAML): the
/// output validates, values and "not carried over" comments checked, a converted multiline
/// config run end to end; broken inputs exit 2 naming file and line.
mod convert;
/// Every line of several growing files arrives exactly once, in order; the record's keys;
/// `**` globs and excludes; the metrics and health endpoints.
mod delivery;
/// Checkpoints on ack: duplicates after kill -9 (tcp with rename + copytruncate, http with
/// 500/429), and an http sink's RSS through an outage and catch-up.
mod durability;
/// Odd files: a 10 MiB line, no final newline, empty, invalid UTF-8, deleted, unreadable,
/// directories and FIFOs matching the glob; the json format; read_from = end.
mod edge;
/// Two sinks on one source (the checkpoint is their minimum); files behind symlinks.
mod fanout;
/// Every `examples/formats/` config on real logs: loghub's CSVs as the oracle (syslog, regex),
/// combined, Java stack traces joined by the multiline preset, nested JSON.
mod formats;
/// Truthful health: a sink rejecting everything, data_dir not writable at start or later, a
/// checkpoint path taken by a directory or FIFO, SIGHUP with an unchanged config.
mod health;
/// The hostile app next door (issue 11): forged pod directories, secrets in URLs and config
/// errors, an endless answer body, 4,000 idle connections to the metrics port, a file name
/// with a newline.
mod hostile;
/// The elasticsearch sink against a `_bulk` server: per-item retries, mapping errors to the
/// dead-letter file, dates in index names, `kill -9` with exactly-once storage by `_id`.
mod http_es;
/// The loki sink against a push-API server: streams by label, ns timestamps, metadata, tenant.
mod http_loki;
/// The otlp sink (protobuf and JSON) decoded with the official OTLP types.
mod http_otlp;
/// The test collector for the HTTP sinks: decodes bodies, answers as each test decides.
mod http_server;
/// The http sink: outage then Retry-After, a rejected batch to the dead-letter file, a
/// collector that never answers, gzip/zstd/JSON-array bodies and auth, kill -9 while retrying.
mod http_sink;
/// The splunk_hec sink against an HTTP Event Collector; a wrong token (403) is retried.
mod http_splunk;
/// The http sink over mutual TLS with a custom CA; an unverifiable server gets nothing.
mod http_tls;
/// 1,000 idle files cost (almost) no CPU.
mod idle;
/// The forward input against fluent-logger and a msgpack client (all four modes, chunk acks);
/// garbage, truncated and oversized messages counted while the clients are served on.
mod input_forward;
/// The http input: curl (NDJSON, JSON array) and Python urllib with gzip; malformed, 100 MB,
/// wrong method and path; a full spool's 429; kill -9 while Python posts.
mod input_http;
/// 10,000 idle connections to an otlp and a forward input: capped, timed out, counted, memory
/// bounded, real clients served all along.
mod input_limits;
/// The otlp input against the OpenTelemetry Python SDK over HTTP and gRPC, kill -9 while it
/// sends, bad requests, a full spool's pushback.
mod input_otlp;
/// The syslog input against util-linux logger (UDP, TCP, octet counting; RFC 5424 and 3164)
/// and Python's SysLogHandler; framing in octet counts; garbage and oversize closed and
/// counted; kill -9 while a client sends over TCP; UDP drops counted at the spool's cap.
mod input_syslog;
/// The kafka sink against a real broker (tansu), read back with kafka-python: 1,000,000 lines
/// once each in order, the broker down 20 s, kill -9 twice, an oversized record dead-lettered,
/// a topic per namespace.
mod kafka;
/// `/healthz` fails on a stuck sink, not on a collector that is down; SIGTERM still ends it.
mod liveness;
/// loghub's structured CSVs as the oracle of its logs (shared with the parsers' unit tests).
mod loghub;
/// Seeded random sequences of appends, partial writes, rotations, truncations, deletes and
/// restarts, checked against a model of what the agent promises.
mod model;
/// `scripts/perf-chart.py` on lines as the e2e bench writes them.
mod perf_chart;
/// The sidecar pod in Docker: the scratch image, webapp + log-agent sharing /var/log and the
/// network namespace, a collector found by DNS, restarts, SIGTERM (skipped without Docker).
mod pod;
/// Hot reload: 500,000 lines through a reload that adds a sink and removes a source and a
/// sink; an invalid config refused; `--watch-config` on a ConfigMap symlink swap.
mod reload;
/// `kill -9` in the middle of a run and restart from the checkpoint: at-least-once.
mod restart;
/// rename+create and copytruncate rotation while writing at full speed.
mod rotation;
/// SIGTERM/SIGINT with lines pending: everything shipped, checkpoint written, exit 0.
mod shutdown;
/// The forward sink against a Forward server in Python (msgpack from PyPI) that withholds
/// acks, closes mid-message and checks the shared key; kill -9 twice: 0 lost.
mod sink_forward;
/// The tcp sink against receivers that drop what they got: closing on records over 32 KiB
/// (Fluent Bit's `in_tcp`; the poison records dead-lettered), reading slowly then closing;
/// `sink_up` while the receiver is down; TLS with the right and the wrong CA.
mod sink_tcp;
/// `tailship status` against a running agent and a stopped one; `validate --print` on YAML.
mod status;
/// Links made by the app: to secrets, to /etc and /sys, doubling chains; follow_symlinks.
mod symlinks;
/// Transforms on corpus lines: redaction (no card, token, key or e-mail reaches an NDJSON or a
/// raw receiver), filter, fields, sample and throttle with their drop counts; an ECS-shaped
/// sink beside a default one; the files each source matches.
mod transform;
