//! Getting the pinned .debs: from the cache when its checksum matches, else from
//! the mirror through `apt-get download` (apt's sources, proxies and keys).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cmdext::CommandRunExt;
use fs_err as fs;
use sha2::{Digest, Sha256};

use crate::closure::Pin;
use crate::index::Universe;

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = fs::File::open(path)?;
    let mut h = Sha256::new();
    std::io::copy(&mut f, &mut h).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex::encode(h.finalize()))
}

/// Refresh apt's lists (needs the network).
pub fn apt_update() -> Result<()> {
    eprintln!("debrepo: apt-get update");
    cmdext::command("apt-get")
        .args(["update", "-qq"])
        .run()
        .context("refreshing apt's package lists")
}

/// The error for a pin the mirror does not serve (any more).
fn not_served(pin: &Pin, u: &Universe) -> anyhow::Error {
    let served: Vec<String> = u
        .versions(&pin.name)
        .iter()
        .map(|p| p.version.to_string())
        .collect();
    if served.is_empty() {
        anyhow::anyhow!(
            "{} {} is pinned, but the mirror serves no package {}; refresh the pins (packages/refresh-pins)",
            pin.name,
            pin.version,
            pin.name
        )
    } else {
        anyhow::anyhow!(
            "{} {} is pinned, but the mirror serves only {}; refresh the pins (packages/refresh-pins)",
            pin.name,
            pin.version,
            served.join(", ")
        )
    }
}

/// Make sure every pin's .deb is in `dir` with its pinned checksum; returns
/// their paths, in pin order. `universe` is loaded only when one is missing.
pub fn fetch_all(
    pins: &[Pin],
    dir: &Path,
    universe: &mut Option<Universe>,
) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let mut paths = Vec::with_capacity(pins.len());
    let missing: Vec<&Pin> = pins
        .iter()
        .filter(|p| !dir.join(p.file_name()).exists())
        .collect();
    if !missing.is_empty() {
        eprintln!("debrepo: fetching {} .deb(s)", missing.len());
        if universe.is_none() {
            *universe = Some(Universe::load()?);
        }
        let u = universe.as_ref().expect("loaded above");
        for (i, pin) in missing.iter().enumerate() {
            let served = u
                .versions(&pin.name)
                .iter()
                .any(|p| p.version.to_string() == pin.version);
            if !served {
                return Err(not_served(pin, u));
            }
            eprintln!(
                "debrepo: [{}/{}] {}={}",
                i + 1,
                missing.len(),
                pin.name,
                pin.version
            );
            download(pin, dir)?;
        }
    }
    for pin in pins {
        let path = dir.join(pin.file_name());
        let got = sha256_file(&path)?;
        if got != pin.sha256 {
            bail!(
                "{} has SHA-256 {got}, but {} {} is pinned with {}: the mirror rebuilt it, or the cache is damaged (delete the file to fetch it again)",
                path.display(),
                pin.name,
                pin.version,
                pin.sha256
            );
        }
        paths.push(path);
    }
    Ok(paths)
}

fn download(pin: &Pin, dir: &Path) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix(".fetch.")
        .tempdir_in(dir)
        .with_context(|| format!("creating a download directory in {}", dir.display()))?;
    cmdext::command("apt-get")
        .args(["download", "-q=2"])
        .arg(format!("{}={}", pin.name, pin.version))
        .current_dir(tmp.path())
        .run()
        .with_context(|| format!("downloading {} {}", pin.name, pin.version))?;
    let got = fs::read_dir(tmp.path())?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .with_context(|| {
            format!(
                "apt-get download {}={} produced no .deb",
                pin.name, pin.version
            )
        })?;
    // Checked before it enters the cache: a wrong file never lands there.
    let sum = sha256_file(&got)?;
    if sum != pin.sha256 {
        bail!(
            "the mirror's {} {} has SHA-256 {sum}, not the pinned {}",
            pin.name,
            pin.version,
            pin.sha256
        );
    }
    fs::rename(&got, dir.join(pin.file_name()))?;
    Ok(())
}
