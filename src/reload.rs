//! Hot reload: `SIGHUP`, `POST /-/reload` and `--watch-config` read the config again; a valid
//! one that differs replaces what changed, an invalid one is logged, counted and the old
//! config keeps running.
//!
//! What a reload rebuilds is `diff::plan`'s answer. When only some sinks' own settings changed,
//! those sinks alone are rebuilt while the tailer, the adapt workers and the other sinks keep
//! running (`Pipeline::replace_sinks`: the new sink takes the records from the next batch on,
//! the old one delivers what it holds, and until it has, it holds the checkpoint back). Any
//! other change stops the whole pipeline the way a shutdown stops it (the tailer reads what is
//! on disk, every sink delivers what it holds, in-flight batches of a removed sink included,
//! and the checkpoint is written), then a pipeline of the new config starts from that
//! checkpoint — as does a sink rebuild whose old sink cannot deliver within
//! `shutdown_timeout`. Nothing is lost or read twice either way: the new pipeline resumes
//! exactly where every sink acknowledged, the same guarantee as a restart, without the process
//! going away. A whole restart's cost is a pause in shipping (the drain plus the start,
//! measured and logged as `gap_ms`), and counters of `/metrics` start again from zero. Two
//! settings need a restart: `data_dir` (the checkpoint lives there; a reload changing it is
//! refused) and `metrics.*` (the listener stays as it is; a warning says so).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use crate::config::{ConfigError, Settings};
use crate::metrics::{add, Metrics};
use crate::pipeline::{self, Pipeline};

pub mod diff;

use diff::Plan;

/// How often `--watch-config` looks at the file. Polling the content rather than watching
/// events: a ConfigMap update swaps a `..data` symlink, an editor renames a new file over the
/// old one, and some file systems give no events at all; a read of a small file each second
/// sees all of them the same way.
pub const WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Counters that outlive the pipelines they reload, rendered with `/metrics`.
#[derive(Debug, Default)]
pub struct Reloads {
    pub succeeded: AtomicU64,
    pub failed: AtomicU64,
    /// Milliseconds shipping paused at the last reload that replaced the pipeline.
    pub last_gap_ms: AtomicU64,
}

impl Reloads {
    /// The counters in the Prometheus text format.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = String::new();
        for (name, kind, help, v) in [
            (
                "tailship_config_reloads_total",
                "counter",
                "Reloads that applied a changed config.",
                get(&self.succeeded),
            ),
            (
                "tailship_config_reload_failures_total",
                "counter",
                "Reloads refused because the new config is invalid; the old one keeps running.",
                get(&self.failed),
            ),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"));
        }
        let gap = get(&self.last_gap_ms) as f64 / 1000.0;
        out.push_str(&format!(
            "# HELP tailship_config_reload_gap_seconds How long shipping paused at the last reload (drain and start).\n# TYPE tailship_config_reload_gap_seconds gauge\ntailship_config_reload_gap_seconds {gap}\n"
        ));
        out
    }
}

/// What a reload did.
#[derive(Debug)]
pub enum Outcome {
    /// The new config runs; shipping paused this long.
    Applied { gap: Duration },
    /// The new config runs; only these sinks were rebuilt, nothing paused.
    Rebuilt { sinks: Vec<String> },
    /// The file gives the settings already running.
    Unchanged,
    /// The old config keeps running; the problems, one per line, for the caller.
    Refused(Vec<String>),
}

/// A pipeline could not be started again (after a reload, nor with the old config).
#[derive(Debug, thiserror::Error)]
#[error("reload: the new pipeline did not start ({new}) and neither did the old one ({old})")]
pub struct FatalError {
    pub new: Box<pipeline::Error>,
    pub old: Box<pipeline::Error>,
}

/// Why the changed sinks were not rebuilt alone (the whole pipeline restarts instead).
#[derive(Debug, thiserror::Error)]
enum NotRebuilt {
    #[error("a replaced sink ({sinks}) did not deliver what it held within shutdown_timeout")]
    Undrained { sinks: String },
    #[error("a rebuilt sink did not start: {0}")]
    Start(Box<pipeline::Error>),
    #[error("no pipeline is running")]
    NoPipeline,
}

/// The running pipeline, its config, and the handle the metrics server reads it through.
pub struct Agent {
    path: PathBuf,
    settings: Settings,
    pipeline: Option<Pipeline>,
    /// The pipeline's metrics as the server sees them: replaced at each reload.
    served: Arc<RwLock<Arc<Metrics>>>,
    reloads: Arc<Reloads>,
}

impl Agent {
    /// Starts the pipeline of `settings`, read from `path`.
    pub fn start(path: &Path, settings: Settings) -> Result<Agent, pipeline::Error> {
        let pipeline = Pipeline::start(settings.clone())?;
        let served = Arc::new(RwLock::new(Arc::clone(&pipeline.metrics)));
        Ok(Agent {
            path: path.to_owned(),
            settings,
            pipeline: Some(pipeline),
            served,
            reloads: Arc::default(),
        })
    }

    /// What the metrics server reads: the current pipeline's metrics.
    pub fn served(&self) -> Arc<RwLock<Arc<Metrics>>> {
        Arc::clone(&self.served)
    }

    pub fn reloads(&self) -> Arc<Reloads> {
        Arc::clone(&self.reloads)
    }

    /// The config file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the config again and applies it if it is valid and differs (module doc).
    pub fn reload(&mut self, why: &str) -> Result<Outcome, FatalError> {
        tracing::info!(trigger = why, path = %self.path.display(), "reloading the config");
        let new = match Settings::load(&self.path) {
            Ok(new) => new,
            Err(e) => return Ok(self.refuse(problems(&e))),
        };
        if new.data_dir != self.settings.data_dir {
            let problem = format!(
                "data_dir: changed from {} to {}; the checkpoint lives there, so this needs a restart",
                self.settings.data_dir.display(),
                new.data_dir.display()
            );
            return Ok(self.refuse(vec![problem]));
        }
        if new.metrics_address != self.settings.metrics_address
            || new.metrics_per_file != self.settings.metrics_per_file
        {
            tracing::warn!("reload: metrics.* changes take effect at the next restart; the endpoint stays as it is");
        }
        let plan = diff::plan(&self.settings, &new);
        if plan != Plan::Unchanged {
            for warning in new.warnings() {
                tracing::warn!("{warning}");
            }
        }
        let why = match plan {
            Plan::Unchanged => {
                tracing::info!("reload: the config is unchanged; nothing to do");
                return Ok(Outcome::Unchanged);
            }
            Plan::Sinks(changed) => match self.rebuild_sinks(&new, &changed) {
                Ok(names) => {
                    self.settings = new;
                    add(&self.reloads.succeeded, 1);
                    // No sink paused: the untouched ones never stopped, a rebuilt one's
                    // successor took over at once.
                    self.reloads.last_gap_ms.store(0, Ordering::Relaxed);
                    return Ok(Outcome::Rebuilt { sinks: names });
                }
                Err(why) => why.to_string(),
            },
            Plan::Whole(why) => why,
        };
        tracing::info!(why = %why, "reload: stopping and starting the whole pipeline");
        self.restart(new)
    }

    /// Rebuilds the sinks at `changed` alone (`Pipeline::replace_sinks`); their names, or why
    /// the whole pipeline has to restart instead.
    fn rebuild_sinks(&mut self, new: &Settings, changed: &[usize]) -> Result<Vec<String>, NotRebuilt> {
        let names: Vec<String> = changed.iter().map(|&i| new.sinks[i].name.clone()).collect();
        let t = Instant::now();
        let Some(pipeline) = self.pipeline.as_mut() else {
            return Err(NotRebuilt::NoPipeline);
        };
        match pipeline.replace_sinks(new, changed) {
            Ok(true) => {
                tracing::info!(
                    sinks = %names.join(", "),
                    handover_ms = t.elapsed().as_millis() as u64,
                    "config reloaded: rebuilt the changed sinks, each after its predecessor delivered what it held; the rest kept running"
                );
                Ok(names)
            }
            Ok(false) => Err(NotRebuilt::Undrained {
                sinks: names.join(", "),
            }),
            Err(e) => Err(NotRebuilt::Start(Box::new(e))),
        }
    }

    /// Stops the whole pipeline as a shutdown does and starts one of `new` from the checkpoint
    /// (the module doc); back to the old settings if the new pipeline does not start.
    fn restart(&mut self, new: Settings) -> Result<Outcome, FatalError> {
        let t = Instant::now();
        if let Some(old) = self.pipeline.take() {
            if !old.stop_for_reload() {
                tracing::warn!("reload: the old pipeline did not drain within shutdown_timeout; what it had not delivered is read again");
            }
        }
        let drained = t.elapsed();
        let pipeline = match Pipeline::start(new.clone()) {
            Ok(p) => p,
            Err(new_error) => {
                tracing::error!(error = %new_error, "reload: the new pipeline did not start; going back to the old config");
                let p = Pipeline::start(self.settings.clone()).map_err(|old| FatalError {
                    new: Box::new(new_error),
                    old: Box::new(old),
                })?;
                self.install(p);
                return Ok(self.refuse(vec!["the new pipeline did not start (see the log)".to_owned()]));
            }
        };
        self.install(pipeline);
        let gap = t.elapsed();
        log_changes(&self.settings, &new);
        self.settings = new;
        add(&self.reloads.succeeded, 1);
        self.reloads
            .last_gap_ms
            .store(gap.as_millis() as u64, Ordering::Relaxed);
        tracing::info!(
            gap_ms = gap.as_millis() as u64,
            drain_ms = drained.as_millis() as u64,
            "config reloaded"
        );
        Ok(Outcome::Applied { gap })
    }

    fn install(&mut self, pipeline: Pipeline) {
        *self.served.write().unwrap_or_else(|p| p.into_inner()) = Arc::clone(&pipeline.metrics);
        self.pipeline = Some(pipeline);
    }

    fn refuse(&self, problems: Vec<String>) -> Outcome {
        add(&self.reloads.failed, 1);
        for p in &problems {
            tracing::error!(problem = %p, "reload refused; the old config keeps running");
        }
        Outcome::Refused(problems)
    }

    /// Stops the pipeline (a shutdown). True if it finished in time.
    pub fn stop(mut self) -> bool {
        self.pipeline.take().is_none_or(Pipeline::stop)
    }
}

/// A config error as one line per problem, each with its key.
fn problems(e: &ConfigError) -> Vec<String> {
    match e {
        ConfigError::Invalid { problems, .. } => problems.iter().map(ToString::to_string).collect(),
        other => vec![other.to_string()],
    }
}

/// Logs the sources and sinks a reload added and removed.
fn log_changes(old: &Settings, new: &Settings) {
    let names = |s: &Settings| -> (Vec<String>, Vec<String>) {
        (
            s.sources.iter().map(|x| x.name.clone()).collect(),
            s.sinks.iter().map(|x| x.name.clone()).collect(),
        )
    };
    let ((old_src, old_sink), (new_src, new_sink)) = (names(old), names(new));
    let diff = |a: &[String], b: &[String]| {
        a.iter()
            .filter(|n| !b.contains(n))
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    };
    tracing::info!(
        sources_added = %diff(&new_src, &old_src),
        sources_removed = %diff(&old_src, &new_src),
        sinks_added = %diff(&new_sink, &old_sink),
        sinks_removed = %diff(&old_sink, &new_sink),
        "reload: what changed"
    );
}

/// The config file's bytes as `--watch-config` compares them (through symlinks).
pub fn read_config(path: &Path) -> Option<Vec<u8>> {
    std::fs::read(path).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_name_the_reload_metrics() {
        let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/metrics.md")).unwrap();
        let text = Reloads::default().render();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            let name = line.split(' ').nth(2).unwrap();
            assert!(docs.contains(name), "docs/metrics.md does not name {name}");
        }
    }
}
