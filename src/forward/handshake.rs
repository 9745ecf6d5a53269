//! The Forward protocol's optional shared-key handshake. The server opens with
//! `["HELO", {"nonce", "auth", "keepalive"}]`; the client answers
//! `["PING", hostname, salt, hex(sha512(salt + hostname + nonce + key)), user, password]`;
//! the server checks the digest and answers `["PONG", ok, reason, hostname,
//! hex(sha512(salt + server hostname + nonce + key))]`, which proves to the client that the
//! server knows the key too. User/password authentication is not supported (sent empty).
//!
//! The key never leaves the process: only digests go on the wire, and nothing here puts the
//! key in an error message.

use std::fmt::Write as _;

use rmpv::Value;
use sha2::{Digest, Sha512};

use super::encode;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("handshake: expected {expected}, got {got}")]
    Unexpected { expected: &'static str, got: String },
    #[error("handshake: {0}")]
    Refused(String),
    #[error("handshake: the server's PONG digest does not match the shared key")]
    ServerDigest,
}

/// `hex(sha512(salt + hostname + nonce + key))`.
fn digest(salt: &[u8], hostname: &str, nonce: &[u8], key: &[u8]) -> String {
    let mut h = Sha512::new();
    h.update(salt);
    h.update(hostname.as_bytes());
    h.update(nonce);
    h.update(key);
    let mut hex = String::with_capacity(128);
    for b in h.finalize().iter() {
        // Writing to a String cannot fail.
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

/// Compares two digests in time that does not depend on where they differ (a few lines:
/// not worth a dependency).
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn bytes_of(v: &Value) -> Option<&[u8]> {
    match v {
        Value::Binary(b) => Some(b),
        Value::String(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// A short, safe description of what came instead of the expected message.
fn describe(v: &Value) -> String {
    match v {
        Value::Array(a) => match a.first().and_then(Value::as_str) {
            Some(kind) => format!("a {:?} message", crate::logsafe::escape(kind)),
            None => "an array".into(),
        },
        _ => "something that is not a handshake message".into(),
    }
}

fn expect<'a>(v: &'a Value, kind: &'static str, min_len: usize) -> Result<&'a [Value], Error> {
    match v {
        Value::Array(a) if a.first().and_then(Value::as_str) == Some(kind) && a.len() >= min_len => Ok(a),
        _ => Err(Error::Unexpected {
            expected: kind,
            got: describe(v),
        }),
    }
}

/// What a server's HELO asks.
#[derive(Debug, Clone)]
pub struct Helo {
    pub nonce: Vec<u8>,
    /// Non-empty: the server wants user/password authentication too.
    pub auth: Vec<u8>,
}

/// A server's HELO (for `nonce`, no user authentication, keepalive).
pub fn helo(nonce: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode::array_len(&mut out, 2);
    encode::str(&mut out, "HELO");
    encode::map_len(&mut out, 3);
    encode::str(&mut out, "nonce");
    let _ = rmp::encode::write_bin(&mut out, nonce);
    encode::str(&mut out, "auth");
    let _ = rmp::encode::write_bin(&mut out, b"");
    encode::str(&mut out, "keepalive");
    encode::bool(&mut out, true);
    out
}

pub fn parse_helo(v: &Value) -> Result<Helo, Error> {
    let a = expect(v, "HELO", 2)?;
    let Value::Map(opts) = &a[1] else {
        return Err(Error::Unexpected {
            expected: "HELO options",
            got: describe(v),
        });
    };
    let get = |k: &str| {
        opts.iter()
            .find(|(key, _)| key.as_str() == Some(k))
            .and_then(|(_, v)| bytes_of(v))
    };
    Ok(Helo {
        nonce: get("nonce").unwrap_or_default().to_vec(),
        auth: get("auth").unwrap_or_default().to_vec(),
    })
}

/// The client's PING for `helo`.
pub fn ping(helo: &Helo, hostname: &str, salt: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode::array_len(&mut out, 6);
    encode::str(&mut out, "PING");
    encode::str(&mut out, hostname);
    let _ = rmp::encode::write_bin(&mut out, salt);
    encode::str(&mut out, &digest(salt, hostname, &helo.nonce, key));
    encode::str(&mut out, "");
    encode::str(&mut out, "");
    out
}

/// What a client's PING says.
#[derive(Debug, Clone)]
pub struct Ping {
    pub hostname: String,
    pub salt: Vec<u8>,
    digest: String,
}

pub fn parse_ping(v: &Value) -> Result<Ping, Error> {
    let a = expect(v, "PING", 4)?;
    let bad = || Error::Unexpected {
        expected: "PING fields",
        got: describe(v),
    };
    Ok(Ping {
        hostname: a[1].as_str().ok_or_else(bad)?.to_owned(),
        salt: bytes_of(&a[2]).ok_or_else(bad)?.to_vec(),
        digest: a[3].as_str().ok_or_else(bad)?.to_owned(),
    })
}

/// Whether the client's PING proves it knows `key`.
pub fn ping_ok(ping: &Ping, nonce: &[u8], key: &[u8]) -> bool {
    same(&ping.digest, &digest(&ping.salt, &ping.hostname, nonce, key))
}

/// The server's PONG: `ok` and why not.
pub fn pong(ping: &Ping, ok: bool, reason: &str, hostname: &str, nonce: &[u8], key: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    encode::array_len(&mut out, 5);
    encode::str(&mut out, "PONG");
    encode::bool(&mut out, ok);
    encode::str(&mut out, reason);
    encode::str(&mut out, hostname);
    let d = if ok {
        digest(&ping.salt, hostname, nonce, key)
    } else {
        String::new()
    };
    encode::str(&mut out, &d);
    out
}

/// Checks the server's PONG: accepted, and its digest proves it knows the key.
pub fn check_pong(v: &Value, helo: &Helo, salt: &[u8], key: &[u8]) -> Result<(), Error> {
    let a = expect(v, "PONG", 5)?;
    if a[1].as_bool() != Some(true) {
        let reason = a[2].as_str().unwrap_or("no reason given");
        return Err(Error::Refused(crate::logsafe::escape(reason).into_owned()));
    }
    let hostname = a[3].as_str().unwrap_or("");
    let theirs = a[4].as_str().unwrap_or("");
    if !same(theirs, &digest(salt, hostname, &helo.nonce, key)) {
        return Err(Error::ServerDigest);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forward::decode::next_value;

    fn value(bytes: &[u8]) -> Value {
        next_value(bytes, 1024).unwrap().unwrap().0
    }

    #[test]
    fn a_shared_key_handshake_both_ways() {
        let nonce = b"0123456789abcdef";
        let h = parse_helo(&value(&helo(nonce))).unwrap();
        assert_eq!(h.nonce, nonce);
        let p = parse_ping(&value(&ping(&h, "client", b"salt", b"k3y"))).unwrap();
        assert!(ping_ok(&p, nonce, b"k3y"));
        assert!(!ping_ok(&p, nonce, b"other"));
        let answer = value(&pong(&p, true, "", "server", nonce, b"k3y"));
        check_pong(&answer, &h, b"salt", b"k3y").unwrap();
        assert!(matches!(
            check_pong(&answer, &h, b"salt", b"wrong"),
            Err(Error::ServerDigest)
        ));
        let no = value(&pong(&p, false, "shared key mismatch", "server", nonce, b"k3y"));
        let e = check_pong(&no, &h, b"salt", b"k3y").unwrap_err().to_string();
        assert!(e.contains("shared key mismatch") && !e.contains("k3y"), "{e}");
    }
}
