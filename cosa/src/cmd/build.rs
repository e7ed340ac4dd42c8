//! `cosa build`: compose the config into a new build (or say "No changes").

use std::fs;

use anyhow::{Context, Result};

use crate::builds::meta::pkgdiff::pkgdiff;
use crate::builds::{History, Workdir};
use crate::cli::{BuildOpts, GlobalOpts};
use crate::compose::{self, fetch, record};
use crate::config::lockfile::Lockfile;

use super::load_treefile;

/// The package set of a build, from the lockfile it recorded.
fn build_packages(dir: &std::path::Path, arch: &str) -> Option<Lockfile> {
    Lockfile::load(&dir.join(fetch::generated_lockfile_name(arch))).ok()
}

fn git_state(dir: &std::path::Path) -> Option<(String, bool)> {
    use cmdext::CommandRunExt;
    let rev = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["rev-parse", "HEAD"])
        .run_get_string()
        .ok()?;
    let status = std::process::Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["status", "--porcelain", "--", "."])
        .run_get_string()
        .ok()?;
    Some((rev.trim().to_string(), !status.trim().is_empty()))
}

pub fn run(g: &GlobalOpts, o: &BuildOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let _lock = wd.lock("build", o.wait)?;
    let history = History::new(wd.builds_dir());
    history.clean_staging()?;
    let tf = load_treefile(&wd)?;
    let arch = tf.basearch.clone();

    let fetched = fetch::fetch(&wd, &tf, o.strict)?;
    let lock = Lockfile::generated(&fetched.packages);
    let repo = compose::pkgcache::open_repo(&wd.repo_path())?;
    let layers = compose::commit_layers(&repo, &wd, &tf)?;
    let inputhash = compose::input_hash(&tf, &fetched.packages, &layers)?;

    let builds = history.load()?;
    let previous = match builds.builds.first() {
        Some(b) => Some((b.id.clone(), history.load_meta(&b.id, &arch)?)),
        None => None,
    };
    if let Some((id, meta)) = &previous {
        if meta.rpm_ostree_inputhash.as_deref() == Some(inputhash.as_str()) && !o.force {
            println!("No changes (inputs of build {id} are unchanged; --force to build anyway)");
            return Ok(());
        }
    }

    let version = match &o.version {
        Some(v) => v.clone(),
        None => {
            let ids: Vec<String> = builds.builds.iter().map(|b| b.id.clone()).collect();
            crate::builds::history::next_version(
                tf.automatic_version_prefix.as_deref(),
                &ids,
                chrono::Utc::now(),
            )?
        }
    };
    if builds.builds.iter().any(|b| b.id == version) {
        anyhow::bail!("a build with version {version} already exists");
    }
    let timestamp = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| chrono::Utc::now().timestamp() as u64);
    let parent = previous.as_ref().map(|(_, m)| m.ostree_commit.clone());
    let tf_ref = tf.r#ref.clone().unwrap_or_else(|| format!("cosa/{arch}"));
    let req = compose::ComposeRequest {
        tf: &tf,
        packages: &fetched.packages,
        layers: &layers,
        version: &version,
        inputhash: &inputhash,
        parent: parent.as_deref(),
        timestamp,
    };
    let refs = [tf_ref.clone(), build_ref(&version)];
    let composed = compose::compose(&wd, &repo, &req, &refs)?;

    let staging = history.staging_dir()?;
    let dir = staging.path();
    let changes = previous.as_ref().and_then(|(id, _)| {
        build_packages(&history.build_dir(id, &arch), &arch).map(|old| pkgdiff(&old, &lock))
    });
    let meta = record::meta(&record::ComposedBuild {
        version: &version,
        ostree_ref: &tf_ref,
        composed: &composed,
        inputhash: &inputhash,
        timestamp,
        arch: &arch,
        overrides_active: fetched.overrides_active,
        config_git: git_state(&wd.config_dir()),
        pkgdiff: changes,
    });
    meta.save(&dir.join("meta.json"))?;
    let cm = compose::commit::commit_metadata_json(&repo, &composed.commit)?;
    fs::write(dir.join("commitmeta.json"), serde_json::to_vec_pretty(&cm)?)?;
    fs::write(
        dir.join(fetch::generated_lockfile_name(&arch)),
        lock.to_json()?,
    )?;
    fs::write(dir.join("manifest.json"), serde_json::to_vec_pretty(&tf)?)?;
    let staging_path = staging.keep();
    history
        .commit_build(&staging_path, &version, &arch)
        .with_context(|| format!("recording build {version}"))?;

    println!(
        "Built {version}: commit {} ({} packages: {} imported, {} from cache{})",
        composed.commit,
        fetched.packages.len(),
        composed.import.imported,
        composed.import.reused,
        composed
            .kernel
            .map(|k| format!("; kernel {k}"))
            .unwrap_or_default()
    );
    Ok(())
}

/// The repo ref that keeps a build's commit alive until the build is pruned.
pub fn build_ref(id: &str) -> String {
    format!("cosa/build/{id}")
}
