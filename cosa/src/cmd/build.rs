//! `cosa build`: compose the config into a new build (or say "No changes").

use std::fs;

use anyhow::{Context, Result};
use serde_json::json;

use crate::builds::{History, Meta, Workdir};
use crate::cli::{BuildOpts, GlobalOpts};
use crate::compose::{self, fetch};
use crate::config::lockfile::Lockfile;

use super::load_treefile;

/// The package set of a build, from the lockfile it recorded.
fn build_packages(dir: &std::path::Path, arch: &str) -> Option<Lockfile> {
    Lockfile::load(&dir.join(fetch::generated_lockfile_name(arch))).ok()
}

/// rpm-ostree's pkgdiff shape: `[name, kind, {PreviousPackage, NewPackage}]`,
/// kind 1 added, 2 removed, 3 upgraded or downgraded.
pub fn pkgdiff(old: &Lockfile, new: &Lockfile) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    let split = |n: &str, evra: &str| {
        json!([
            n,
            evra.rsplit_once('.').map_or(evra, |x| x.0),
            evra.rsplit_once('.').map_or("", |x| x.1)
        ])
    };
    for (n, p) in &new.packages {
        match old.packages.get(n) {
            None => out.push(json!([n, 1, {"NewPackage": split(n, &p.evra)}])),
            Some(o) if o.evra != p.evra => out.push(json!([n, 3, {"PreviousPackage": split(n, &o.evra), "NewPackage": split(n, &p.evra)}])),
            _ => {}
        }
    }
    for (n, o) in &old.packages {
        if !new.packages.contains_key(n) {
            out.push(json!([n, 2, {"PreviousPackage": split(n, &o.evra)}]));
        }
    }
    out
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
        if meta.get_str("rpm-ostree-inputhash") == Some(inputhash.as_str()) && !o.force {
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
    let parent = previous
        .as_ref()
        .and_then(|(_, m)| m.ostree_commit().map(str::to_string));
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
    let name = tf_ref.split('/').next().unwrap_or("cosa").to_string();
    let mut meta = Meta::default();
    meta.set("buildid", version.clone());
    meta.set("name", name.clone());
    meta.set("summary", format!("{name} {version}"));
    meta.set("ref", tf_ref.clone());
    meta.set("ostree-commit", composed.commit.clone());
    meta.set("ostree-content-checksum", composed.content_checksum.clone());
    meta.set("ostree-version", version.clone());
    meta.set(
        "ostree-timestamp",
        crate::builds::history::rfc3339(timestamp),
    );
    meta.set("rpm-ostree-inputhash", inputhash.clone());
    meta.set("coreos-assembler.basearch", arch.clone());
    meta.set(
        "coreos-assembler.build-timestamp",
        crate::builds::history::now_rfc3339(),
    );
    if fetched.overrides_active {
        meta.set("coreos-assembler.overrides-active", true);
    }
    if let Some((rev, dirty)) = git_state(&wd.config_dir()) {
        meta.set("coreos-assembler.config-gitrev", rev);
        meta.set("coreos-assembler.config-dirty", dirty.to_string());
    }
    if let Some((id, _)) = &previous {
        if let Some(old) = build_packages(&history.build_dir(id, &arch), &arch) {
            meta.set("pkgdiff", pkgdiff(&old, &lock));
        }
    }
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
