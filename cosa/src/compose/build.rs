//! `cosa build` as one stage: fetch, skip when nothing changed, compose, record the build.

use anyhow::{bail, Context, Result};

use super::{fetch, pkgcache, record, ComposeRequest, Composed};
use crate::builds::history::{build_ref, next_version, BuildsJson};
use crate::builds::{History, Meta, Workdir};
use crate::config::treefile::Treefile;

/// How to build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// Build even when the inputs match the previous build's.
    pub force: bool,
    /// The version to give the build; derived from `automatic-version-prefix` when unset.
    pub version: Option<String>,
    /// Refuse packages the config's lockfile does not pin.
    pub strict: bool,
    /// Wait for another build in the workdir instead of failing.
    pub wait: bool,
}

/// What `build` did.
pub enum BuildOutcome {
    /// The inputs of the newest build are unchanged: nothing was built.
    Unchanged {
        previous: String,
    },
    Built(Built),
}

/// A new build, recorded in builds.json.
pub struct Built {
    pub version: String,
    pub composed: Composed,
    /// Packages in the build.
    pub packages: usize,
}

/// Fetch and compose the treefile into a new build of the workdir, unless its inputs
/// are those of the newest build.
pub fn build(wd: &Workdir, tf: &Treefile, o: &BuildOptions) -> Result<BuildOutcome> {
    let _lock = wd.lock("build", o.wait)?;
    let history = History::new(wd.builds_dir());
    history.clean_staging()?;
    let arch = tf.basearch.as_str();

    let fetched = fetch::fetch(wd, tf, o.strict)?;
    let repo = pkgcache::open_repo(&wd.repo_path())?;
    let layers = super::commit_layers(&repo, wd, tf)?;
    let inputhash = super::input_hash(tf, &fetched.packages, &layers)?;

    let builds = history.load()?;
    let previous = previous_build(&history, &builds, arch)?;
    if let Some((id, meta)) = &previous {
        if meta.rpm_ostree_inputhash.as_deref() == Some(inputhash.as_str()) && !o.force {
            return Ok(BuildOutcome::Unchanged {
                previous: id.clone(),
            });
        }
    }
    let version = pick_version(tf, &builds, o.version.as_deref())?;
    let timestamp = source_date_epoch();
    let parent = previous.as_ref().map(|(_, m)| m.ostree_commit.clone());
    let tf_ref = tf.r#ref.clone().unwrap_or_else(|| format!("cosa/{arch}"));
    let req = ComposeRequest {
        tf,
        packages: &fetched.packages,
        layers: &layers,
        version: &version,
        inputhash: &inputhash,
        parent: parent.as_deref(),
        timestamp,
    };
    let refs = [tf_ref.clone(), build_ref(&version)];
    let composed = super::compose(wd, &repo, &req, &refs)?;

    let rec = record::Recording {
        repo: &repo,
        tf,
        ostree_ref: &tf_ref,
        packages: &fetched.packages,
        overrides_active: fetched.overrides_active,
        previous: previous.as_ref().map(|(id, _)| id.as_str()),
        config_dir: &wd.config_dir(),
    };
    record::record(&history, &rec, &version, &composed, &inputhash, timestamp)
        .with_context(|| format!("recording build {version}"))?;
    Ok(BuildOutcome::Built(Built {
        version,
        composed,
        packages: fetched.packages.len(),
    }))
}

/// The newest build and its meta.json, if any.
fn previous_build(
    history: &History,
    builds: &BuildsJson,
    arch: &str,
) -> Result<Option<(String, Meta)>> {
    builds
        .builds
        .first()
        .map(|b| Ok((b.id.clone(), history.load_meta(&b.id, arch)?)))
        .transpose()
}

/// The requested version, or the next automatic one; never one that exists.
fn pick_version(tf: &Treefile, builds: &BuildsJson, requested: Option<&str>) -> Result<String> {
    let ids: Vec<String> = builds.builds.iter().map(|b| b.id.clone()).collect();
    let version = match requested {
        Some(v) => v.to_string(),
        None => next_version(
            tf.automatic_version_prefix.as_deref(),
            &ids,
            chrono::Utc::now(),
        )?,
    };
    if ids.contains(&version) {
        bail!("a build with version {version} already exists");
    }
    Ok(version)
}

/// The commit timestamp: `SOURCE_DATE_EPOCH` for reproducible builds, else now.
fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp() as u64)
}
