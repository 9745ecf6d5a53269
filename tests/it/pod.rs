//! The sidecar pod for real, with plain `docker`: the agent's `FROM scratch` image, a `webapp`
//! container writing numbered, rotated lines to a shared `/var/log` (an emptyDir stand-in),
//! the `log-agent` container in the same network namespace with the tailship config of
//! `k8s/pod/pod.yaml`'s ConfigMap, and a collector container reached by name through Docker's
//! DNS (which exercises the agent's own resolver: the image has no NSS). It checks that every
//! line arrives across a graceful restart and a `kill -9` of the agent, then stops the pod the
//! way kubelet stops a pod with a native sidecar (app first, then the agent, both with
//! SIGTERM) and checks the last lines arrived.
//!
//! The pod's network namespace is held by a third, idle container (`webapp --pause`), as
//! Kubernetes' pause container holds it: with `--network container:webapp`, stopping the app
//! would take the network interface away from the agent before it shipped the last lines.
//!
//! The agent image holds the static release binary of `scripts/build-image.sh` when
//! `TAILSHIP_POD_IMAGE=static` (`.ci/run` sets it after building that binary ahead of the
//! suite); by default it holds the binary this `cargo test` built, with its libraries, so a
//! fresh clone compiles the agent once.
//!
//! Fails when no Docker engine answers: a missing tool is a failure, not a pass. To leave it
//! out on a machine without Docker, say so: `cargo test -- --skip pod::`.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::util::{heavy, http_get, proc_cpu_seconds, proc_mem_kib, wait_until, Metrics, TestDir};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// webapp's write rate and rotation period (lines).
const RATE: u64 = 2000;
const ROTATE_EVERY: u64 = 5000;
/// How long any one wait for the agent may take before the test fails.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// docker, with deadlines
// ---------------------------------------------------------------------------------------------

/// Runs `docker ARGS` (killed after `limit`); stdout on success, a message naming the command
/// and its stderr otherwise.
fn docker_for(limit: Duration, args: &[&str]) -> Result<String, String> {
    let secs = limit.as_secs().max(1).to_string();
    let out = Command::new("timeout")
        .args(["--kill-after=10", &secs, "docker"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("docker {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "docker {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn docker(args: &[&str]) -> String {
    docker_for(Duration::from_secs(120), args).unwrap_or_else(|e| panic!("{e}"))
}

/// Everything this run created, removed at the end whether the test passed or not.
struct Cleanup {
    containers: Vec<String>,
    networks: Vec<String>,
    images: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if thread::panicking() {
            // What each container said (the agent logs to stderr), for the post-mortem.
            for c in &self.containers {
                if let Ok(out) = Command::new("timeout")
                    .args(["20", "docker", "logs", "--tail", "40", c])
                    .stdin(Stdio::null())
                    .output()
                {
                    eprintln!(
                        "--- docker logs --tail 40 {c} ---\n{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
            }
        }
        for c in self.containers.iter().rev() {
            let _ = docker_for(Duration::from_secs(60), &["rm", "-f", c]);
        }
        for n in &self.networks {
            let _ = docker_for(Duration::from_secs(30), &["network", "rm", n]);
        }
        for i in &self.images {
            let _ = docker_for(Duration::from_secs(30), &["rmi", "-f", i]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Building the images
// ---------------------------------------------------------------------------------------------

/// The agent image. With `TAILSHIP_POD_IMAGE=static` (what `.ci/run` sets, after building the
/// static binary ahead of the suite) it is the image users get, through the script a person
/// uses; otherwise it is the same `FROM scratch` runtime stage around the binary this test run
/// already built, with the shared libraries it links, so a fresh clone's `cargo test` compiles
/// the agent once rather than a second time, statically, in release.
fn build_agent_image(tag: &str, scratch: &TestDir) -> Built {
    match std::env::var("TAILSHIP_POD_IMAGE").as_deref() {
        Ok("static") => {
            build_static_image(tag);
            Built::Static
        }
        Ok("test-build") | Err(_) => {
            build_test_build_image(tag, scratch);
            Built::TestBuild
        }
        Ok(other) => panic!("TAILSHIP_POD_IMAGE={other}: expected `static` or `test-build`"),
    }
}

/// Which binary the agent image holds.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Built {
    /// The static release binary of `scripts/build-image.sh`: the image users run.
    Static,
    /// The binary of this `cargo test` (`util::bin()`), with the libraries it links.
    TestBuild,
}

/// The runtime stage of `docker/Dockerfile.prebuilt` (user, config, `data_dir`, entry point)
/// around `util::bin()`, plus the shared objects `ldd` names at the paths the loader uses.
fn build_test_build_image(tag: &str, scratch: &TestDir) {
    let t = Instant::now();
    let bin = Path::new(crate::util::bin());
    let ctx = scratch.subdir("image-agent");
    let mut dockerfile = String::from("FROM scratch\nCOPY tailship /tailship\n");
    fs::copy(bin, ctx.join("tailship")).unwrap();
    let ldd = Command::new("ldd")
        .arg(bin)
        .output()
        .expect("run ldd (Debian's libc-bin)");
    let libs = String::from_utf8_lossy(&ldd.stdout);
    for lib in libs.split_whitespace().filter(|w| w.starts_with('/')) {
        let name = format!("lib-{}", Path::new(lib).file_name().unwrap().to_string_lossy());
        // `fs::copy` follows the link: the file the loader maps, under the name it asks for.
        fs::copy(lib, ctx.join(&name)).unwrap_or_else(|e| panic!("copy {lib}: {e}"));
        writeln!(dockerfile, "COPY {name} {lib}").unwrap();
    }
    fs::create_dir_all(ctx.join("data_dir")).unwrap();
    fs::copy(Path::new(ROOT).join("docker/tailship.toml"), ctx.join("tailship.toml")).unwrap();
    dockerfile.push_str(
        "COPY tailship.toml /etc/tailship/tailship.toml\n\
         COPY --chown=65532:65532 data_dir /var/lib/tailship\n\
         USER 65532:65532\nEXPOSE 9090\nENTRYPOINT [\"/tailship\"]\n\
         CMD [\"--config\", \"/etc/tailship/tailship.toml\"]\n",
    );
    fs::write(ctx.join("Dockerfile"), dockerfile).unwrap();
    docker_for(
        Duration::from_secs(300),
        &["build", "-q", "-t", tag, ctx.to_str().unwrap()],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!(
        "pod: agent image {tag} from the test build {} ({:.1?})",
        bin.display(),
        t.elapsed()
    );
}

/// The agent image, through the same script a person uses (cargo reuses an up-to-date build).
fn build_static_image(tag: &str) {
    let t = Instant::now();
    let mut cmd = Command::new("timeout");
    cmd.args(["900", "bash", "scripts/build-image.sh", tag])
        .current_dir(ROOT)
        .stdin(Stdio::null());
    // What `cargo test` sets for this process describes the test crate, not the build the
    // script starts: passed on, it marks build scripts that watch those variables (ring's)
    // dirty, and ring, rustls, reqwest and tailship are rebuilt on every run.
    for (key, _) in std::env::vars_os() {
        if key.to_str().is_some_and(cargo_set) {
            cmd.env_remove(key);
        }
    }
    let out = cmd.output().expect("run scripts/build-image.sh");
    assert!(
        out.status.success(),
        "scripts/build-image.sh {tag} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "pod: {} ({:.1?})",
        String::from_utf8_lossy(&out.stdout).trim(),
        t.elapsed()
    );
}

/// Whether cargo sets `var` for the test process it runs (and for build scripts), as opposed
/// to the user's settings (`CARGO_HOME`, `CARGO_TARGET_DIR`, `CARGO_PROFILE_*`, …).
fn cargo_set(var: &str) -> bool {
    var.starts_with("CARGO_PKG_")
        || var.starts_with("CARGO_BIN_")
        || var.starts_with("CARGO_MANIFEST_")
        || matches!(
            var,
            "CARGO_CRATE_NAME"
                | "CARGO_PRIMARY_PACKAGE"
                | "CARGO_TARGET_TMPDIR"
                | "CARGO_RUSTC_CURRENT_DIR"
                | "OUT_DIR"
        )
}

/// A static binary of `examples/NAME.rs` (std only, so a bare rustc takes seconds), rebuilt
/// when the source is newer.
fn build_example(name: &str) -> PathBuf {
    let src = Path::new(ROOT).join(format!("examples/{name}.rs"));
    let dir = Path::new(ROOT).join("target/static/pod");
    fs::create_dir_all(&dir).unwrap();
    let bin = dir.join(name);
    let mtime = |p: &Path| fs::metadata(p).and_then(|m| m.modified()).ok();
    if mtime(&bin).is_some() && mtime(&bin) >= mtime(&src) {
        return bin;
    }
    // Built under a private name and renamed into place: another test run may be building the
    // same binary at the same moment.
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    #[rustfmt::skip]
    let out = Command::new(rustc)
        .args(["--edition", "2021", "-O", "-C", "strip=symbols", "-C", "target-feature=+crt-static"])
        .args(["--target", "x86_64-unknown-linux-gnu", "-o"])
        .arg(&tmp)
        .arg(&src)
        .output()
        .expect("run rustc");
    assert!(
        out.status.success(),
        "rustc {}: {}",
        src.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    fs::rename(&tmp, &bin).unwrap();
    bin
}

/// A one-binary `FROM scratch` image (the app's user is 65532, like the agent's).
fn build_scratch_image(tag: &str, bin: &Path, user: &str, scratch: &TestDir) {
    let name = bin.file_name().unwrap().to_str().unwrap();
    let ctx = scratch.subdir(&format!("image-{name}"));
    fs::copy(bin, ctx.join(name)).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!("FROM scratch\nCOPY {name} /{name}\nUSER {user}\nENTRYPOINT [\"/{name}\"]\n"),
    )
    .unwrap();
    docker_for(
        Duration::from_secs(300),
        &["build", "-q", "-t", tag, ctx.to_str().unwrap()],
    )
    .unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------------
// The manifest's config
// ---------------------------------------------------------------------------------------------

/// The `tailship.toml: |` block of the first ConfigMap in a manifest, unindented.
fn configmap_toml(manifest: &str) -> String {
    let mut lines = manifest.lines().skip_while(|l| l.trim() != "tailship.toml: |").skip(1);
    let mut out = String::new();
    let mut indent = None;
    for l in lines.by_ref() {
        if l.trim().is_empty() {
            out.push('\n');
            continue;
        }
        let this = l.len() - l.trim_start().len();
        let i = *indent.get_or_insert(this);
        if this < i {
            break;
        }
        out.push_str(&l[i..]);
        out.push('\n');
    }
    assert!(!out.trim().is_empty(), "no `tailship.toml: |` block in the manifest");
    out
}

// ---------------------------------------------------------------------------------------------
// What the collector received
// ---------------------------------------------------------------------------------------------

/// Reads the collector's output file as it grows and counts every webapp sequence number.
struct Received {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    /// seen[seq] = how many times line `seq` arrived.
    seen: Vec<u32>,
    records: u64,
    first: Option<serde_json::Value>,
}

impl Received {
    fn new(path: PathBuf) -> Received {
        Received {
            path,
            offset: 0,
            partial: Vec::new(),
            seen: vec![0],
            records: 0,
            first: None,
        }
    }

    fn poll(&mut self) {
        let Ok(mut f) = fs::File::open(&self.path) else { return };
        let mut buf = Vec::new();
        f.seek(SeekFrom::Start(self.offset)).unwrap();
        f.read_to_end(&mut buf).unwrap();
        self.offset += buf.len() as u64;
        self.partial.extend_from_slice(&buf);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let whole: Vec<u8> = self.partial.drain(..=end).collect();
        for line in whole.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let rec: serde_json::Value = serde_json::from_slice(line).unwrap_or_else(|e| {
                panic!(
                    "collector got a line that is not JSON ({e}): {}",
                    String::from_utf8_lossy(line)
                )
            });
            let msg = rec["message"].as_str().unwrap_or_else(|| panic!("no message: {rec}"));
            let mut parts = msg.split(' ');
            assert_eq!(parts.next(), Some("webapp"), "unexpected message {msg:?}");
            let seq: usize = parts
                .next()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("no seq in {msg:?}"));
            if self.seen.len() <= seq {
                self.seen.resize(seq + 1, 0);
            }
            self.seen[seq] += 1;
            self.records += 1;
            if self.first.is_none() {
                self.first = Some(rec);
            }
        }
    }

    /// The highest n such that lines 1..=n all arrived.
    fn contiguous(&self) -> u64 {
        self.seen[1..].iter().take_while(|&&n| n > 0).count() as u64
    }

    fn missing(&self, upto: u64) -> Vec<u64> {
        (1..=upto)
            .filter(|&s| self.seen.get(s as usize).is_none_or(|&n| n == 0))
            .collect()
    }

    fn duplicates(&self) -> u64 {
        self.seen.iter().map(|&n| n.saturating_sub(1) as u64).sum()
    }
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

fn docker_available() -> Result<(), String> {
    docker_for(Duration::from_secs(30), &["info", "--format", "{{.ServerVersion}}"]).map(|_| ())
}

fn agent_pid(name: &str) -> Option<i32> {
    docker(&["inspect", "-f", "{{.State.Pid}}", name])
        .parse()
        .ok()
        .filter(|&p| p > 0)
}

fn exit_code(name: &str) -> String {
    docker(&["inspect", "-f", "{{.State.ExitCode}} oom={{.State.OOMKilled}}", name])
}

/// Waits until every line up to `upto` arrived; fails naming what is missing.
fn wait_for_lines(rx: &mut Received, upto: u64, what: &str) {
    let ok = wait_until(WAIT, || {
        rx.poll();
        rx.contiguous() >= upto
    });
    if !ok {
        let missing = rx.missing(upto);
        panic!(
            "{what}: lines up to {upto} did not all arrive within {WAIT:?}: {} missing (first {:?}), {} records received",
            missing.len(),
            &missing[..missing.len().min(10)],
            rx.records
        );
    }
}

/// How many lines webapp has written by now, from the files on the shared volume.
fn written_so_far(log_dir: &Path) -> u64 {
    let last_seq = |p: PathBuf| -> u64 {
        let text = fs::read_to_string(p).unwrap_or_default();
        text.lines()
            .rev()
            .find_map(|l| l.split(' ').nth(1).and_then(|s| s.parse().ok()))
            .unwrap_or(0)
    };
    last_seq(log_dir.join("app.log")).max(last_seq(log_dir.join("app.log.1")))
}

#[test]
fn webapp_and_log_agent_share_a_pod() {
    if let Err(why) = docker_available() {
        panic!("the pod test needs a Docker engine ({why}); leave it out with `cargo test -- --skip pod::`");
    }
    // Compiling the release build and three containers would starve the throughput tests.
    let _heavy = heavy();
    let started = Instant::now();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    let id = format!("{}-{:x}", std::process::id(), nanos);
    let name = |role: &str| format!("tailship-it-{id}-{role}");
    let mut cleanup = Cleanup {
        containers: Vec::new(),
        networks: Vec::new(),
        images: Vec::new(),
    };
    let dir = TestDir::new("pod");

    // The images.
    let agent_image = format!("tailship-it-agent:{id}");
    let webapp_image = format!("tailship-it-webapp:{id}");
    let collector_image = format!("tailship-it-collector:{id}");
    cleanup
        .images
        .extend([agent_image.clone(), webapp_image.clone(), collector_image.clone()]);
    let built_from = build_agent_image(&agent_image, &dir);
    let size: u64 = docker(&["image", "inspect", "-f", "{{.Size}}", &agent_image])
        .parse()
        .unwrap();
    // The size promise is about the image users get; the test build carries debug line tables
    // and its libraries. 21.2 MiB measured since the kafka sink and the gRPC input (11 before).
    if built_from == Built::Static {
        assert!(size <= 24 << 20, "the agent image is {size} bytes, over 24 MiB");
    }
    build_scratch_image(&webapp_image, &build_example("webapp"), "65532:65532", &dir);
    build_scratch_image(&collector_image, &build_example("collector"), "0:0", &dir);
    let built = started.elapsed();

    // The volumes: host directories, open to the containers' users like an emptyDir.
    let open_dir = |rel: &str| {
        let p = dir.subdir(rel);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).unwrap();
        p
    };
    let log_dir = open_dir("log-volume");
    let data_dir = open_dir("tailship-data");
    let out_dir = open_dir("collector");
    let config = dir.join("tailship.toml");
    let manifest = fs::read_to_string(Path::new(ROOT).join("k8s/pod/pod.yaml")).unwrap();
    fs::write(&config, configmap_toml(&manifest)).unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let mount = |host: &Path, at: &str| format!("{}:{at}", host.display());

    // The network, with the collector under the Service name the ConfigMap uses.
    let network = name("net");
    docker(&["network", "create", &network]);
    cleanup.networks.push(network.clone());
    let collector = name("collector");
    cleanup.containers.push(collector.clone());
    #[rustfmt::skip]
    let _ = docker(&[
        "run", "-d", "--name", &collector, "--network", &network,
        "--network-alias", "log-collector.observability.svc",
        "-v", &mount(&out_dir, "/data"),
        &collector_image,
    ]);
    assert!(
        wait_until(WAIT, || docker(&["logs", &collector]).contains("listening")),
        "the collector did not start"
    );

    // The pod's network namespace, with the metrics port published for the "kubelet" probes.
    let pod = name("pod");
    cleanup.containers.push(pod.clone());
    #[rustfmt::skip]
    let _ = docker(&[
        "run", "-d", "--name", &pod, "--network", &network, "-p", "127.0.0.1::9090",
        &webapp_image, "--pause",
    ]);
    let netns = format!("container:{pod}");

    // The agent first, as a native sidecar starts: what k8s/pod/pod.yaml asks for (read-only
    // root, no capabilities, no privilege escalation, the memory limit, the Downward API
    // variables, the log volume read-only, the config from the ConfigMap).
    let agent = name("log-agent");
    cleanup.containers.push(agent.clone());
    let (pod_name, pod_uid) = (format!("POD_NAME={pod}"), format!("POD_UID={id}"));
    let (logs_ro, config_ro) = (
        format!("{}:ro", mount(&log_dir, "/var/log")),
        format!("{}:ro", mount(&config, "/etc/tailship/tailship.toml")),
    );
    #[rustfmt::skip]
    let _ = docker(&[
        "run", "-d", "--name", &agent, "--network", &netns,
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--memory", "64m", "--memory-swap", "64m",
        "-e", &pod_name, "-e", "POD_NAMESPACE=default", "-e", &pod_uid,
        "-e", "NODE_NAME=docker-host", "-e", "CONTAINER_NAME=webapp",
        "-v", &logs_ro, "-v", &mount(&data_dir, "/var/lib/tailship"), "-v", &config_ro,
        &agent_image,
    ]);

    // Probes, the way kubelet sends them: to the pod's address, port 9090.
    let port = docker(&["port", &pod, "9090/tcp"]);
    let metrics_addr: SocketAddr = port.lines().next().unwrap().trim().parse().unwrap();
    assert!(
        wait_until(WAIT, || http_get(metrics_addr, "/readyz").is_ok_and(|(s, _)| s == 200)),
        "/readyz never answered 200 on {metrics_addr}"
    );
    assert_eq!(http_get(metrics_addr, "/healthz").unwrap().0, 200);

    // Idle (nothing to read yet): the agent waits on inotify and costs nothing.
    let mut report = String::new();
    let pid = agent_pid(&agent);
    let cpu0 = pid.and_then(proc_cpu_seconds);
    thread::sleep(Duration::from_secs(2));
    if let (Some(c0), Some(c1), Some((rss, _))) = (cpu0, pid.and_then(proc_cpu_seconds), pid.and_then(proc_mem_kib)) {
        let _ = writeln!(
            report,
            "agent idle: {:.2} CPU-s in 2 s, RSS {:.1} MiB",
            c1 - c0,
            rss as f64 / 1024.0
        );
        assert!(c1 - c0 < 0.1, "an idle agent used {:.2} CPU-s in 2 s", c1 - c0);
    }

    // Then the app, writing into the shared volume.
    let webapp = name("webapp");
    cleanup.containers.push(webapp.clone());
    let (rate, rotate) = (RATE.to_string(), ROTATE_EVERY.to_string());
    #[rustfmt::skip]
    let _ = docker(&[
        "run", "-d", "--name", &webapp, "--network", &netns, "--read-only",
        "-v", &mount(&log_dir, "/var/log"),
        &webapp_image, "--rate", &rate, "--rotate-every", &rotate,
    ]);

    let mut rx = Received::new(out_dir.join("received.ndjson"));
    let t = Instant::now();
    wait_for_lines(&mut rx, 3 * ROTATE_EVERY / 2, "first lines");
    let _ = writeln!(
        report,
        "first {} lines (one rotation) in {:.1?}",
        rx.contiguous(),
        t.elapsed()
    );
    let m = Metrics::fetch(metrics_addr).unwrap();
    assert_eq!(
        m.get_with("tailship_sink_up", "sink=\"collector\""),
        Some(1.0),
        "{}",
        m.text
    );
    assert!(m.val("tailship_records_sent_total") > 0.0, "{}", m.text);
    assert!(
        m.val("tailship_rotations_total") >= 1.0,
        "a rotation was seen: {}",
        m.text
    );

    // The record carries the pod's identity from the Downward API variables.
    let first = rx.first.clone().unwrap();
    let resource = &first["resource"];
    assert_eq!(resource["k8s.pod.name"], pod.as_str(), "{first}");
    assert_eq!(resource["k8s.namespace.name"], "default", "{first}");
    assert_eq!(resource["k8s.container.name"], "webapp", "{first}");
    assert_eq!(resource["k8s.node.name"], "docker-host", "{first}");
    assert_eq!(resource["k8s.pod.uid"], id.as_str(), "{first}");
    assert_eq!(resource["service.name"], "webapp", "{first}");
    assert_eq!(first["file"], "/var/log/app.log", "{first}");

    // A graceful restart of the agent container (SIGTERM, start): resume at the checkpoint.
    let t = Instant::now();
    docker(&["restart", "-t", "25", &agent]);
    let _ = writeln!(report, "docker restart of the agent took {:.1?}", t.elapsed());
    let target = written_so_far(&log_dir) + ROTATE_EVERY;
    wait_for_lines(&mut rx, target, "after docker restart");
    let dups_after_restart = rx.duplicates();
    // SIGTERM wrote a checkpoint covering everything shipped: nothing is sent twice.
    assert_eq!(dups_after_restart, 0, "duplicates after a graceful restart");

    // A crash (SIGKILL) and a start: at-least-once from the last checkpoint.
    docker(&["kill", &agent]);
    docker(&["start", &agent]);
    let target = written_so_far(&log_dir) + ROTATE_EVERY;
    wait_for_lines(&mut rx, target, "after kill -9 and start");
    let _ = writeln!(
        report,
        "duplicates: {dups_after_restart} after the graceful restart, {} after the kill -9 (same ids)",
        rx.duplicates()
    );

    // Steady state: the agent's footprint while the app writes RATE lines/s.
    let pid = agent_pid(&agent);
    let cpu0 = pid.and_then(proc_cpu_seconds);
    let lines0 = rx.contiguous();
    let t = Instant::now();
    let target = written_so_far(&log_dir) + 2 * ROTATE_EVERY;
    wait_for_lines(&mut rx, target, "steady state");
    let secs = t.elapsed().as_secs_f64();
    let cpu1 = pid.and_then(proc_cpu_seconds);
    let mem = pid.and_then(proc_mem_kib);
    if let (Some(c0), Some(c1), Some((rss, hwm))) = (cpu0, cpu1, mem) {
        let _ = writeln!(
            report,
            "agent at ~{RATE} lines/s: {:.1}% of a core ({:.2} CPU-s for {} lines in {secs:.1}s), RSS {:.1} MiB, peak {:.1} MiB",
            100.0 * (c1 - c0) / secs,
            c1 - c0,
            rx.contiguous() - lines0,
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0
        );
    } else {
        let _ = writeln!(report, "agent footprint: /proc of the container not readable here");
    }

    // The pod stops: the app first (it flushes and reports its last line), then the agent,
    // as kubelet does with a native sidecar. Everything the app wrote must arrive.
    docker(&["stop", "-t", "25", &webapp]);
    let last: u64 = docker(&["logs", &webapp])
        .lines()
        .find_map(|l| l.strip_prefix("webapp: stopped after seq "))
        .and_then(|s| s.trim().parse().ok())
        .expect("webapp reports its last line on SIGTERM");
    assert_eq!(exit_code(&webapp), "0 oom=false", "webapp exits 0 on SIGTERM");
    let t = Instant::now();
    docker(&["stop", "-t", "25", &agent]);
    let stop_took = t.elapsed();
    assert_eq!(
        exit_code(&agent),
        "0 oom=false",
        "the agent exits 0 on SIGTERM, within its memory limit"
    );
    rx.poll();
    let missing = rx.missing(last);
    assert!(
        missing.is_empty(),
        "{} of {last} lines missing after the pod stopped (first {:?}); the last lines must be shipped on SIGTERM",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        data_dir.join("checkpoints.json").exists(),
        "checkpoint written to the data_dir volume"
    );
    let _ = writeln!(
        report,
        "pod stopped: all {last} lines arrived ({} records, {} duplicates); the agent's SIGTERM stop took {stop_took:.1?}",
        rx.records,
        rx.duplicates()
    );
    let _ = writeln!(
        report,
        "image ({built_from:?}) {:.1} MiB; build {built:.1?}; whole test {:.1?}",
        size as f64 / (1 << 20) as f64,
        started.elapsed()
    );
    eprint!("pod: {}", report.replace('\n', "\npod: ").trim_end_matches("pod: "));
}

/// An app container logging through Docker's own `fluentd` logging driver (the daemon's
/// fluent-logger, with `fluentd-request-ack`) to the agent's `forward` input, published on
/// the host's loopback as a node agent's port would be: every line the app printed arrives at
/// the collector once, with the driver's fields (`container_name`, `source`) and the tag.
#[test]
fn an_app_logging_through_dockers_fluentd_driver_reaches_the_agent() {
    const LINES: u64 = 5000;
    if let Err(why) = docker_available() {
        panic!("the pod test needs a Docker engine ({why}); leave it out with `cargo test -- --skip pod::`");
    }
    let _heavy = heavy();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
    let id = format!("{}-{:x}", std::process::id(), nanos);
    let name = |role: &str| format!("tailship-it-{id}-{role}");
    let mut cleanup = Cleanup {
        containers: Vec::new(),
        networks: Vec::new(),
        images: Vec::new(),
    };
    let dir = TestDir::new("pod-fluentd");
    let agent_image = format!("tailship-it-agent:{id}-fluentd");
    let webapp_image = format!("tailship-it-webapp:{id}-fluentd");
    let collector_image = format!("tailship-it-collector:{id}-fluentd");
    cleanup
        .images
        .extend([agent_image.clone(), webapp_image.clone(), collector_image.clone()]);
    build_agent_image(&agent_image, &dir);
    build_scratch_image(&webapp_image, &build_example("webapp"), "65532:65532", &dir);
    build_scratch_image(&collector_image, &build_example("collector"), "0:0", &dir);

    let open_dir = |rel: &str| {
        let p = dir.subdir(rel);
        fs::set_permissions(&p, fs::Permissions::from_mode(0o777)).unwrap();
        p
    };
    let data_dir = open_dir("tailship-data");
    let out_dir = open_dir("collector");
    let config = dir.join("tailship.toml");
    fs::write(
        &config,
        "data_dir = \"/var/lib/tailship\"\n[metrics]\naddress = \"0.0.0.0:9090\"\n\n\
         [[sources]]\nname = \"docker-fluentd\"\ntype = \"forward\"\naddress = \"0.0.0.0:24224\"\n\n\
         [[sinks]]\nname = \"collector\"\ntype = \"tcp\"\naddress = \"log-collector.observability.svc:5170\"\nencoding = \"ndjson\"\n",
    )
    .unwrap();
    fs::set_permissions(&config, fs::Permissions::from_mode(0o644)).unwrap();
    let mount = |host: &Path, at: &str| format!("{}:{at}", host.display());

    let network = name("net");
    docker(&["network", "create", &network]);
    cleanup.networks.push(network.clone());
    let collector = name("collector");
    cleanup.containers.push(collector.clone());
    #[rustfmt::skip]
    let _ = docker(&[
        "run", "-d", "--name", &collector, "--network", &network,
        "--network-alias", "log-collector.observability.svc",
        "-v", &mount(&out_dir, "/data"),
        &collector_image,
    ]);
    assert!(
        wait_until(WAIT, || docker(&["logs", &collector]).contains("listening")),
        "the collector did not start"
    );

    // The agent, its forward port published on the host's loopback: the logging driver runs
    // in the Docker daemon, in the host's network namespace, not in the app's.
    let agent = name("log-agent");
    cleanup.containers.push(agent.clone());
    let config_ro = format!("{}:ro", mount(&config, "/etc/tailship/tailship.toml"));
    #[rustfmt::skip]
    let _ = docker(&[
        "run", "-d", "--name", &agent, "--network", &network,
        "-p", "127.0.0.1::24224", "-p", "127.0.0.1::9090",
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "-v", &mount(&data_dir, "/var/lib/tailship"), "-v", &config_ro,
        &agent_image,
    ]);
    let published = |port: &str| -> SocketAddr {
        docker(&["port", &agent, port])
            .lines()
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (forward_addr, metrics_addr) = (published("24224/tcp"), published("9090/tcp"));
    assert!(
        wait_until(WAIT, || http_get(metrics_addr, "/readyz").is_ok_and(|(s, _)| s == 200)),
        "/readyz never answered 200 on {metrics_addr}: {}",
        docker(&["logs", &agent])
    );

    let app = name("app");
    cleanup.containers.push(app.clone());
    let address = format!("fluentd-address=tcp://{forward_addr}");
    let (count, rate) = (LINES.to_string(), "2000".to_owned());
    #[rustfmt::skip]
    let _ = docker(&[
        "run", "-d", "--name", &app,
        "--log-driver", "fluentd", "--log-opt", &address,
        "--log-opt", "tag=docker.webapp", "--log-opt", "fluentd-request-ack=true",
        &webapp_image, "--stdout", &count, "--rate", &rate,
    ]);
    let code = docker_for(Duration::from_secs(120), &["wait", &app]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code, "0", "the app exited {code}");

    let mut rx = Received::new(out_dir.join("received.ndjson"));
    wait_for_lines(&mut rx, LINES, "lines through the fluentd driver");
    let first = rx.first.clone().unwrap();
    let fields = &first["fields"];
    assert_eq!(fields["container_name"], format!("/{app}"), "{first}");
    assert_eq!(fields["source"], "stdout", "{first}");
    assert_eq!(fields["tag"], "docker.webapp", "{first}");
    assert_eq!(rx.duplicates(), 0, "no restart, no duplicate");
    let m = Metrics::fetch(metrics_addr).unwrap();
    assert_eq!(
        m.get_with("tailship_input_records_accepted_total", "docker-fluentd"),
        Some(LINES as f64),
        "{}",
        m.text
    );
    eprintln!("pod fluentd driver: {LINES} lines from the app's stdout, each once at the collector");
    drop(cleanup);
}
