//! The `tailship` binary: command line, logging, signals and exit codes around the library's
//! pipeline. Exit codes: 0 clean stop, 2 bad config or arguments, 1 anything else.

#![forbid(unsafe_code)]

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tailship::config::{ConfigError, Settings};
use tailship::logging::{EscapedFields, PathRateLimit, PATH_WARNING_WINDOW};
use tailship::reload::Agent;
use tailship::server::{ReloadRequest, Served};
use tailship::status::progress::{self, Progress};

/// `--version`: the crate version and the git commit it was built from (see build.rs).
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("TAILSHIP_GIT_COMMIT"), ")");

const AFTER_HELP: &str = "\
Environment:
  TAILSHIP_CONFIG     the config file, if --config is not given
  TAILSHIP_LOG        the agent's own log level or filter (default: info; e.g. debug,
                      warn, tailship=debug)
  KUBERNETES_SERVICE_HOST, POD_NAME
                      either one set: running in Kubernetes, so POD_NAME, POD_NAMESPACE,
                      POD_UID, NODE_NAME and CONTAINER_NAME fill the records' k8s.* resource
                      (other names: [resource_env] in the config); with a pod identity
                      (POD_NAMESPACE) kubernetes_metadata defaults to none: a sidecar's
                      app writes the paths
  POD_IP              the manifests' metrics address (${POD_IP:-0.0.0.0}:9090)
  HOSTNAME            the records' host.name (default: the kernel's host name)
  HTTP_PROXY, HTTPS_PROXY, NO_PROXY
                      proxies of the HTTP sinks
  ${VAR} and ${VAR:-default} in any string of the config are read from the environment.

Signals:
  SIGTERM, SIGINT     stop: read what is on disk, deliver it, write the checkpoint
  SIGHUP              reload the config (also POST /-/reload, --watch-config); an
                      invalid one is refused and the old one keeps running

Exit status:
  0  stopped cleanly (SIGTERM or SIGINT), `validate` found the config valid, or
     `convert` printed the converted config
  1  failed while running (e.g. the metrics port is taken, data_dir is not writable)
  2  bad arguments or a bad config (every problem is listed; for `convert`, the
     Fluent Bit file and line)

Docs: README.md (configuration, guarantees, metrics) and docs/ in the source tree;
a config to start from: examples/demo.toml; coming from Fluent Bit:
`tailship convert fluent-bit.conf` and docs/switching-from-fluent-bit.md.";

#[derive(Parser)]
#[command(
    name = "tailship",
    version = VERSION,
    about = "Tails log files and ships every line to your collector, across rotation, restarts and crashes.",
    after_help = AFTER_HELP
)]
struct Cli {
    /// The config file: TOML, or YAML if its name ends in .yaml or .yml.
    #[arg(long, short, env = "TAILSHIP_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Format of the agent's own logs on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    /// Reload the config when its file changes (also a ConfigMap's symlink swap).
    #[arg(long)]
    watch_config: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the config and exit: 0 if it is valid, 2 with every problem listed otherwise.
    Validate {
        /// Print the effective config (defaults filled in, variables expanded, secrets masked).
        #[arg(long)]
        print: bool,
    },
    /// Show where every file and sink stands: asks the running agent (GET /api/v1/status on
    /// the metrics address) or, when none answers, reads data_dir and the files.
    Status {
        /// Print JSON (the API's answer) instead of tables.
        #[arg(long)]
        json: bool,
        /// Redraw every 2 seconds until every file has caught up.
        #[arg(long)]
        watch: bool,
    },
    /// Print a tailship config equivalent to a Fluent Bit config (classic .conf, or .yaml/.yml),
    /// with a comment on every setting it could not carry over. See
    /// docs/switching-from-fluent-bit.md.
    Convert {
        /// The Fluent Bit config file.
        file: PathBuf,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging(cli.log_format);
    // A panic in any stage thread would leave the agent half-working (a stage gone, the
    // checkpoint frozen). Die loudly instead: the restart resumes from the checkpoint.
    // Printed once: as the agent's log line, or by the default hook when a backtrace was asked
    // for (RUST_BACKTRACE) or the log filter would hide it.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if std::env::var_os("RUST_BACKTRACE").is_some() || !tracing::enabled!(tracing::Level::ERROR) {
            default_hook(info);
        } else {
            tracing::error!("panic: {info}; exiting");
        }
        std::process::exit(1);
    }));
    if let Some(Command::Convert { file }) = &cli.command {
        return match tailship::convert::convert(file) {
            Ok(toml) => {
                print!("{toml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tailship convert: {e}");
                ExitCode::from(2)
            }
        };
    }
    let Some(path) = cli.config.clone() else {
        eprintln!("tailship: no config given; pass --config FILE or set TAILSHIP_CONFIG (try: tailship --config examples/demo.toml)");
        return ExitCode::from(2);
    };
    let settings = match Settings::load(&path) {
        Ok(s) => s,
        Err(e) => {
            match &e {
                ConfigError::Read { source, .. } if source.kind() == ErrorKind::NotFound => {
                    eprintln!("tailship: {e}\n  hint: pass --config FILE or set TAILSHIP_CONFIG (try: tailship --config examples/demo.toml)")
                }
                _ => eprintln!("tailship: {e}"),
            }
            return ExitCode::from(2);
        }
    };
    for warning in settings.warnings() {
        tracing::warn!("{warning}");
    }
    if let Some(Command::Status { json, watch }) = cli.command {
        return status(&settings, json, watch);
    }
    if let Some(Command::Validate { print }) = cli.command {
        let summary = format!(
            "{}: ok ({}, {})",
            path.display(),
            count(settings.sources.len(), "source"),
            count(settings.sinks.len(), "sink")
        );
        // With --print, stdout is the effective config alone (a valid config file).
        if print {
            print!("{}", settings.effective());
            eprintln!("{summary}");
        } else {
            println!("{summary}");
        }
        return ExitCode::SUCCESS;
    }
    match run(&path, settings, cli.watch_config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e);
            ExitCode::from(1)
        }
    }
}

/// `tailship status`: the tables (or JSON) once, or redrawn until every file has caught up.
fn status(settings: &Settings, json: bool, watch: bool) -> ExitCode {
    loop {
        let status = match tailship::status::gather(settings) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("tailship status: {e}");
                return ExitCode::from(1);
            }
        };
        let text = if json {
            serde_json::to_string_pretty(&status).unwrap_or_default() + "\n"
        } else {
            tailship::status::render::table(&status)
        };
        if watch && std::io::IsTerminal::is_terminal(&std::io::stdout()) {
            // Clear the screen and go home: the tables redrawn in place.
            print!("\x1b[2J\x1b[H");
        }
        print!("{text}");
        if !watch || tailship::status::caught_up(&status) {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(std::time::Duration::from_secs(2));
    }
}

/// `1 sink`, `2 sinks`.
fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// Prints a fatal error once: as one log line (a field `hint` says what to change, where that
/// is known), or on stderr if the log filter hides errors.
fn report(e: &anyhow::Error) {
    let message = one_line(e);
    let hint = hint(e);
    if tracing::enabled!(tracing::Level::ERROR) {
        match hint {
            Some(hint) => tracing::error!(hint, "{message}"),
            None => tracing::error!("{message}"),
        }
    } else {
        eprintln!("tailship: {message}");
        if let Some(hint) = hint {
            eprintln!("  hint: {hint}");
        }
    }
}

/// The error and its causes on one line, each cause once: the library's errors already carry
/// their source's text, and `{:#}` would print it a second time.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// What to change, for the start-up failures whose fix is a setting.
fn hint(e: &anyhow::Error) -> Option<&'static str> {
    for cause in e.chain() {
        if let Some(e) = cause.downcast_ref::<tailship::server::Error>() {
            return Some(match e.source.kind() {
                ErrorKind::AddrInUse => {
                    "another process listens on that port: set metrics.address to a free one, or metrics.enabled = false"
                }
                ErrorKind::PermissionDenied => "ports below 1024 need privileges: set metrics.address to a higher port",
                ErrorKind::AddrNotAvailable => {
                    "no interface of this host has that IP: set metrics.address (0.0.0.0:PORT listens on all)"
                }
                _ => "set metrics.address, or metrics.enabled = false",
            });
        }
        if let Some(
            tailship::checkpoint::Error::CreateDir { source, .. }
            | tailship::checkpoint::Error::Write { source, .. }
            | tailship::checkpoint::Error::NotWritable { source, .. },
        ) = cause.downcast_ref::<tailship::checkpoint::Error>()
        {
            if matches!(
                source.kind(),
                ErrorKind::PermissionDenied | ErrorKind::ReadOnlyFilesystem
            ) {
                return Some(
                    "the agent keeps its checkpoints in data_dir: set data_dir to a directory it may write (in a container, a volume)",
                );
            }
        }
    }
    None
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let filter = tracing_subscriber::EnvFilter::try_from_env("TAILSHIP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal; in a pod stderr is a file read by log tools.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(PathRateLimit::new(PATH_WARNING_WINDOW));
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    // Field values may be an app's file names or a collector's answers: the text format
    // escapes them (JSON escapes by itself).
    match format {
        LogFormat::Text => registry.with(layer.fmt_fields(EscapedFields)).init(),
        LogFormat::Json => registry.with(layer.json()).init(),
    }
}

fn run(path: &Path, settings: Settings, watch_config: bool) -> anyhow::Result<()> {
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let mut signals = {
        let _entered = runtime.enter();
        Signals::install()?
    };
    let listener = settings.metrics_address.map(tailship::server::bind).transpose()?;
    let data_dir = settings.data_dir.clone();
    let agent = Agent::start(path, settings).context("start the pipeline")?;
    // Bounded: one request is queued while a reload runs; later ones wait in the server, each
    // holding one of its capped connections.
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
    let served = Served {
        metrics: agent.served(),
        reloads: agent.reloads(),
        reload: Some(reload_tx),
    };
    let agent = runtime.block_on(async {
        if let Some(listener) = listener {
            let bound = tailship::server::serve(listener, served)?;
            tracing::info!(address = %bound, "metrics endpoint listening");
        }
        tracing::info!(data_dir = %data_dir.display(), version = env!("CARGO_PKG_VERSION"), "tailship started");
        supervise(agent, &mut signals, reload_rx, watch_config).await
    })?;
    tracing::info!("shutting down: draining files and delivering what was read");
    let in_time = agent.stop();
    tracing::info!(in_time, "stopped");
    Ok(())
}

/// Runs until SIGTERM or SIGINT, reloading the config on SIGHUP, `POST /-/reload` and, with
/// `--watch-config`, when the file changes; logs the progress of a large backlog.
async fn supervise(
    mut agent: Agent,
    signals: &mut Signals,
    mut requests: tokio::sync::mpsc::Receiver<ReloadRequest>,
    watch_config: bool,
) -> anyhow::Result<Agent> {
    // The first tick one interval in: a rate needs an interval behind it.
    let mut progress_tick =
        tokio::time::interval_at(tokio::time::Instant::now() + progress::INTERVAL, progress::INTERVAL);
    progress_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut progress = Progress::new(&agent.served().read().unwrap_or_else(|p| p.into_inner()));
    let mut watch_tick = tokio::time::interval(tailship::reload::WATCH_INTERVAL);
    watch_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_text = tailship::reload::read_config(agent.path());
    loop {
        let (why, answer) = tokio::select! {
            _ = signals.term.recv() => { tracing::info!("SIGTERM received"); return Ok(agent) }
            _ = signals.int.recv() => { tracing::info!("SIGINT received"); return Ok(agent) }
            _ = signals.hup.recv() => ("SIGHUP", None),
            Some(req) = requests.recv() => ("POST /-/reload", Some(req.answer)),
            _ = watch_tick.tick(), if watch_config => {
                let text = tailship::reload::read_config(agent.path());
                if text.is_none() || text == last_text {
                    continue;
                }
                ("the config file changed", None)
            }
            _ = progress_tick.tick() => {
                progress.tick(&agent.served().read().unwrap_or_else(|p| p.into_inner()));
                continue;
            }
        };
        // The drain blocks: off the runtime's thread, so the endpoints keep answering.
        let (back, outcome) = tokio::task::spawn_blocking(move || {
            let outcome = agent.reload(why);
            (agent, outcome)
        })
        .await
        .context("reload")?;
        agent = back;
        last_text = tailship::reload::read_config(agent.path());
        let outcome = outcome?;
        if let Some(answer) = answer {
            let _ = answer.send(outcome);
        }
    }
}

/// The signals the agent handles, installed before the pipeline starts, so SIGTERM and SIGINT
/// arriving during the start are seen once it is done, and SIGHUP (by convention "reload your
/// config", which by default would kill the agent with no drain) reloads.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Needs the runtime entered (tokio registers the handlers with its driver).
    fn install() -> anyhow::Result<Signals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("install the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("install the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("install the SIGHUP handler")?,
        })
    }
}

/// Raises the soft open-files limit to the hard limit: a sidecar tailing many files, and
/// holding rotated ones until drained, must not fail at the default 1024.
fn raise_fd_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-files limit");
    }
}
