//! The Fluent Forward protocol (v1), shared by the `forward` sink (`ship::forward`) and the
//! `forward` input (`input::forward`): what goes on the wire, with nothing about records,
//! sockets or the pipeline. `encode.rs` writes messages (PackedForward and
//! CompressedPackedForward with a `chunk` id, the ack), `decode.rs` reads the four message
//! modes a client may send (Message, Forward, PackedForward, CompressedPackedForward) and the
//! ack, `handshake.rs` the optional shared-key handshake (HELO, PING, PONG with SHA-512).
//!
//! msgpack is read and written with `rmp` / `rmpv` (well-kept crates); the protocol's own
//! pieces (the message layout, EventTime, the digests) are small enough to be written here.

pub mod decode;
pub mod encode;
pub mod handshake;

/// The msgpack extension type of Fluent's EventTime: 4 bytes of seconds and 4 of
/// nanoseconds, both big-endian.
pub const EVENT_TIME_EXT: i8 = 0;

/// An event's time as the protocol carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventTime {
    pub secs: u32,
    pub nanos: u32,
}

impl EventTime {
    /// From nanoseconds since the epoch (times before 1970 or after 2106 are clamped: the
    /// format has 32 unsigned bits of seconds).
    pub fn from_unix_nanos(ns: i64) -> EventTime {
        let ns = ns.max(0);
        let secs = (ns / 1_000_000_000).min(i64::from(u32::MAX)) as u32;
        EventTime {
            secs,
            nanos: (ns % 1_000_000_000) as u32,
        }
    }

    pub fn unix_nanos(self) -> i64 {
        i64::from(self.secs) * 1_000_000_000 + i64::from(self.nanos)
    }
}
