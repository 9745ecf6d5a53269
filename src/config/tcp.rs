//! The tcp sink's keys (`type = "tcp"`): the receiver's `address`, `tls`, and how long a batch
//! the peer's TCP acknowledged is kept for a resend (`settle`, `settle_bytes`,
//! `replay_window_bytes`), `poison_closes` and the dead-letter file (shared with the HTTP
//! sinks). `ship/tcp/` says what they do.

use super::file::keys_set;
use std::path::Path;
use std::time::Duration;

use super::file::{self, SinkFileConfig};
use super::http::{dead_letter, tls, DeadLetterSettings, TlsSettings};

/// How long the connection must stay open after the peer's TCP acknowledged a batch before the
/// batch leaves the replay window: a receiver that closes (Fluent Bit's `in_tcp` on a record
/// over its buffer) does so within milliseconds of reading what it cannot take.
pub const DEFAULT_SETTLE: Duration = Duration::from_millis(250);
/// A batch the receiver has read also settles once this many bytes after it are acknowledged
/// (or the receiver's largest window plus 1 MiB, up to half the replay window).
pub const DEFAULT_SETTLE_BYTES: usize = 4 << 20;
/// The replay window's bound: at it, the sink waits for the oldest batch to settle. Its bytes
/// are outside `max_inflight_bytes`.
pub const DEFAULT_REPLAY_WINDOW_BYTES: usize = 8 << 20;
/// Closes with one record alone in flight after which it is dead-lettered.
pub const DEFAULT_POISON_CLOSES: u32 = 3;

/// A tcp sink, checked.
#[derive(Debug, Clone)]
pub struct TcpSettings {
    /// host:port of the receiver.
    pub address: String,
    /// `Some`: connect with TLS.
    pub tls: Option<TlsSettings>,
    pub settle: Duration,
    /// 0: batches settle by time only.
    pub settle_bytes: usize,
    pub replay_window_bytes: usize,
    pub poison_closes: u32,
    pub dead_letter: DeadLetterSettings,
}

/// The tcp sink's own keys, set on a sink of another type (to reject them).
pub(super) fn tcp_keys_set(kind: Option<&str>, s: &SinkFileConfig) -> Vec<&'static str> {
    if kind == Some("tcp") {
        return Vec::new();
    }
    keys_set([
        ("settle", s.settle.is_some()),
        ("settle_bytes", s.settle_bytes.is_some()),
        ("replay_window_bytes", s.replay_window_bytes.is_some()),
        ("poison_closes", s.poison_closes.is_some()),
    ])
}

/// The HTTP sinks' keys a tcp sink takes too.
pub(super) const SHARED_WITH_HTTP: [&str; 2] = ["tls", "dead_letter"];

/// Validates a tcp sink; `None` when a problem was reported.
pub(super) fn validate_tcp(
    s: &SinkFileConfig,
    name: &str,
    data_dir: &Path,
    at: &dyn Fn(&str) -> String,
    problem: &mut dyn FnMut(String, String),
) -> Option<TcpSettings> {
    let mut ok = true;
    let mut bad = |key: &str, message: String| {
        ok = false;
        problem(at(key), message);
    };
    let address = s.address.clone().unwrap_or_default();
    if address.is_empty() {
        bad("address", "missing; a tcp sink needs host:port".into());
    } else if !address
        .rsplit_once(':')
        .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok())
    {
        bad("address", format!("{address:?} is not host:port"));
    }
    let tls = s.tls.as_ref().map(|_| tls(s, None, &mut |k, m| bad(k, m)));
    let settle = file::duration("settle", &s.settle, DEFAULT_SETTLE, &mut |k, m| bad(&k, m));
    if settle > Duration::from_secs(60) {
        bad("settle", "must be at most 60s".into());
    }
    let replay_window_bytes = s.replay_window_bytes.unwrap_or(DEFAULT_REPLAY_WINDOW_BYTES);
    if replay_window_bytes < 1 << 20 {
        bad("replay_window_bytes", "must be at least 1 MiB (1048576)".into());
    }
    let settle_bytes = s.settle_bytes.unwrap_or(DEFAULT_SETTLE_BYTES);
    let poison_closes = s.poison_closes.unwrap_or(DEFAULT_POISON_CLOSES);
    if poison_closes == 0 {
        bad("poison_closes", "must be at least 1".into());
    }
    let dead_letter = dead_letter(s, name, data_dir, &mut |k, m| bad(k, m));
    ok.then_some(TcpSettings {
        address,
        tls,
        settle,
        settle_bytes,
        replay_window_bytes,
        poison_closes,
        dead_letter,
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::{ConfigError, Settings, SinkKind};
    use super::*;

    fn parse(sink: &str) -> Result<Settings, ConfigError> {
        let text =
            format!("data_dir = \"/tmp/d\"\n[[sources]]\ninclude = [\"/l/*.log\"]\n[[sinks]]\nname = \"out\"\n{sink}");
        Settings::from_toml(Path::new("/etc/t.toml"), &text, &|_: &str| None)
    }

    #[test]
    fn defaults_and_keys() {
        let s = parse("type = \"tcp\"\naddress = \"c:5170\"").unwrap();
        let SinkKind::Tcp(t) = &s.sinks[0].kind else { panic!() };
        assert_eq!(t.settle, DEFAULT_SETTLE);
        assert_eq!((t.settle_bytes, t.replay_window_bytes), (4 << 20, 8 << 20));
        assert_eq!(t.poison_closes, 3);
        assert!(t.tls.is_none());
        let s = parse(
            "type = \"tcp\"\naddress = \"c:5170\"\nsettle = \"50ms\"\npoison_closes = 5\ntls = { server_name = \"collector\", insecure_skip_verify = true }",
        )
        .unwrap();
        let SinkKind::Tcp(t) = &s.sinks[0].kind else { panic!() };
        assert_eq!((t.settle, t.poison_closes), (Duration::from_millis(50), 5));
        assert_eq!(t.tls.as_ref().and_then(|t| t.server_name.as_deref()), Some("collector"));
        assert!(s.warnings().iter().any(|w| w.contains("insecure_skip_verify")));
    }

    #[test]
    fn bad_values_and_foreign_keys_are_refused() {
        for (sink, key) in [
            ("type = \"tcp\"\naddress = \"c\"", "address"),
            ("type = \"tcp\"\naddress = \"c:1\"\npoison_closes = 0", "poison_closes"),
            (
                "type = \"tcp\"\naddress = \"c:1\"\nreplay_window_bytes = 1000",
                "replay_window_bytes",
            ),
            ("type = \"stdout\"\nsettle = \"1s\"", "settle"),
            (
                "type = \"http\"\nurl = \"https://c/\"\ntls = { server_name = \"x\" }",
                "tls.server_name",
            ),
        ] {
            let e = parse(sink).err().map(|e| e.to_string()).unwrap_or_default();
            assert!(e.contains(key), "{sink}: {e}");
        }
    }
}
