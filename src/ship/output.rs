//! Where a stdout or file sink's encoded batches go: stdout, or an appended file. A batch
//! counts as delivered once `write` returns `Ok` (for a file: written, not fsynced). The tcp
//! sink is `ship/tcp/`.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;

use crate::config::SinkKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("write to {target}: {source}")]
    Write { target: String, source: io::Error },
    #[error("open {path}: {source}")]
    Open { path: PathBuf, source: io::Error },
}

pub enum Output {
    Stdout(io::Stdout),
    File { path: PathBuf, file: Option<File> },
}

impl Output {
    pub fn new(kind: &SinkKind) -> Output {
        match kind {
            SinkKind::Stdout => Output::Stdout(io::stdout()),
            SinkKind::File { path } => Output::File {
                path: path.clone(),
                file: None,
            },
            // `ship::run` hands the other sinks to their own `run` before it builds an Output.
            SinkKind::Tcp(_) | SinkKind::Http(_) | SinkKind::Kafka(_) | SinkKind::Forward(_) => {
                unreachable!("a tcp, http, kafka or forward sink has no byte Output")
            }
        }
    }

    /// Writes one whole batch. On error the output is reset (reconnect / reopen next time)
    /// and the caller sends the same batch again: at-least-once, never a partial skip.
    pub fn write(&mut self, batch: &[u8]) -> Result<(), Error> {
        match self {
            Output::Stdout(out) => {
                let mut lock = out.lock();
                lock.write_all(batch)
                    .and_then(|_| lock.flush())
                    .map_err(|source| Error::Write {
                        target: "stdout".into(),
                        source,
                    })
            }
            Output::File { path, file } => {
                if file.is_none() {
                    *file = Some(
                        OpenOptions::new()
                            .create(true)
                            .append(true)
                            .open(&*path)
                            .map_err(|source| Error::Open {
                                path: path.clone(),
                                source,
                            })?,
                    );
                }
                let f = file.as_mut().expect("opened above");
                f.write_all(batch).map_err(|source| {
                    *file = None;
                    Error::Write {
                        target: path.display().to_string(),
                        source,
                    }
                })
            }
        }
    }

    /// Whether the output has a live connection/handle (for the `sink_up` gauge).
    pub fn is_up(&self) -> bool {
        match self {
            Output::Stdout(_) => true,
            Output::File { file, .. } => file.is_some(),
        }
    }
}
