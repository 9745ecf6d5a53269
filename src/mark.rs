//! The one way to name a place in a file that reading may resume from: its byte offset and a
//! validator of the bytes just before it.
//!
//! The tailer makes marks when it starts a file, the adapt stage when it hands records on
//! (the mark after the last line a batch of records covers, or the first line of an event
//! still being joined), the sinks pass them back when the records are delivered, and the
//! checkpoint stores the lowest one every sink has reached. At the next start the tailer
//! resumes at a stored mark only if the file still holds the same bytes before it: a file
//! rewritten in place under the same name is not resumed in the middle of something else.
//! Living outside `tail` and `ship`, this is what lets the stages agree on positions without
//! importing each other.

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64;

/// How many bytes before a mark its validator covers.
pub const VALIDATOR_MAX: usize = 64;

/// A resumable position in one file generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Mark {
    /// Byte offset in the file: the start of a line.
    pub offset: u64,
    /// How many bytes before `offset` `validator` covers (fewer than `VALIDATOR_MAX` only
    /// near the start of the file).
    pub validator_len: u8,
    /// xxh3 of those bytes.
    pub validator: u64,
}

impl Mark {
    /// The mark at `offset`, where `before` holds the file's bytes just before it (at least
    /// the last `VALIDATOR_MAX` of them when there are that many; more are ignored).
    pub fn at(offset: u64, before: &[u8]) -> Mark {
        let (validator_len, validator) = validator_of(before);
        Mark {
            offset,
            validator_len,
            validator,
        }
    }
}

/// A mark of one file generation (`uid`, the checkpoint's key): what sinks acknowledge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileMark {
    pub uid: u64,
    pub mark: Mark,
}

/// `(len, hash)` of the last `VALIDATOR_MAX` bytes of `data` (all of them if fewer).
pub fn validator_of(data: &[u8]) -> (u8, u64) {
    let from = data.len().saturating_sub(VALIDATOR_MAX);
    ((data.len() - from) as u8, xxh3_64(&data[from..]))
}

/// Whether `bytes` (read from before a mark's offset) are the ones its validator was taken
/// from.
pub fn validator_matches(mark: &Mark, bytes: &[u8]) -> bool {
    bytes.len() == usize::from(mark.validator_len) && xxh3_64(bytes) == mark.validator
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_validates_the_bytes_before_it_only() {
        let data = b"line one\nline two\n";
        let m = Mark::at(data.len() as u64, data);
        assert_eq!(m.validator_len as usize, data.len());
        assert!(validator_matches(&m, data));
        assert!(!validator_matches(&m, b"line one\nline 2!!\n"));
        let long = vec![b'x'; 200];
        let m = Mark::at(200, &long);
        assert_eq!(m.validator_len as usize, VALIDATOR_MAX);
        assert!(validator_matches(&m, &long[200 - VALIDATOR_MAX..]));
    }

    #[test]
    fn marks_are_stored_with_flat_keys() {
        let m = Mark::at(7, b"abcdefg");
        let text = serde_json::to_string(&m).unwrap();
        assert!(
            text.contains("\"offset\":7") && text.contains("\"validator_len\":7"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Mark>(&text).unwrap(), m);
    }
}
