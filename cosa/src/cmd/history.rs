//! Build-history chores: `cosa list`, `meta`, `diff`, `prune`, `tag`.

use anyhow::{bail, Context, Result};

use crate::builds::meta::pkgdiff::{pkgdiff, PkgDiff, PkgDiffKind, PkgEvra};
use crate::builds::{History, Workdir};
use crate::cli::{DiffOpts, GlobalOpts, ListOpts, MetaOpts, PruneOpts, TagAction, TagOpts};
use crate::compose::prune::PruneOptions;

use crate::arch::Arch;

fn open(g: &GlobalOpts) -> Result<(Workdir, History)> {
    let wd = Workdir::open(&g.workdir)?;
    let h = History::new(wd.builds_dir());
    Ok((wd, h))
}

pub fn list(g: &GlobalOpts, o: &ListOpts) -> Result<()> {
    let (_, h) = open(g)?;
    let b = h.load()?;
    let arch = Arch::host()?.name();
    let mut rows = Vec::new();
    for e in &b.builds {
        let m = h.load_meta(&e.id, arch)?;
        let tags: Vec<&str> = b
            .tags
            .iter()
            .filter(|t| t.target == e.id)
            .map(|t| t.name.as_str())
            .collect();
        let images: Vec<&String> = m.images.keys().collect();
        rows.push(serde_json::json!({
            "id": e.id, "arches": e.arches, "timestamp": m.build_timestamp,
            "commit": m.ostree_commit, "tags": tags, "images": images,
        }));
    }
    if o.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    if rows.is_empty() {
        println!("No builds.");
    }
    for r in rows {
        println!("{}", r["id"].as_str().unwrap_or_default());
        println!("   Timestamp: {}", r["timestamp"].as_str().unwrap_or("-"));
        println!("   Commit: {}", r["commit"].as_str().unwrap_or("-"));
        let list = |k: &str| {
            r[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default()
        };
        if !list("tags").is_empty() {
            println!("   Tags: {}", list("tags"));
        }
        if !list("images").is_empty() {
            println!("   Artifacts: {}", list("images"));
        }
    }
    Ok(())
}

pub fn meta(g: &GlobalOpts, o: &MetaOpts) -> Result<()> {
    let (_, h) = open(g)?;
    let id = h.resolve_id(o.build.as_deref())?;
    let m = h.load_meta(&id, Arch::host()?.name())?;
    match &o.get {
        None => println!("{}", serde_json::to_string_pretty(&m)?),
        Some(k) => match m.get(k) {
            Some(serde_json::Value::String(s)) => println!("{s}"),
            Some(v) => println!("{}", serde_json::to_string_pretty(&v)?),
            None => bail!("build {id} has no key {k} in meta.json"),
        },
    }
    Ok(())
}

pub fn diff(g: &GlobalOpts, o: &DiffOpts) -> Result<()> {
    let (_, h) = open(g)?;
    if !o.rpms {
        bail!("say what to compare: --rpms");
    }
    let b = h.load()?;
    let to = h.resolve_id(o.to.as_deref())?;
    let from = match &o.from {
        Some(f) => h.resolve_id(Some(f))?,
        None => {
            let i = b
                .builds
                .iter()
                .position(|e| e.id == to)
                .context("build not in builds.json")?;
            b.builds
                .get(i + 1)
                .map(|e| e.id.clone())
                .with_context(|| format!("build {to} has no older build to compare with"))?
        }
    };
    let arch = Arch::host()?.name();
    let d = pkgdiff(
        &h.build_lockfile(&from, arch)?,
        &h.build_lockfile(&to, arch)?,
    );
    if o.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    for PkgDiff(name, kind, v) in &d {
        let evr = |p: &Option<PkgEvra>| p.as_ref().map_or("", PkgEvra::evr).to_string();
        match kind {
            PkgDiffKind::Added => println!("+ {name} {}", evr(&v.new_package)),
            PkgDiffKind::Removed => println!("- {name} {}", evr(&v.previous_package)),
            PkgDiffKind::Changed => println!(
                "~ {name} {} -> {}",
                evr(&v.previous_package),
                evr(&v.new_package)
            ),
        }
    }
    if d.is_empty() {
        println!("No package differences between {from} and {to}.");
    }
    Ok(())
}

pub fn prune(g: &GlobalOpts, o: &PruneOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let opts = PruneOptions {
        keep: o.keep,
        dry_run: o.dry_run,
    };
    let p = crate::compose::prune::prune(&wd, Arch::host()?.name(), &opts)?;
    if p.builds.is_empty() {
        println!("Nothing to prune.");
        return Ok(());
    }
    let verb = if o.dry_run {
        "Would delete"
    } else {
        "Deleting"
    };
    for id in &p.builds {
        println!("{verb} build {id}");
    }
    if o.dry_run {
        return Ok(());
    }
    println!(
        "Dropped {} cached packages no remaining build uses",
        p.dropped_packages
    );
    println!(
        "Pruned {} builds; freed {} bytes of ostree objects",
        p.builds.len(),
        p.freed_bytes
    );
    Ok(())
}

pub fn tag(g: &GlobalOpts, o: &TagOpts) -> Result<()> {
    let (wd, h) = open(g)?;
    let _lock = wd.lock("tag", true)?;
    match &o.action {
        TagAction::List => {
            for t in &h.load()?.tags {
                println!("{}\t{}\t{}", t.name, t.target, t.created);
            }
        }
        TagAction::Add { tag, build } => {
            let target = h.add_tag(tag, build.as_deref())?;
            println!("Tagged {target} as {tag}");
        }
        TagAction::Delete { tag } => {
            h.delete_tag(tag)?;
            println!("Deleted tag {tag}");
        }
    }
    Ok(())
}
