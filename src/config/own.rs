//! The agent's own files: its config, the secret and key files it reads, what it writes (the
//! `file` sink's output, `data_dir`, which holds the checkpoints and dead letters). The tailer never ships any of them, whatever a source's
//! globs or links say (`tail::admit` compares them by device and inode), since the app next
//! door may link a matched name to them.

use std::path::{Path, PathBuf};

use super::{Auth, Secret, SinkKind, SinkSettings, TlsSettings};

/// Paths of the agent's own files and directories, as configured (links not resolved: they
/// are looked up when a file is opened, so a rotated token file is still known).
#[derive(Debug, Clone, Default)]
pub struct AgentFiles {
    pub files: Vec<PathBuf>,
    /// Nothing below these is tailed.
    pub dirs: Vec<PathBuf>,
}

/// The files the agent reads or writes for `config` (the config file), `data_dir` and `sinks`.
pub(super) fn agent_files(config: &Path, data_dir: &Path, sinks: &[SinkSettings]) -> AgentFiles {
    let mut files = vec![std::path::absolute(config).unwrap_or_else(|_| config.to_owned())];
    for sink in sinks {
        match &sink.kind {
            SinkKind::File { path } => files.push(path.clone()),
            SinkKind::Http(h) => {
                let secrets = h.headers.iter().map(|(_, s)| s).chain(match &h.auth {
                    Some(Auth::Basic { password: s, .. } | Auth::Bearer { token: s } | Auth::Splunk { token: s }) => {
                        Some(s)
                    }
                    None => None,
                });
                files.extend(secrets.filter_map(|s| match s {
                    Secret::File(p) => Some(p.clone()),
                    Secret::Value(_) => None,
                }));
                tls_files(&h.tls, &mut files);
            }
            SinkKind::Kafka(k) => {
                if let Some(tls) = &k.tls {
                    tls_files(tls, &mut files);
                }
                if let Some(Secret::File(p)) = k.sasl.as_ref().map(|s| &s.password) {
                    files.push(p.clone());
                }
            }
            SinkKind::Forward(f) => {
                if let Some(tls) = &f.tls {
                    tls_files(tls, &mut files);
                }
                if let Some(Secret::File(p)) = &f.shared_key {
                    files.push(p.clone());
                }
            }
            SinkKind::Tcp(t) => {
                if let Some(tls) = &t.tls {
                    tls_files(tls, &mut files);
                }
            }
            SinkKind::Stdout => {}
        }
    }
    AgentFiles {
        files,
        dirs: vec![data_dir.to_owned()],
    }
}

/// A TLS setup's CA, certificate and key files.
fn tls_files(tls: &TlsSettings, files: &mut Vec<PathBuf>) {
    files.extend(tls.ca_file.iter().cloned());
    if let Some((cert, key)) = &tls.client_cert {
        files.extend([cert.clone(), key.clone()]);
    }
}
