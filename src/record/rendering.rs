//! A batch's records encoded once (`Rendering`), and the pool its byte buffers come from.
//!
//! A rendering is a few megabytes made for every chunk and dropped when the last sink has its
//! batch acknowledged. Fresh allocations that size come straight from the kernel, zeroed page
//! by page as they are first written, which cost as much system time as the rendering itself
//! took; so the buffers go back to a small pool (`Buffers`) and are written again while their
//! pages are still mapped.

use std::sync::{Arc, Mutex};

use crate::budget::BudgetGuard;

/// All the records of a batch encoded once, with where each record ends, so a sink can copy
/// any run of whole records from it.
#[derive(Debug, Default)]
pub struct Rendering {
    pub bytes: Vec<u8>,
    /// Per record, in order: the position after it (see the module doc of `record`) and the
    /// end of its bytes in `bytes`.
    pub ends: Vec<(usize, usize)>,
    /// Holds `bytes` and `ends` against `max_inflight_bytes`, like the batch's own guard.
    pub budget: Option<BudgetGuard>,
    /// Where `bytes` goes back to when the rendering is dropped.
    pub pool: Option<Arc<Buffers>>,
    /// The key names it was written with (`ship::encode::Shape::id`): a sink of another shape
    /// writes the batch itself.
    pub shape: u64,
}

impl Rendering {
    /// The heap memory the rendering holds.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.capacity() + self.ends.capacity() * std::mem::size_of::<(usize, usize)>()
    }
}

impl Drop for Rendering {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.put(std::mem::take(&mut self.bytes));
        }
    }
}

/// Byte buffers of dropped renderings, kept for the next ones. Holds at most `max` buffers;
/// what it holds is outside the in-flight budget, so `max` bounds it: a few renderings.
#[derive(Debug)]
pub struct Buffers {
    free: Mutex<Vec<Vec<u8>>>,
    max: usize,
}

impl Buffers {
    pub fn new(max: usize) -> Arc<Buffers> {
        Arc::new(Buffers {
            free: Mutex::new(Vec::new()),
            max,
        })
    }

    /// An empty buffer, with room left from its last use if the pool had one.
    pub fn take(&self) -> Vec<u8> {
        self.free.lock().map(|mut f| f.pop()).ok().flatten().unwrap_or_default()
    }

    fn put(&self, mut buf: Vec<u8>) {
        if buf.capacity() == 0 {
            return;
        }
        buf.clear();
        if let Ok(mut f) = self.free.lock() {
            if f.len() < self.max {
                f.push(buf);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_renderings_give_their_buffers_back_up_to_the_cap() {
        let pool = Buffers::new(1);
        let make = |n: usize| Rendering {
            bytes: Vec::with_capacity(n),
            ends: Vec::new(),
            budget: None,
            pool: Some(Arc::clone(&pool)),
            shape: 0,
        };
        drop(make(100));
        drop(make(200));
        let again = pool.take();
        assert!(again.is_empty());
        assert_eq!(
            again.capacity(),
            100,
            "the first buffer returned is kept, the second is over the cap"
        );
        assert_eq!(pool.take().capacity(), 0, "the pool is empty again");
    }
}
