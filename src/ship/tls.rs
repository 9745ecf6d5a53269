//! The TLS of the sinks that open their own connections (tcp, forward), with rustls as the HTTP
//! sinks have it (through reqwest): the system's roots plus `tls.ca_file`, a client
//! certificate for mutual TLS, the server's name from `tls.server_name` or the address's host.
//! `insecure_skip_verify` (the tcp sink only; the forward sink refuses it at validation)
//! accepts any certificate, and the config warns about it at every start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use tokio_rustls::rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::{self, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

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

/// The rustls client configuration of `tls`.
pub fn client_config(tls: &TlsSettings) -> Result<Arc<ClientConfig>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Handshake(std::io::Error::other(e)))?;
    let builder = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
    } else {
        builder.with_root_certificates(roots(tls)?)
    };
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
    Ok(Arc::new(config))
}

fn roots(tls: &TlsSettings) -> Result<RootCertStore, Error> {
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
    Ok(roots)
}

/// The name the server's certificate must carry: `tls.server_name`, else the host of
/// `address` (host:port).
pub fn server_name(tls: &TlsSettings, address: &str) -> Result<ServerName<'static>, Error> {
    let host = match &tls.server_name {
        Some(n) => n.as_str(),
        None => {
            let host = address.rsplit_once(':').map_or(address, |(h, _)| h);
            host.trim_start_matches('[').trim_end_matches(']')
        }
    };
    ServerName::try_from(host.to_owned()).map_err(|_| Error::Name { name: host.to_owned() })
}

/// Makes TLS connections on tokio (the forward sink).
#[derive(Clone)]
pub struct Connector {
    inner: tokio_rustls::TlsConnector,
    settings: TlsSettings,
}

impl Connector {
    pub fn new(tls: &TlsSettings) -> Result<Connector, Error> {
        Ok(Connector {
            inner: tokio_rustls::TlsConnector::from(client_config(tls)?),
            settings: tls.clone(),
        })
    }

    /// TLS over `stream` to the server of `address` (host:port).
    pub async fn connect(&self, address: &str, stream: TcpStream) -> Result<TlsStream<TcpStream>, Error> {
        let name = server_name(&self.settings, address)?;
        self.inner.connect(name, stream).await.map_err(Error::Handshake)
    }
}

/// `insecure_skip_verify`: every certificate is accepted; the handshake's signatures are
/// still checked, so the session is encrypted, only not authenticated.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
