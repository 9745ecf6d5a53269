//! Turning a sink's `host:port` into socket addresses without the C library's resolver.
//!
//! The container image is `FROM scratch` with a statically linked glibc binary. Name lookups
//! through a static glibc (`getaddrinfo`, which `std::net::ToSocketAddrs` uses) go through
//! NSS, which glibc does not support in static binaries: it happens to work with the glibc we
//! build with (2.36, where the `files` and `dns` back ends are part of libc; checked in a
//! scratch container), but fails with glibc before 2.34 or with an `nsswitch.conf` that names
//! other modules. So the sinks resolve names themselves, the way `hosts: files dns` would, and
//! behave the same in the image as anywhere else:
//!
//! 1. an IP literal (`10.0.0.7:5170`, `[::1]:5170`) is used as it is — no file is read;
//! 2. `/etc/hosts` (kubelet and Docker mount one into every container);
//! 3. `localhost` and `*.localhost` are the loopback addresses (RFC 6761), even without a
//!    hosts file;
//! 4. DNS, configured by `/etc/resolv.conf` (name servers, `search` domains, `ndots`,
//!    `timeout`, `attempts`), through the pure-Rust `hickory-resolver` on a small
//!    current-thread runtime, so a Kubernetes Service name such as
//!    `log-collector.observability.svc:5170` resolves in the scratch image.
//!
//! A fresh resolver is built per call: `connect()` runs only when a connection is (re)made,
//! and reading the files each time picks up a changed Service address or DNS configuration.
//! Every error names the address it is about.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use hickory_resolver::config::{ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::Query;
use hickory_resolver::proto::rr::{Name, RecordType};
use hickory_resolver::{Hosts, Resolver};

/// Upper bound for one DNS resolution, whatever `resolv.conf` says about timeouts, attempts
/// and search domains (with Kubernetes' `ndots:5` a short name can take several queries).
const DNS_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the resolver configuration comes from (tests point these elsewhere).
struct Sources<'a> {
    hosts: &'a Path,
    resolv_conf: &'a Path,
    /// The name servers' port: 53 except in tests, where a fake server listens elsewhere.
    dns_port: Option<u16>,
}

/// The files kubelet and Docker mount into every container.
fn system() -> Sources<'static> {
    Sources {
        hosts: Path::new("/etc/hosts"),
        resolv_conf: Path::new("/etc/resolv.conf"),
        dns_port: None,
    }
}

/// Resolves `host:port` (or `[v6]:port`) to one or more socket addresses, in the order they
/// should be tried.
pub fn resolve(address: &str) -> io::Result<Vec<SocketAddr>> {
    resolve_with(address, &system())
}

fn resolve_with(address: &str, sources: &Sources<'_>) -> io::Result<Vec<SocketAddr>> {
    let (host, port) = split_host_port(address)?;
    let with_port = |ips: Vec<IpAddr>| ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect();
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    let name = Name::from_str(host).map_err(|e| invalid(format!("{host:?} is not a valid host name: {e}")))?;

    let hosts = read_hosts(sources.hosts);
    let from_file = lookup_hosts(&hosts, &name);
    if !from_file.is_empty() {
        return Ok(with_port(from_file));
    }
    if name.is_localhost() {
        return Ok(with_port(vec![Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()]));
    }

    let ips = lookup_dns(host, sources)?;
    if ips.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("cannot resolve {host:?}: no addresses"),
        ));
    }
    Ok(with_port(ips))
}

/// Splits `host:port` and `[v6]:port`; the port is required.
fn split_host_port(address: &str) -> io::Result<(&str, u16)> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| invalid(format!("{address:?} is not host:port (no port)")))?;
    let host = match host.strip_prefix('[') {
        Some(rest) => rest
            .strip_suffix(']')
            .ok_or_else(|| invalid(format!("{address:?} is not host:port (unclosed '[')")))?,
        None if host.contains(':') => {
            return Err(invalid(format!(
                "{address:?} is not host:port (write an IPv6 address as [addr]:port)"
            )))
        }
        None => host,
    };
    if host.is_empty() {
        return Err(invalid(format!("{address:?} is not host:port (no host)")));
    }
    let port = port
        .parse::<u16>()
        .map_err(|_| invalid(format!("{address:?} is not host:port ({port:?} is not a port)")))?;
    Ok((host, port))
}

fn invalid(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

/// The hosts file; a missing or unreadable one is the same as an empty one (as for glibc).
fn read_hosts(path: &Path) -> Hosts {
    let mut hosts = Hosts::default();
    if let Ok(file) = std::fs::File::open(path) {
        if let Err(e) = hosts.read_hosts_conf(file) {
            tracing::debug!(path = %path.display(), error = %e, "ignoring unreadable hosts file");
            return Hosts::default();
        }
    }
    hosts
}

/// IPv4 then IPv6 addresses of `name` in the hosts file.
fn lookup_hosts(hosts: &Hosts, name: &Name) -> Vec<IpAddr> {
    [RecordType::A, RecordType::AAAA]
        .into_iter()
        .filter_map(|t| hosts.lookup_static_host(&Query::query(name.clone(), t)))
        .flat_map(|lookup| {
            lookup
                .answers()
                .iter()
                .filter_map(|r| r.data.ip_addr())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Asks the name servers of `resolv.conf`, honouring its search list and options.
fn lookup_dns(host: &str, sources: &Sources<'_>) -> io::Result<Vec<IpAddr>> {
    let fail = |what: String| io::Error::new(io::ErrorKind::NotFound, format!("cannot resolve {host:?}: {what}"));
    let conf = std::fs::read(sources.resolv_conf)
        .map_err(|e| fail(format!("reading {}: {e}", sources.resolv_conf.display())))?;
    let (mut config, mut opts): (ResolverConfig, ResolverOpts) = hickory_resolver::system_conf::parse_resolv_conf(conf)
        .map_err(|e| fail(format!("{}: {e}", sources.resolv_conf.display())))?;
    if let Some(port) = sources.dns_port {
        for server in &mut config.name_servers {
            for conn in &mut server.connections {
                conn.port = port;
            }
        }
    }
    // The hosts file was consulted above; the resolver must not read the real one again.
    opts.use_hosts_file = ResolveHosts::Never;
    opts.cache_size = 0;

    let lookup = async move {
        let resolver = Resolver::builder_with_config(config, TokioRuntimeProvider::default())
            .with_options(opts)
            .build()
            .map_err(|e| e.to_string())?;
        match tokio::time::timeout(DNS_TIMEOUT, resolver.lookup_ip(host)).await {
            Ok(Ok(ips)) => Ok(ips.iter().collect::<Vec<IpAddr>>()),
            Ok(Err(e)) if e.is_nx_domain() => Err("no such host (NXDOMAIN)".to_owned()),
            Ok(Err(e)) if e.is_no_records_found() => Err("no A or AAAA record".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {DNS_TIMEOUT:?}")),
        }
    };
    let run = move || -> Result<Vec<IpAddr>, String> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| format!("starting the resolver runtime: {e}"))?
            .block_on(lookup)
    };
    // A runtime cannot be started inside another one's context; the sinks call this from
    // plain threads, but a caller on a runtime thread gets a helper thread instead of a panic.
    let result = if tokio::runtime::Handle::try_current().is_ok() {
        std::thread::scope(|s| s.spawn(run).join()).unwrap_or_else(|_| Err("the resolver thread panicked".to_owned()))
    } else {
        run()
    };
    result.map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn missing() -> &'static Path {
        Path::new("/nonexistent/tailship-resolve-test")
    }

    fn sources<'a>(hosts: &'a Path, resolv_conf: &'a Path) -> Sources<'a> {
        Sources {
            hosts,
            resolv_conf,
            dns_port: None,
        }
    }

    #[test]
    fn ip_literals_are_used_as_they_are() {
        // No file is read for a literal: both sources are missing.
        let s = sources(missing(), missing());
        assert_eq!(
            resolve_with("10.1.2.3:5170", &s).unwrap(),
            vec!["10.1.2.3:5170".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve_with("[::1]:80", &s).unwrap(),
            vec!["[::1]:80".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(
            resolve_with("[fe80::1:2]:9", &s).unwrap(),
            vec!["[fe80::1:2]:9".parse::<SocketAddr>().unwrap()]
        );
    }

    #[test]
    fn bad_addresses_name_themselves() {
        let s = sources(missing(), missing());
        for bad in [
            "collector",
            "collector:",
            "collector:99999",
            ":5170",
            "::1:80",
            "[::1:80",
        ] {
            let e = resolve_with(bad, &s).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad}");
            assert!(e.to_string().contains(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn names_come_from_the_hosts_file_first() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = dir.path().join("hosts");
        std::fs::write(
            &hosts,
            "# kubelet-managed hosts file\n127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost\n\
             10.244.1.7\tlog-collector log-collector.observability.svc\n\
             fd00::7\tlog-collector\n",
        )
        .unwrap();
        // resolv.conf is missing: a hosts-file hit must not need DNS.
        let s = sources(&hosts, missing());
        assert_eq!(
            resolve_with("log-collector:5170", &s).unwrap(),
            vec![
                "10.244.1.7:5170".parse::<SocketAddr>().unwrap(),
                "[fd00::7]:5170".parse::<SocketAddr>().unwrap()
            ]
        );
        assert_eq!(
            resolve_with("LOG-COLLECTOR.observability.svc:1", &s).unwrap(),
            vec!["10.244.1.7:1".parse::<SocketAddr>().unwrap()]
        );
        let local = resolve_with("localhost:9090", &s).unwrap();
        assert!(local.contains(&"127.0.0.1:9090".parse().unwrap()), "{local:?}");
    }

    #[test]
    fn localhost_works_without_a_hosts_file() {
        let s = sources(missing(), missing());
        let got = resolve_with("localhost:5170", &s).unwrap();
        assert_eq!(got[0], "127.0.0.1:5170".parse::<SocketAddr>().unwrap());
    }

    #[test]
    fn an_unknown_name_without_dns_config_names_the_host_and_the_file() {
        let s = sources(missing(), missing());
        let e = resolve_with("log-collector:5170", &s).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("\"log-collector\""), "{text}");
        assert!(text.contains("tailship-resolve-test"), "{text}");
    }

    /// A minimal DNS server on 127.0.0.1: answers A queries for one name, empty NOERROR for
    /// its AAAA, NXDOMAIN for everything else.
    struct FakeDns {
        port: u16,
        stop: Arc<AtomicBool>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl FakeDns {
        fn start(known: &'static str, ip: [u8; 4]) -> FakeDns {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            let port = sock.local_addr().unwrap().port();
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let thread = std::thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !flag.load(Ordering::Relaxed) {
                    let Ok((n, peer)) = sock.recv_from(&mut buf) else {
                        continue;
                    };
                    if let Some(reply) = answer(&buf[..n], known, ip) {
                        let _ = sock.send_to(&reply, peer);
                    }
                }
            });
            FakeDns {
                port,
                stop,
                thread: Some(thread),
            }
        }
    }

    impl Drop for FakeDns {
        fn drop(&mut self) {
            self.stop.store(true, Ordering::Relaxed);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    /// Builds the reply to one query (header, the question echoed, at most one answer).
    fn answer(query: &[u8], known: &str, ip: [u8; 4]) -> Option<Vec<u8>> {
        if query.len() < 12 {
            return None;
        }
        // The question's name: length-prefixed labels up to a zero byte.
        let mut pos = 12;
        let mut labels = Vec::new();
        loop {
            let len = *query.get(pos)? as usize;
            pos += 1;
            if len == 0 {
                break;
            }
            labels.push(String::from_utf8_lossy(query.get(pos..pos + len)?).to_lowercase());
            pos += len;
        }
        let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
        let question_end = pos + 4;
        let name = labels.join(".");
        let is_known = name == known;
        let answers = u16::from(is_known && qtype == 1);
        let rcode = if is_known { 0 } else { 3 };
        let mut reply = Vec::with_capacity(question_end + 16);
        reply.extend_from_slice(&query[..2]); // id
        reply.extend_from_slice(&[0x81, 0x80 | rcode]); // response, recursion desired+available
        reply.extend_from_slice(&[0, 1, 0, answers as u8, 0, 0, 0, 0]);
        reply.extend_from_slice(query.get(12..question_end)?);
        if answers == 1 {
            reply.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 30, 0, 4]);
            reply.extend_from_slice(&ip);
        }
        Some(reply)
    }

    #[test]
    fn other_names_go_to_the_resolv_conf_name_servers_with_its_search_list() {
        let dns = FakeDns::start("log-collector.observability.svc.cluster.local", [10, 96, 0, 42]);
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("resolv.conf");
        // What kubelet writes for a pod in the namespace `observability`.
        std::fs::write(
            &conf,
            "search observability.svc.cluster.local svc.cluster.local cluster.local\n\
             nameserver 127.0.0.1\noptions ndots:5 timeout:1 attempts:1\n",
        )
        .unwrap();
        let s = Sources {
            hosts: missing(),
            resolv_conf: &conf,
            dns_port: Some(dns.port),
        };
        for address in ["log-collector:5170", "log-collector.observability.svc:5170"] {
            assert_eq!(
                resolve_with(address, &s).unwrap(),
                vec!["10.96.0.42:5170".parse::<SocketAddr>().unwrap()],
                "{address}"
            );
        }
        let e = resolve_with("nobody-home:5170", &s).unwrap_err();
        assert!(e.to_string().contains("\"nobody-home\""), "{e}");
    }

    #[test]
    fn works_from_inside_a_runtime_too() {
        let dns = FakeDns::start("collector", [10, 0, 0, 9]);
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("resolv.conf");
        std::fs::write(&conf, "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n").unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            let s = Sources {
                hosts: missing(),
                resolv_conf: &conf,
                dns_port: Some(dns.port),
            };
            resolve_with("collector:7", &s)
        });
        assert_eq!(got.unwrap(), vec!["10.0.0.9:7".parse::<SocketAddr>().unwrap()]);
    }
}
