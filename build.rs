//! Build script: puts the git commit of the source into `tailship --version`
//! (`TAILSHIP_GIT_COMMIT`), or `unknown` where there is none to ask (a source archive, a
//! Docker build context without `.git`, no git installed).

use std::path::Path;
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let commit = git(&["rev-parse", "--short", "HEAD"]);
    println!(
        "cargo:rustc-env=TAILSHIP_GIT_COMMIT={}",
        commit.as_deref().unwrap_or("unknown")
    );
    if commit.is_none() {
        return;
    }
    // Run again when HEAD moves: a commit, a checkout, a reset. That is HEAD, the branch's ref
    // file (or, while `git gc` has packed it away, its directory, where the next commit writes
    // it again) or packed-refs. Paths from git, so worktrees work too.
    let mut watch = vec![git(&["rev-parse", "--git-path", "HEAD"])];
    if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
        let file = git(&["rev-parse", "--git-path", &branch]);
        watch.push(file.map(|f| match Path::new(&f).parent() {
            Some(dir) if !Path::new(&f).exists() => dir.display().to_string(),
            _ => f,
        }));
    }
    watch.push(git(&["rev-parse", "--git-path", "packed-refs"]));
    for path in watch.into_iter().flatten() {
        if Path::new(&path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
