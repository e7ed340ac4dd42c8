//! debrepo: a pinned Debian dependency closure, repackaged one RPM per .deb and
//! indexed as an rpm-md repository that libdnf resolves like any distribution's.
//!
//!   debrepo lock CLOSURE.toml     resolve the roots against the mirror, write the lock
//!   debrepo build CLOSURE.toml    fetch, check, convert, index (from the lock)
//!
//! The lock is CLOSURE.lock beside the definition. See docs/debian-packages.md.

mod closure;
mod convert;
mod deb;
mod fetch;
mod index;
mod maintscript;
mod repo;
mod resolve;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use fs_err as fs;

use closure::{Definition, Pin};

#[derive(Parser)]
#[command(
    about = "Repackage a pinned Debian closure as an RPM repository",
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Resolve the definition's roots against the mirror and (re)write its lock;
    /// prints what changed.
    Lock {
        /// The closure definition (NAME.toml); the lock is NAME.lock beside it.
        definition: PathBuf,
        /// Use apt's lists as they are (no `apt-get update`).
        #[arg(long)]
        no_update: bool,
        /// Print what would change, write nothing; exit 1 if anything would.
        #[arg(long)]
        check: bool,
    },
    /// Build the repository of the lock's packages under OUT (debs/, repo/, stamps/).
    Build {
        /// The closure definition (NAME.toml).
        definition: PathBuf,
        /// Where the .deb cache, the RPMs and the repository go.
        #[arg(long)]
        out: PathBuf,
    },
}

fn lock_path(def: &Path) -> PathBuf {
    def.with_extension("lock")
}

fn lock(definition: &Path, no_update: bool, check: bool) -> Result<bool> {
    let def = Definition::load(definition)?;
    if !no_update {
        fetch::apt_update()?;
    }
    let u = index::Universe::load()?;
    let set = resolve::resolve(&u, &def)
        .with_context(|| format!("resolving the closure of {}", definition.display()))?;
    let mut pins: Vec<Pin> = set
        .by_name
        .values()
        .map(|p| {
            Ok(Pin {
                name: p.name.clone(),
                version: p.version.to_string(),
                arch: p.architecture.clone(),
                sha256: p.sha256.clone().with_context(|| {
                    format!("apt's record of {} {} has no SHA256", p.name, p.version)
                })?,
            })
        })
        .collect::<Result<_>>()?;
    pins.sort();
    let path = lock_path(definition);
    let old = if path.exists() {
        closure::read_lock(&path)?
    } else {
        Vec::new()
    };
    let changes = closure::diff(&old, &pins);
    println!(
        "{} ({}): {} packages, {} change(s)",
        path.display(),
        def.description,
        pins.len(),
        changes.len()
    );
    for c in &changes {
        println!("  {c}");
    }
    if !check && !changes.is_empty() {
        let tmp = path.with_extension("lock.tmp");
        fs::write(&tmp, closure::render_lock(&pins))?;
        fs::rename(&tmp, &path)?;
    }
    Ok(changes.is_empty())
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.cmd {
        Cmd::Lock {
            definition,
            no_update,
            check,
        } => {
            let same = lock(&definition, no_update, check)?;
            if check && !same {
                std::process::exit(1);
            }
        }
        Cmd::Build { definition, out } => {
            let def = Definition::load(&definition)?;
            let lock = lock_path(&definition);
            let pins = closure::read_lock(&lock).with_context(|| {
                format!("reading {} (run `debrepo lock` first)", lock.display())
            })?;
            repo::build(&def, &pins, &out)
                .with_context(|| format!("building the repository of {}", definition.display()))?;
        }
    }
    Ok(())
}
