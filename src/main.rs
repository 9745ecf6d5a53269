//! The `tailship` binary: command line, logging, signals and exit codes around the library's
//! pipeline. Exit codes: 0 clean stop, 2 bad config or arguments, 1 anything else.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use tailship::config::Settings;
use tailship::pipeline::Pipeline;

#[derive(Parser)]
#[command(
    name = "tailship",
    version,
    about = "Tails log files and ships every line to your collector, across rotation, restarts and crashes."
)]
struct Cli {
    /// The TOML config file.
    #[arg(long, short, env = "TAILSHIP_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Format of the agent's own logs on stderr.
    #[arg(long, value_enum, default_value = "text", global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Check the config and exit: 0 if it is valid, 2 with every problem listed otherwise.
    Validate,
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
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!("panic: {info}; exiting");
        std::process::exit(1);
    }));
    let Some(path) = cli.config.clone() else {
        eprintln!("tailship: no config given; pass --config FILE or set TAILSHIP_CONFIG (try: tailship --config examples/demo.toml)");
        return ExitCode::from(2);
    };
    let settings = match Settings::load(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("tailship: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(Command::Validate) = cli.command {
        println!(
            "{}: ok ({} sources, {} sinks)",
            path.display(),
            settings.sources.len(),
            settings.sinks.len()
        );
        return ExitCode::SUCCESS;
    }
    match run(settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("tailship: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("TAILSHIP_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal; in a pod stderr is a file read by log tools.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn run(settings: Settings) -> anyhow::Result<()> {
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start the async runtime")?;
    let listener = settings.metrics_address.map(tailship::server::bind).transpose()?;
    let data_dir = settings.data_dir.clone();
    let pipeline = Pipeline::start(settings).context("start the pipeline")?;
    let metrics = std::sync::Arc::clone(&pipeline.metrics);
    runtime.block_on(async {
        if let Some(listener) = listener {
            let bound = tailship::server::serve(listener, metrics)?;
            tracing::info!(address = %bound, "metrics endpoint listening");
        }
        tracing::info!(data_dir = %data_dir.display(), version = env!("CARGO_PKG_VERSION"), "tailship started");
        wait_for_signal().await;
        anyhow::Ok(())
    })?;
    tracing::info!("shutting down: draining files and delivering what was read");
    let in_time = pipeline.stop();
    tracing::info!(in_time, "stopped");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = int.recv() => tracing::info!("SIGINT received"),
    }
}

/// Raises the soft open-files limit to the hard limit: a sidecar tailing many files, and
/// holding rotated ones until drained, must not fail at the default 1024.
fn raise_fd_limit() {
    if let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-files limit");
    }
}
