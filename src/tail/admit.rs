//! Which matched paths the tailer opens, and the open itself.
//!
//! The app next door names the files: it may link a matched name to a secret (the agent's
//! token file), to `/etc/passwd`, or to a directory, and swap a link in between a check and
//! the open. So a matched path is resolved (every link on the way), the file it leads to must
//! lie where the source's `follow_symlinks` allows, and it is opened by its resolved path with
//! `O_NOFOLLOW` (a link swapped in at the last name since fails the open) and checked on the
//! open descriptor: a regular file, and none of the agent's own files (compared by device and
//! inode, so a hard link is caught too) whatever the setting. (A directory on the way swapped
//! for a link between the resolution and the open is not caught; checking the descriptor's
//! name under /proc would refuse files renamed by a rotation just after the open, and lose them.)

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use globset::GlobSet;

use super::discover;
use crate::config::{AgentFiles, FollowSymlinks, SourceSettings};

/// Why a matched path is not tailed.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    #[error(
        "it leads outside the directories its source follows links into (follow_symlinks, symlink_roots): to {target}"
    )]
    OutsideRoots { target: PathBuf },
    #[error("it is, or passes through, a symbolic link, and its source has follow_symlinks = \"none\"")]
    Link,
    #[error("it is one of the agent's own files (its config, a secret or key file, data_dir)")]
    AgentFile,
    #[error("it is not a regular file")]
    NotRegular,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl Refused {
    /// The path disappeared before it could be opened: nothing to report.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Refused::Io(e) if e.kind() == io::ErrorKind::NotFound)
    }
}

/// A source's rule for links.
struct SourceRule {
    follow: FollowSymlinks,
    include_set: GlobSet,
    /// The literal root of each include glob, in the order of `include_set`'s globs.
    glob_roots: Vec<PathBuf>,
    symlink_roots: Vec<PathBuf>,
    /// A network source's spool directory (in `data_dir`): the one place below the agent's
    /// own directories that this source, and only it, reads.
    spool: Option<PathBuf>,
}

/// Every source's rule for links, and the agent's own files.
pub(super) struct Admission {
    sources: Vec<SourceRule>,
    own: AgentFiles,
}

impl Admission {
    pub(super) fn new(sources: &[SourceSettings], own: AgentFiles) -> Admission {
        let sources = sources
            .iter()
            .map(|s| SourceRule {
                follow: s.follow_symlinks,
                include_set: s.include_set.clone(),
                glob_roots: s.include.iter().map(|p| discover::root_of(p).dir).collect(),
                symlink_roots: s.symlink_roots.clone(),
                spool: s
                    .input
                    .as_ref()
                    .and(s.include.first())
                    .map(|p| discover::root_of(p).dir),
            })
            .collect();
        Admission { sources, own }
    }

    /// Opens `path`, matched by source `source`, for tailing, or says why it may not be.
    pub(super) fn open(&self, path: &Path, source: usize) -> Result<File, Refused> {
        let real = fs::canonicalize(path)?;
        if real != path {
            self.check_links(path, &real, source)?;
        }
        // Devices are not opened at all (opening some has effects); a FIFO swapped in after
        // this is refused by `open_regular` without blocking.
        if !fs::symlink_metadata(&real)?.is_file() {
            return Err(Refused::NotRegular);
        }
        let file = super::file::open_regular(&real)?;
        let m = file.metadata()?;
        if self.is_own((m.dev(), m.ino()), &real) && !self.in_own_spool(&real, source) {
            return Err(Refused::AgentFile);
        }
        Ok(file)
    }

    /// `path` leads, through links, to `real`: may the source follow them there?
    fn check_links(&self, path: &Path, real: &Path, source: usize) -> Result<(), Refused> {
        let rule = &self.sources[source];
        let matched: Vec<&PathBuf> = rule
            .include_set
            .matches(path)
            .into_iter()
            .filter_map(|i| rule.glob_roots.get(i))
            .collect();
        match rule.follow {
            FollowSymlinks::Any => Ok(()),
            // The glob's root itself may be a link (the admin's choice, not the app's): below
            // it, the path must be the real one.
            FollowSymlinks::None => {
                let plain = matched.iter().any(|root| {
                    path.strip_prefix(root)
                        .is_ok_and(|rel| fs::canonicalize(root).is_ok_and(|r| r.join(rel) == real))
                });
                if plain {
                    Ok(())
                } else {
                    Err(Refused::Link)
                }
            }
            FollowSymlinks::WithinRoot => {
                let inside = matched
                    .into_iter()
                    .chain(&rule.symlink_roots)
                    .any(|root| fs::canonicalize(root).is_ok_and(|r| real.starts_with(r)));
                if inside {
                    Ok(())
                } else {
                    Err(Refused::OutsideRoots {
                        target: real.to_owned(),
                    })
                }
            }
        }
    }

    /// Whether `real` is a segment of source `source`'s own spool.
    fn in_own_spool(&self, real: &Path, source: usize) -> bool {
        let spool = self.sources[source].spool.as_deref();
        spool.is_some_and(|d| fs::canonicalize(d).is_ok_and(|d| real.parent() == Some(d.as_path())))
    }

    /// Whether the file `key`, at `real`, is one of the agent's own or lies below one of its
    /// directories. Looked up at every open, so a secret file replaced since the start (a
    /// rotated token) is still recognised.
    fn is_own(&self, key: (u64, u64), real: &Path) -> bool {
        let key_of = |p: &Path| fs::metadata(p).ok().map(|m| (m.dev(), m.ino()));
        if self.own.files.iter().any(|f| key_of(f) == Some(key)) {
            return true;
        }
        let dirs: Vec<(u64, u64)> = self.own.dirs.iter().filter_map(|d| key_of(d)).collect();
        !dirs.is_empty()
            && real
                .ancestors()
                .skip(1)
                .any(|a| key_of(a).is_some_and(|k| dirs.contains(&k)))
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;
    use crate::config::Settings;

    /// A source `<dir>/logs/**/*.log` with `follow_symlinks = follow`, `data_dir = <dir>/data`
    /// and the config at `<dir>/agent.toml`.
    fn admission(dir: &Path, follow: &str, symlink_roots: &[&Path]) -> Admission {
        let d = dir.display();
        let roots: Vec<String> = symlink_roots
            .iter()
            .map(|r| format!("{:?}", r.display().to_string()))
            .collect();
        let text = format!(
            "data_dir = \"{d}/data\"\n[[sources]]\ninclude = [\"{d}/logs/**/*.log\"]\nfollow_symlinks = \"{follow}\"\nsymlink_roots = [{}]\n[[sinks]]\ntype = \"stdout\"\n",
            roots.join(", ")
        );
        let config = dir.join("agent.toml");
        fs::write(&config, &text).unwrap();
        let s = Settings::from_toml(&config, &text, &|_| None).unwrap();
        Admission::new(&s.sources, s.agent_files)
    }

    struct Tree {
        _tmp: tempfile::TempDir,
        dir: PathBuf,
        logs: PathBuf,
    }

    /// `logs/app.log`, `logs/sub/inner.txt`, `outside/x.log`, `data/checkpoints.json`.
    fn tree() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let dir = fs::canonicalize(tmp.path()).unwrap();
        let logs = dir.join("logs");
        for d in ["logs/sub", "outside", "data"] {
            fs::create_dir_all(dir.join(d)).unwrap();
        }
        fs::write(logs.join("app.log"), b"app\n").unwrap();
        fs::write(logs.join("sub/inner.txt"), b"inner\n").unwrap();
        fs::write(dir.join("outside/x.log"), b"x\n").unwrap();
        fs::write(dir.join("data/checkpoints.json"), b"{}").unwrap();
        Tree { _tmp: tmp, dir, logs }
    }

    fn outcome(a: &Admission, path: &Path) -> &'static str {
        match a.open(path, 0) {
            Ok(_) => "open",
            Err(Refused::OutsideRoots { .. }) => "outside",
            Err(Refused::Link) => "link",
            Err(Refused::AgentFile) => "own",
            Err(Refused::NotRegular) => "not regular",
            Err(Refused::Io(_)) => "io",
        }
    }

    #[test]
    fn within_root_follows_links_under_the_globs_root_and_the_symlink_roots() {
        let t = tree();
        let a = admission(&t.dir, "within_root", &[]);
        symlink(t.logs.join("sub/inner.txt"), t.logs.join("inside.log")).unwrap();
        symlink(t.dir.join("outside/x.log"), t.logs.join("out.log")).unwrap();
        symlink(t.dir.join("outside"), t.logs.join("linked")).unwrap();
        symlink("/etc/passwd", t.logs.join("passwd.log")).unwrap();
        assert_eq!(outcome(&a, &t.logs.join("app.log")), "open");
        assert_eq!(outcome(&a, &t.logs.join("inside.log")), "open");
        assert_eq!(outcome(&a, &t.logs.join("out.log")), "outside");
        assert_eq!(outcome(&a, &t.logs.join("linked/x.log")), "outside");
        assert_eq!(outcome(&a, &t.logs.join("passwd.log")), "outside");
        let a = admission(&t.dir, "within_root", &[&t.dir.join("outside")]);
        assert_eq!(outcome(&a, &t.logs.join("out.log")), "open");
        assert_eq!(outcome(&a, &t.logs.join("linked/x.log")), "open");
        assert_eq!(outcome(&a, &t.logs.join("passwd.log")), "outside");
    }

    #[test]
    fn none_follows_no_link_and_any_follows_all_but_the_agents_own_files() {
        let t = tree();
        symlink(t.logs.join("sub/inner.txt"), t.logs.join("inside.log")).unwrap();
        symlink(t.dir.join("agent.toml"), t.logs.join("config.log")).unwrap();
        symlink(t.dir.join("data/checkpoints.json"), t.logs.join("ckpt.log")).unwrap();
        symlink(t.dir.join("outside"), t.logs.join("linked")).unwrap();
        let none = admission(&t.dir, "none", &[]);
        assert_eq!(outcome(&none, &t.logs.join("app.log")), "open");
        assert_eq!(outcome(&none, &t.logs.join("inside.log")), "link");
        assert_eq!(outcome(&none, &t.logs.join("linked/x.log")), "link");
        let any = admission(&t.dir, "any", &[]);
        assert_eq!(outcome(&any, &t.logs.join("inside.log")), "open");
        assert_eq!(outcome(&any, &t.logs.join("linked/x.log")), "open");
        assert_eq!(outcome(&any, &t.logs.join("config.log")), "own");
        assert_eq!(outcome(&any, &t.logs.join("ckpt.log")), "own");
        // A hard link is no link at all: only its inode says it is the config.
        fs::hard_link(t.dir.join("agent.toml"), t.logs.join("hard.log")).unwrap();
        assert_eq!(outcome(&none, &t.logs.join("hard.log")), "own");
    }

    #[test]
    fn a_link_to_a_fifo_or_a_device_is_refused_without_opening_it() {
        let t = tree();
        let fifo = t.dir.join("outside/fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo must be installed");
        assert!(made.success());
        symlink(&fifo, t.logs.join("fifo.log")).unwrap();
        symlink("/dev/zero", t.logs.join("zero.log")).unwrap();
        let any = admission(&t.dir, "any", &[]);
        assert_eq!(outcome(&any, &t.logs.join("fifo.log")), "not regular");
        assert_eq!(outcome(&any, &t.logs.join("zero.log")), "not regular");
    }
}
