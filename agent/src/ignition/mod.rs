//! `demo-agent firstboot`: Ignition spec 3.0.0–3.4.0, the subset a VM of the
//! demo stream needs. Parse, then validate everything against the target root
//! (plan), then apply: an invalid config writes nothing.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use cmdext::CommandRunExt;

use crate::console::Console;

mod apply;
mod dataurl;
#[cfg(test)]
mod lookup_tests;
mod merge;
mod passwd;
mod plan;
mod schema;
#[cfg(test)]
mod tests;
mod units;
mod users;

pub use units::UNITS_D;

/// Where QEMU's `-fw_cfg name=opt/com.coreos/config,file=…` shows up.
pub const FW_CFG_CONFIG: &str = "/sys/firmware/qemu_fw_cfg/by_name/opt/com.coreos/config/raw";

/// Where an installer (coreos-installer, demo-installer) leaves the installed
/// system's config, relative to the root being provisioned.
pub const INSTALLED_CONFIG: &str = "boot/ignition/config.ign";

/// Where a live system's embedded config is placed (by demo-installer's live hook
/// from the media's Day-0 customization), relative to the root.
pub const LIVE_CONFIG: &str = "run/ignition/live.ign";

#[derive(Debug, clap::Args)]
pub struct FirstbootOpts {
    /// Root of the system to provision.
    #[arg(long, default_value = "/")]
    root: PathBuf,
    /// Read the config from this file instead of fw_cfg, /boot/ignition/config.ign
    /// or /run/ignition/live.ign (the first of them that exists).
    #[arg(long)]
    config: Option<PathBuf>,
}

/// Totals printed on success.
pub use plan::Counts;

/// Parses and version-checks a config, folding in the configs it references
/// (`ignition.config`); returns it with its spec minor version.
fn parse(bytes: &[u8]) -> Result<(schema::Config, u32)> {
    let v: serde_json::Value = serde_json::from_slice(bytes).context("config is not valid JSON")?;
    let cfg = typed(&merge::resolve(v, 0)?)?;
    let minor = minor(&cfg.ignition.version)?;
    Ok((cfg, minor))
}

/// The spec minor version of `v`, which must be one this agent accepts.
fn version(v: &serde_json::Value) -> Result<u32> {
    let version = v
        .get("ignition")
        .and_then(|i| i.get("version"))
        .ok_or_else(|| anyhow!("ignition.version: missing"))?;
    minor(
        version
            .as_str()
            .ok_or_else(|| anyhow!("ignition.version: not a string"))?,
    )
}

/// The minor number of spec `version`, if this agent accepts it.
fn minor(version: &str) -> Result<u32> {
    match schema::VERSIONS.iter().find(|(s, _)| *s == version) {
        Some((_, minor)) => Ok(*minor),
        None => bail!(
            "ignition.version: unsupported config version {version:?} (accepted: {})",
            schema::VERSIONS
                .iter()
                .map(|(s, _)| *s)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `v` as typed config: an unknown key or a wrong type is an error naming its path.
fn typed(v: &serde_json::Value) -> Result<schema::Config> {
    serde_path_to_error::deserialize(v).map_err(|e| {
        let path = e.path().to_string();
        anyhow!("{path}: {}", e.into_inner())
    })
}

/// Validates and applies `bytes` under `root`.
pub fn provision(bytes: &[u8], root: &Path, console: Console) -> Result<Counts> {
    let (cfg, minor) = parse(bytes)?;
    let plan = plan::plan(&cfg, minor, root)?;
    for w in &plan.warnings {
        console.say(&format!("ignition: warning: {w}"));
    }
    let applier = apply::Applier::new(root);
    for op in &plan.ops {
        applier.apply(op)?;
    }
    Ok(plan.counts)
}

/// Reads the config: `--config`, else the first of fw_cfg (loading qemu_fw_cfg if
/// needed), the installer's `/boot/ignition/config.ign`, the live media's
/// `/run/ignition/live.ign` that exists and is not blank.
fn read_config(opts: &FirstbootOpts) -> Result<Option<Vec<u8>>> {
    let read = |path: &Path, required: bool| -> Result<Option<Vec<u8>>> {
        match fs_err::read(path) {
            Ok(b) if b.iter().all(u8::is_ascii_whitespace) => Ok(None),
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    };
    if let Some(p) = &opts.config {
        return read(p, true);
    }
    if opts.root == Path::new("/") && !Path::new("/sys/firmware/qemu_fw_cfg").exists() {
        // Best effort: the module may be built in; the read below reports what is missing.
        let _ = cmdext::command("modprobe").arg("qemu_fw_cfg").run();
    }
    let sources: [PathBuf; 3] = [
        PathBuf::from(FW_CFG_CONFIG),
        opts.root.join(INSTALLED_CONFIG),
        opts.root.join(LIVE_CONFIG),
    ];
    for p in &sources {
        if let Some(b) = read(p, false)? {
            return Ok(Some(b));
        }
    }
    Ok(None)
}

pub fn firstboot(opts: &FirstbootOpts) -> Result<()> {
    let console = if opts.root == Path::new("/") {
        Console::System
    } else {
        Console::Stderr
    };
    let r = read_config(opts).and_then(|c| match c {
        None => Ok(None),
        Some(bytes) => provision(&bytes, &opts.root, console).map(Some),
    });
    match r {
        Ok(None) => {
            console.say("ignition: no config provided, nothing to do");
            Ok(())
        }
        Ok(Some(c)) => {
            console.say(&format!(
                "ignition: applied {} files, {} users, {} units",
                c.files, c.users, c.units
            ));
            Ok(())
        }
        Err(e) => {
            console.say(&format!("ignition: FAILED: {e:#}"));
            Err(e.context("first-boot provisioning failed"))
        }
    }
}
