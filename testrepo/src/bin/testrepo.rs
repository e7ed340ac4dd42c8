//! Command-line access to the synthetic package set, for the compose benchmark.
//!
//! ```text
//! testrepo synthetic REPO_DIR [--packages N] [--files F] [--seed S]
//!     build the repository; print the package names, one per line
//! testrepo bump REPO_DIR INDEX [--packages N] [--files F] [--seed S]
//!     rebuild package INDEX of the same set with a new version and changed
//!     content into REPO_DIR, refresh the metadata; print its NEVRA
//! ```

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};

struct Args {
    command: String,
    repo: PathBuf,
    index: Option<usize>,
    packages: usize,
    files: usize,
    seed: u64,
}

fn parse_args() -> Result<Args> {
    let mut positional = Vec::new();
    let (mut packages, mut files, mut seed) = (300, 100, 1);
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .with_context(|| format!("{name} needs a value"))
                .and_then(|v| v.parse::<u64>().with_context(|| format!("{name} {v:?}")))
        };
        match arg.as_str() {
            "--packages" => packages = value("--packages")? as usize,
            "--files" => files = value("--files")? as usize,
            "--seed" => seed = value("--seed")?,
            _ if arg.starts_with("--") => bail!("unknown option {arg}"),
            _ => positional.push(arg),
        }
    }
    let mut positional = positional.into_iter();
    let (Some(command), Some(repo)) = (positional.next(), positional.next()) else {
        bail!(
            "usage: testrepo synthetic|bump REPO_DIR [INDEX] [--packages N] [--files F] [--seed S]"
        );
    };
    let index = positional
        .next()
        .map(|i| i.parse().with_context(|| format!("INDEX {i:?}")))
        .transpose()?;
    Ok(Args {
        command,
        repo: repo.into(),
        index,
        packages,
        files,
        seed,
    })
}

fn main() -> Result<()> {
    let args = parse_args()?;
    let start = Instant::now();
    let pkgs = testrepo::synthetic(args.packages, args.files, args.seed);
    let generated = start.elapsed().as_secs_f64();
    match (args.command.as_str(), args.index) {
        ("synthetic", None) => {
            testrepo::build_repo(&args.repo, &pkgs)?;
            let files: usize = pkgs.iter().map(|p| p.files.len() + p.dirs.len()).sum();
            eprintln!(
                "testrepo: built {} packages ({files} files and dirs) in {:.1} s \
                 (generating the content took {generated:.1} s)",
                pkgs.len(),
                start.elapsed().as_secs_f64()
            );
            for pkg in &pkgs {
                println!("{}", pkg.name);
            }
        }
        ("bump", Some(index)) => {
            let Some(old) = pkgs.get(index) else {
                bail!("no package {index} in a set of {}", pkgs.len());
            };
            let new = bumped(old);
            let repo = testrepo::Repo {
                dir: args.repo.canonicalize()?,
            };
            repo.add(std::slice::from_ref(&new))?;
            eprintln!(
                "testrepo: rebuilt {} as {} in {:.1} s",
                old.nevra(),
                new.nevra(),
                start.elapsed().as_secs_f64()
            );
            println!("{}", new.nevra());
        }
        _ => bail!("usage: testrepo synthetic REPO_DIR | testrepo bump REPO_DIR INDEX"),
    }
    Ok(())
}

/// A new upstream version: version gains `.1`, the first regular file changes.
fn bumped(old: &testrepo::Package) -> testrepo::Package {
    let mut new = old.clone();
    new.version = format!("{}.1", old.version);
    if let Some(testrepo::FileEntry::File { content, .. }) = new
        .files
        .iter_mut()
        .find(|f| matches!(f, testrepo::FileEntry::File { .. }))
    {
        content.extend_from_slice(format!("# updated to {}\n", new.version).as_bytes());
    }
    new
}
