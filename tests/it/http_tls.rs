//! The http sink over TLS: a collector whose certificate is signed by a test CA and which
//! demands a client certificate (mutual TLS). With `tls.ca_file`, `cert_file` and `key_file`
//! every record arrives; without the CA the handshake fails, the sink retries, and nothing
//! is sent to a server it could not verify.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::http_server::http_config;
use crate::util::*;

struct Pki {
    ca_pem: String,
    server: (CertificateDer<'static>, PrivateKeyDer<'static>),
    ca_der: CertificateDer<'static>,
    client_cert_pem: String,
    client_key_pem: String,
}

fn pki() -> Pki {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);

    let mut server_params = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server_params.signed_by(&server_key, &issuer).unwrap();

    let mut client_params = CertificateParams::new(vec!["tailship".to_owned()]).unwrap();
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().unwrap();
    let client_cert = client_params.signed_by(&client_key, &issuer).unwrap();

    Pki {
        ca_pem: ca_cert.pem(),
        ca_der: ca_cert.der().clone(),
        server: (
            server_cert.der().clone(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(server_key.serialize_der())),
        ),
        client_cert_pem: client_cert.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

/// A TLS collector that requires a client certificate signed by the CA; counts the NDJSON
/// records of each request and answers 200 (keep-alive).
struct TlsCollector {
    addr: SocketAddr,
    records: Arc<AtomicU64>,
    handshake_failures: Arc<AtomicU64>,
}

fn start_collector(p: &Pki) -> TlsCollector {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(p.ca_der.clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .unwrap();
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![p.server.0.clone()], p.server.1.clone_key())
            .unwrap(),
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let records = Arc::new(AtomicU64::new(0));
    let handshake_failures = Arc::new(AtomicU64::new(0));
    let (r, h) = (records.clone(), handshake_failures.clone());
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let (config, r, h) = (config.clone(), r.clone(), h.clone());
            thread::spawn(move || {
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, stream);
                // Drives the handshake; a client that does not trust us (or has no
                // certificate) fails here.
                while tls.conn.is_handshaking() {
                    if tls.conn.complete_io(&mut tls.sock).is_err() {
                        h.fetch_add(1, Ordering::SeqCst);
                        return;
                    }
                }
                let mut reader = BufReader::new(tls);
                loop {
                    let mut length = None;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':') {
                            if k.eq_ignore_ascii_case("content-length") {
                                length = v.trim().parse::<usize>().ok();
                            }
                        }
                    }
                    let mut body = vec![0u8; length.unwrap_or(0)];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    r.fetch_add(memchr::memchr_iter(b'\n', &body).count() as u64, Ordering::SeqCst);
                    let tls = reader.get_mut();
                    if tls
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .and_then(|_| tls.flush())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    TlsCollector {
        addr,
        records,
        handshake_failures,
    }
}

#[test]
fn http_sink_speaks_mutual_tls_with_a_custom_ca_and_refuses_an_unknown_server() {
    const N: u64 = 500;
    let p = pki();
    let collector = start_collector(&p);
    let dir = TestDir::new("http-tls");
    let logs = dir.subdir("logs");
    std::fs::write(logs.join("a.log"), corpus().lines("t", 0, N)).unwrap();
    let (ca, cert, key) = (dir.join("ca.pem"), dir.join("client.pem"), dir.join("client.key"));
    std::fs::write(&ca, &p.ca_pem).unwrap();
    std::fs::write(&cert, &p.client_cert_pem).unwrap();
    std::fs::write(&key, &p.client_key_pem).unwrap();
    let url = format!("https://127.0.0.1:{}/ingest", collector.addr.port());
    let include = [format!("{}/*.log", logs.display())];

    // Without the CA: the system roots do not know the test CA; no record leaves.
    let untrusting = TestDir::new("http-tls-untrusted");
    let cfg = http_config(
        &untrusting,
        &include,
        &url,
        &["retry = { initial_backoff = \"100ms\", max_backoff = \"200ms\" }"],
    );
    let mut agent = Agent::start(&untrusting, &cfg);
    let addr = agent.metrics_addr.expect("metrics address");
    wait_progress(
        Some(&mut agent),
        "TLS handshakes refused by the agent",
        STALL,
        LIMIT,
        || {
            let n = Metrics::fetch(addr)
                .ok()
                .and_then(|m| m.get_with("tailship_http_requests_total", "status=\"error\""))
                .unwrap_or(0.0) as u64;
            (n, n >= 3)
        },
    )
    .unwrap();
    assert_eq!(collector.records.load(Ordering::SeqCst), 0);
    assert!(
        agent.stderr().to_lowercase().contains("certificate"),
        "{}",
        agent.stderr_tail(5)
    );
    agent.kill9();

    let cfg = http_config(
        &dir,
        &include,
        &url,
        &[&format!(
            "tls = {{ ca_file = {}, cert_file = {}, key_file = {} }}",
            q(&ca.to_string_lossy()),
            q(&cert.to_string_lossy()),
            q(&key.to_string_lossy())
        )],
    );
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "every record over mutual TLS", STALL, LIMIT, || {
        let n = collector.records.load(Ordering::SeqCst);
        (n, n >= N)
    })
    .unwrap();
    agent.sigterm();
    assert_eq!(agent.wait_exit(std::time::Duration::from_secs(40)), Some(0));
    assert_eq!(collector.records.load(Ordering::SeqCst), N);
    assert!(collector.handshake_failures.load(Ordering::SeqCst) >= 3);
}
