//! The forward sink's TLS, with rustls as the HTTP sinks have it (through reqwest): the
//! system's roots plus `tls.ca_file`, a client certificate for mutual TLS, the server's name
//! from `address`. `insecure_skip_verify` is refused at validation for this sink.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};

use crate::config::TlsSettings;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {why}")]
    Pem { path: PathBuf, why: String },
    #[error("the client certificate {path} and its key: {source}")]
    ClientCert { path: PathBuf, source: rustls::Error },
    #[error("{name:?} is not a server name")]
    Name { name: String },
    #[error("{0}")]
    Handshake(std::io::Error),
    #[error("no trusted root certificate (system roots: {0})")]
    NoRoots(String),
}

/// Makes TLS connections to the aggregator.
#[derive(Clone)]
pub struct Connector {
    inner: tokio_rustls::TlsConnector,
}

fn certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let pem = |why: String| Error::Pem {
        path: path.to_owned(),
        why,
    };
    CertificateDer::pem_file_iter(path)
        .map_err(|e| pem(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem(e.to_string()))
}

impl Connector {
    pub fn new(tls: &TlsSettings) -> Result<Connector, Error> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for c in native.certs {
            let _ = roots.add(c);
        }
        if let Some(ca) = &tls.ca_file {
            for c in certs(ca)? {
                roots.add(c).map_err(|e| Error::Pem {
                    path: ca.clone(),
                    why: e.to_string(),
                })?;
            }
        }
        if roots.is_empty() {
            let why = native
                .errors
                .first()
                .map_or_else(|| "none found".to_owned(), ToString::to_string);
            return Err(Error::NoRoots(why));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Handshake(std::io::Error::other(e)))?
            .with_root_certificates(roots);
        let config = match &tls.client_cert {
            Some((cert, key)) => {
                let chain = certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| Error::Pem {
                    path: key.clone(),
                    why: e.to_string(),
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|source| Error::ClientCert {
                        path: cert.clone(),
                        source,
                    })?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Connector {
            inner: tokio_rustls::TlsConnector::from(Arc::new(config)),
        })
    }

    /// TLS over `stream` to the host of `address` (host:port).
    pub async fn connect(&self, address: &str, stream: TcpStream) -> Result<TlsStream<TcpStream>, Error> {
        let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let name = ServerName::try_from(host.to_owned()).map_err(|_| Error::Name { name: host.to_owned() })?;
        self.inner.connect(name, stream).await.map_err(Error::Handshake)
    }
}
