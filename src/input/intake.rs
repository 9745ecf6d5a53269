//! What every input protocol calls to keep what it accepted: the source's spool behind a lock,
//! and the input's counters. Blocking (a write, maybe an fsync): called on the runtime's
//! blocking pool.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::metrics::{add, InputMetrics, Metrics};
use crate::spool::{AppendError, Spool};

/// Why lines were not kept; the protocol turns it into its own answer.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The spool is at its cap: the client should come back later.
    #[error("{0}")]
    Full(String),
    /// The spool cannot be written (disk full, I/O error): also "later", and logged.
    #[error("the spool cannot be written")]
    Failed,
}

pub struct Intake {
    spool: Mutex<Spool>,
    metrics: Arc<Metrics>,
    /// This input's entry in `metrics.inputs`.
    index: usize,
    /// The source's `max_line_bytes`: no spool line may be longer.
    pub max_line_bytes: usize,
}

impl Intake {
    pub fn new(spool: Spool, metrics: Arc<Metrics>, index: usize, max_line_bytes: usize) -> Intake {
        add(&metrics.inputs[index].spool_bytes, spool.used());
        Intake {
            spool: Mutex::new(spool),
            metrics,
            index,
            max_line_bytes,
        }
    }

    pub fn metrics(&self) -> &InputMetrics {
        &self.metrics.inputs[self.index]
    }

    /// Writes `lines` (whole lines holding `records` records) to the spool; once it returns
    /// `Ok` the client may be told they are kept.
    pub fn keep(&self, lines: &[u8], records: u64) -> Result<(), Refused> {
        let mut spool = self.spool.lock().unwrap_or_else(|p| p.into_inner());
        let result = spool.append(lines);
        self.metrics().spool_bytes.store(spool.used(), Ordering::Relaxed);
        drop(spool);
        match result {
            Ok(()) => {
                add(&self.metrics().records_accepted, records);
                Ok(())
            }
            Err(AppendError::Full { used, max }) => {
                add(&self.metrics().pushbacks, 1);
                Err(Refused::Full(format!(
                    "the agent's spool is full ({used} of {max} bytes): its sinks are behind; retry later"
                )))
            }
            Err(AppendError::Io(e)) => {
                add(&self.metrics().pushbacks, 1);
                tracing::error!(error = %e, "input: cannot write the spool; answering \"retry later\"");
                Err(Refused::Failed)
            }
        }
    }

    /// The periodic care of the spool: a due fsync, and with `reclaim` deleting the segments
    /// the sinks have delivered.
    pub fn upkeep(&self, reclaim: bool) {
        let mut spool = self.spool.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = spool.sync_if_due() {
            tracing::warn!(error = %e, "input: spool fsync failed");
        }
        if reclaim {
            spool.reclaim();
        }
        self.metrics().spool_bytes.store(spool.used(), Ordering::Relaxed);
    }
}
