//! Two sinks reading one source, and files reached through symlinks.
//!
//! With two sinks, a file's checkpoint is the minimum of what each has acknowledged: a sink
//! whose collector is down holds the checkpoint back, and after a restart it gets every line
//! while the other sink already has them all.

use std::fs;
use std::time::Duration;

use crate::util::*;

#[test]
fn two_sinks_each_get_every_line_and_the_slower_one_holds_the_checkpoint() {
    const N: u64 = 5_000;
    let dir = TestDir::new("fanout");
    let logs = dir.subdir("logs");
    fs::write(logs.join("app.log"), corpus().lines("fan", 0, N)).unwrap();
    let a = Receiver::ndjson();
    let mut b = Receiver::ndjson();
    b.stop();
    let mut cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &a).top("shutdown_timeout = \"2s\"");
    let second = format!(
        "\n[[sinks]]\nname = \"second\"\ntype = \"tcp\"\naddress = {}\nencoding = \"ndjson\"\nbatch = {{ linger_ms = 50 }}\n",
        q(&b.addr().to_string())
    );
    let start = |cfg: &Config| {
        let path = dir.join("fanout.toml");
        fs::write(&path, cfg.render() + &second).unwrap();
        Agent::spawn(
            &dir,
            &["--config".into(), path.display().to_string()],
            cfg.metrics_addr(),
            |_| {},
        )
    };

    // Sink "second" cannot connect: "out" still gets everything...
    let mut agent = start(&cfg);
    wait_progress(Some(&mut agent), "all lines at the first sink", STALL, LIMIT, || {
        (a.unique("fan"), a.unique("fan") >= N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", a.summary()));
    // ...but the checkpoint must not move past what "second" acknowledged (nothing). The
    // shutdown deadline cuts the retries short; the final checkpoint is written anyway.
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(30)),
        Some(0),
        "{}",
        agent.stderr_tail(20)
    );
    let saved = checkpoint_offsets(&cfg);
    assert!(
        saved.iter().any(|(p, o)| p.ends_with("app.log") && *o == 0),
        "checkpoint held at 0 by the sink that acknowledged nothing: {saved:?}"
    );

    // With its collector back, the second sink gets every line after a restart.
    b.restart();
    cfg.fresh_metrics_port();
    let mut agent = start(&cfg);
    wait_progress(Some(&mut agent), "all lines at the second sink", STALL, LIMIT, || {
        (b.unique("fan"), b.unique("fan") >= N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", b.summary()));
    stop_clean(&mut agent, &b);
    let r = b.check("fan", N);
    assert_eq!(r.missing, 0, "second sink: {r}");
    let saved = checkpoint_offsets(&cfg);
    let size = fs::metadata(logs.join("app.log")).unwrap().len();
    assert!(
        saved.iter().any(|(p, o)| p.ends_with("app.log") && *o == size),
        "checkpoint at the end once both sinks have everything: {saved:?} (size {size})"
    );
}

#[test]
fn files_reached_through_symlinks_are_tailed() {
    let dir = TestDir::new("symlink");
    let real = dir.subdir("real");
    let logs = dir.subdir("logs");
    fs::write(real.join("target.txt"), corpus().lines("sym", 0, 100)).unwrap();
    std::os::unix::fs::symlink(real.join("target.txt"), logs.join("app.log")).unwrap();
    let rx = Receiver::ndjson();
    // The link leads out of the glob's root (`logs/`): followed because `real/` is one of the
    // source's `symlink_roots` (tests/it/symlinks.rs has the refusals).
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx)
        .source(&format!("symlink_roots = [{}]", q(&real.to_string_lossy())));
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "lines through the symlink", STALL, LIMIT, || {
        (rx.unique("sym"), rx.unique("sym") >= 100)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    // Appends to the target are picked up too (by the rescan if no event reaches the link's
    // directory).
    fs::OpenOptions::new()
        .append(true)
        .open(real.join("target.txt"))
        .and_then(|mut f| std::io::Write::write_all(&mut f, &corpus().lines("sym", 100, 50)))
        .unwrap();
    wait_progress(Some(&mut agent), "appended lines", STALL, LIMIT, || {
        (rx.unique("sym"), rx.unique("sym") >= 150)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);
    assert_eq!(rx.check("sym", 150).duplicates, 0);
}
