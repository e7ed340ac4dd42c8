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
        for pin in &missing {
            let served = u
                .versions(&pin.name)
                .iter()
                .any(|p| p.version.to_string() == pin.version);
            if !served {
                return Err(not_served(pin, u));
            }
        }
        // apt fetches a batch over parallel connections; one call per package
        // would wait on each.
        for (i, batch) in missing.chunks(50).enumerate() {
            eprintln!(
                "debrepo: downloading {}-{} of {}",
                i * 50 + 1,
                i * 50 + batch.len(),
                missing.len()
            );
            download(batch, dir)?;
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

/// apt's name for a downloaded .deb: the epoch's colon is escaped.
fn apt_file_name(pin: &Pin) -> String {
    format!(
        "{}_{}_{}.deb",
        pin.name,
        pin.version.replace(':', "%3a"),
        pin.arch
    )
}

/// Download `pins` into `dir`, each checked against its pin before it enters
/// the cache: a wrong file never lands there.
fn download(pins: &[&Pin], dir: &Path) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix(".fetch.")
        .tempdir_in(dir)
        .with_context(|| format!("creating a download directory in {}", dir.display()))?;
    cmdext::command("apt-get")
        .args(["download", "-q=2"])
        .args(pins.iter().map(|p| format!("{}={}", p.name, p.version)))
        .current_dir(tmp.path())
        .run()
        .context("downloading the pinned .debs")?;
    for pin in pins {
        let got = tmp.path().join(apt_file_name(pin));
        if !got.exists() {
            bail!(
                "apt-get download {}={} produced no {}",
                pin.name,
                pin.version,
                apt_file_name(pin)
            );
        }
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
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_escapes_the_epoch_in_file_names_and_the_cache_drops_it() {
        let pin = Pin {
            name: "openssh-server".into(),
            version: "1:9.2p1-2+deb12u10".into(),
            arch: "amd64".into(),
            sha256: String::new(),
        };
        assert_eq!(
            apt_file_name(&pin),
            "openssh-server_1%3a9.2p1-2+deb12u10_amd64.deb"
        );
        assert_eq!(pin.file_name(), "openssh-server_9.2p1-2+deb12u10_amd64.deb");
    }
}
