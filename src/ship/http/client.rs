//! A sink's HTTP client and what every one of its requests carries: headers built once when
//! the sink starts, and the secrets (header values, auth) read from their files again only when
//! the file changed — a rotated token (a projected service-account token) is picked up without
//! a restart, and an unchanged one costs a `stat`, not a read.

use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_ENCODING, CONTENT_TYPE};

use super::protocol::Protocol;
use super::Error;
use crate::config::{client_identity, Auth, Compression, HttpSettings, Secret};

/// Builds the reqwest client: rustls, the configured CA and client certificate, keep-alive,
/// no redirects, the request timeout.
pub fn client(sink: &str, http: &HttpSettings) -> Result<reqwest::Client, Error> {
    let mut b = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(http.timeout)
        .connect_timeout(http.timeout.min(Duration::from_secs(10)))
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(http.concurrency)
        .tcp_keepalive(Duration::from_secs(30))
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("tailship/", env!("CARGO_PKG_VERSION")));
    let tls_err = |path: &std::path::Path, message: String| Error::Tls {
        sink: sink.to_owned(),
        path: path.display().to_string(),
        message,
    };
    if let Some(ca) = &http.tls.ca_file {
        let pem = std::fs::read(ca).map_err(|e| tls_err(ca, e.to_string()))?;
        for cert in reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| tls_err(ca, e.to_string()))? {
            b = b.add_root_certificate(cert);
        }
    }
    if let Some((cert, key)) = &http.tls.client_cert {
        b = b.identity(client_identity(cert, key).map_err(|e| tls_err(cert, e.to_string()))?);
    }
    if http.tls.insecure_skip_verify {
        b = b.danger_accept_invalid_certs(true);
    }
    b.build().map_err(|source| Error::Client {
        sink: sink.to_owned(),
        url: crate::logsafe::url(&http.url),
        source,
    })
}

/// A header or auth value that cannot be had; the request is not sent and is retried.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    #[error("read the secret file {path}: {source}")]
    SecretFile { path: PathBuf, source: std::io::Error },
    #[error("header {name}: its value has characters a header cannot carry")]
    Value { name: String },
}

/// What tells a secret file's versions apart: (inode, modification time in ns, length).
type FileStamp = (u64, i64, u64);

/// A secret, with its file's last content while the file stays the same.
#[derive(Debug)]
pub struct SecretCell {
    secret: Secret,
    /// The file's stamp when it was read, and its text.
    cache: Mutex<Option<(FileStamp, String)>>,
}

impl SecretCell {
    pub fn new(secret: Secret) -> SecretCell {
        SecretCell {
            secret,
            cache: Mutex::new(None),
        }
    }

    /// The secret's text; a file's content without its trailing newline.
    pub fn get(&self) -> Result<String, HeaderError> {
        let path = match &self.secret {
            Secret::Value(v) => return Ok(v.clone()),
            Secret::File(p) => p,
        };
        let err = |source| HeaderError::SecretFile {
            path: path.clone(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(err)?;
        let stamp = (meta.ino(), meta.mtime() * 1_000_000_000 + meta.mtime_nsec(), meta.len());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((seen, text)) = cache.as_ref() {
            if *seen == stamp {
                return Ok(text.clone());
            }
        }
        let text = std::fs::read_to_string(path)
            .map_err(err)?
            .trim_end_matches(['\n', '\r'])
            .to_owned();
        *cache = Some((stamp, text.clone()));
        Ok(text)
    }
}

/// How a request authenticates.
#[derive(Debug)]
enum AuthCell {
    Basic {
        user: String,
        password: SecretCell,
    },
    Bearer(SecretCell),
    /// `Authorization: Splunk <token>`.
    Splunk(SecretCell),
}

/// The headers of a sink's requests, built once. See the module doc.
#[derive(Debug)]
pub struct RequestParts {
    /// Content type and encoding, the protocol's own headers, and the configured headers with
    /// plain values — configured ones replace the sink's defaults of the same name.
    fixed: HeaderMap,
    /// Configured headers whose values come from files.
    from_files: Vec<(HeaderName, SecretCell)>,
    auth: Option<AuthCell>,
}

impl RequestParts {
    pub fn new(http: &HttpSettings, protocol: &dyn Protocol) -> Result<RequestParts, HeaderError> {
        let value = |name: &str, v: &str, sensitive: bool| {
            let mut v = HeaderValue::from_str(v).map_err(|_| HeaderError::Value { name: name.to_owned() })?;
            v.set_sensitive(sensitive);
            Ok::<_, HeaderError>(v)
        };
        let mut fixed = HeaderMap::new();
        fixed.insert(CONTENT_TYPE, HeaderValue::from_static(protocol.content_type()));
        match http.compression {
            Compression::None => {}
            Compression::Gzip => {
                fixed.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            }
            Compression::Zstd => {
                fixed.insert(CONTENT_ENCODING, HeaderValue::from_static("zstd"));
            }
        }
        for (name, v) in protocol.headers() {
            fixed.insert(name, value(name, &v, false)?);
        }
        let mut from_files = Vec::new();
        for (name, secret) in &http.headers {
            match secret {
                Secret::Value(v) => {
                    fixed.insert(name.clone(), value(name.as_str(), v, true)?);
                }
                Secret::File(_) => from_files.push((name.clone(), SecretCell::new(secret.clone()))),
            }
        }
        let auth = http.auth.as_ref().map(|a| match a {
            Auth::Basic { user, password } => AuthCell::Basic {
                user: user.clone(),
                password: SecretCell::new(password.clone()),
            },
            Auth::Bearer { token } => AuthCell::Bearer(SecretCell::new(token.clone())),
            Auth::Splunk { token } => AuthCell::Splunk(SecretCell::new(token.clone())),
        });
        Ok(RequestParts {
            fixed,
            from_files,
            auth,
        })
    }

    /// Puts the headers on a request.
    pub fn apply(&self, req: reqwest::RequestBuilder) -> Result<reqwest::RequestBuilder, HeaderError> {
        let mut headers = self.fixed.clone();
        for (name, cell) in &self.from_files {
            let mut v =
                HeaderValue::from_str(&cell.get()?).map_err(|_| HeaderError::Value { name: name.to_string() })?;
            v.set_sensitive(true);
            headers.insert(name.clone(), v);
        }
        let req = req.headers(headers);
        Ok(match &self.auth {
            None => req,
            Some(AuthCell::Basic { user, password }) => req.basic_auth(user, Some(password.get()?)),
            Some(AuthCell::Bearer(token)) => req.bearer_auth(token.get()?),
            Some(AuthCell::Splunk(token)) => {
                let mut v =
                    HeaderValue::from_str(&format!("Splunk {}", token.get()?)).map_err(|_| HeaderError::Value {
                        name: "Authorization".into(),
                    })?;
                v.set_sensitive(true);
                req.header(AUTHORIZATION, v)
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_file_is_read_again_only_when_it_changes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "one\n").unwrap();
        let cell = SecretCell::new(Secret::File(path.clone()));
        assert_eq!(cell.get().unwrap(), "one");
        // Rotated the way a kubelet does it: a new file renamed over the old one.
        let next = dir.path().join("token.new");
        std::fs::write(&next, "two-longer\n").unwrap();
        std::fs::rename(&next, &path).unwrap();
        assert_eq!(cell.get().unwrap(), "two-longer");
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(cell.get(), Err(HeaderError::SecretFile { .. })));
        assert_eq!(SecretCell::new(Secret::Value("v".into())).get().unwrap(), "v");
    }
}
