//! Build-history chores: `cosa list`, `meta`, `diff`, `prune`, `tag`.

use anyhow::{bail, Context, Result};

use crate::builds::diff::{self, Differ};
use crate::builds::retention::{Policy, StreamPolicy};
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
    let (wd, h) = open(g)?;
    let asked = [
        (o.rpms || o.rpms_json, Differ::Rpms),
        (o.ostree, Differ::Ostree),
        (o.metal_part_table, Differ::MetalPartTable),
        (o.live_iso_ls, Differ::LiveIsoLs),
        (o.initrd, Differ::Initrd),
    ];
    let differs: Vec<Differ> = asked
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, d)| *d)
        .collect();
    if differs.is_empty() {
        let mut flags: Vec<String> = Differ::ALL
            .iter()
            .map(|d| format!("--{}", d.name()))
            .collect();
        flags.insert(1, "--rpms-json".into());
        bail!("say what to compare: {}", flags.join(", "));
    }
    let (from, to) = diff::resolve_pair(&h, o.from.as_deref(), o.to.as_deref())?;
    let report = diff::diff(&wd, Arch::host()?.name(), &from, &to, &differs)?;
    if o.json || o.rpms_json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        report.write_text(&mut std::io::stdout().lock())?;
    }
    Ok(())
}

/// The stream a workdir's builds belong to: its config's `stream` variable.
fn config_stream(wd: &Workdir, arch: &str) -> Result<String> {
    let path = wd.treefile_path()?;
    let tf = crate::config::treefile::Treefile::load(&path, arch)?;
    match tf.variables.get("stream") {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        _ => bail!(
            "{} sets no `stream` variable: say which stream's policy applies with --stream",
            path.display()
        ),
    }
}

pub fn prune(g: &GlobalOpts, o: &PruneOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let arch = Arch::host()?.name();
    let (policy, stream) = match &o.policy {
        None => (StreamPolicy::keep_last(o.keep), None),
        Some(file) => {
            let p = Policy::load(file)?;
            let stream = match &o.stream {
                Some(s) => s.clone(),
                None => config_stream(&wd, arch)?,
            };
            let sp = p
                .stream(&stream)
                .with_context(|| format!("reading prune policy {}", file.display()))?
                .clone();
            (sp, Some(stream))
        }
    };
    if o.keep == 0 && o.policy.is_none() {
        bail!("--keep 0 would delete every build; the newest is always kept (say --keep 1)");
    }
    let opts = PruneOptions {
        policy,
        dry_run: o.dry_run,
    };
    let p = crate::compose::prune::prune(&wd, arch, &opts)?;
    if o.json {
        let builds: Vec<_> = p
            .decisions
            .iter()
            .map(|(id, why)| {
                serde_json::json!({
                    "id": id,
                    "action": if why.is_empty() { "delete" } else { "keep" },
                    "kept-because": why.iter().map(|w| w.as_str()).collect::<Vec<_>>(),
                })
            })
            .collect();
        let out = serde_json::json!({
            "stream": stream, "dry-run": o.dry_run, "builds": builds,
            "leftovers": p.leftovers,
            "freed-build-bytes": p.freed_build_bytes,
            "dropped-packages": p.dropped_packages,
            "freed-ostree-bytes": p.freed_bytes,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    for (id, why) in &p.decisions {
        if !why.is_empty() {
            let why: Vec<_> = why.iter().map(|w| w.as_str()).collect();
            println!("Keeping build {id} ({})", why.join(", "));
        }
    }
    if p.builds.is_empty() && p.leftovers.is_empty() {
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
    for d in &p.leftovers {
        println!(
            "{verb} builds/{d}, which builds.json does not list (left by an interrupted command)"
        );
    }
    if o.dry_run {
        println!(
            "Would free {} bytes of build artifacts (and the ostree objects and cached packages only they use)",
            p.freed_build_bytes
        );
        return Ok(());
    }
    println!(
        "Dropped {} cached packages no remaining build uses",
        p.dropped_packages
    );
    println!(
        "Pruned {} builds; freed {} bytes of build artifacts and {} bytes of ostree objects",
        p.builds.len(),
        p.freed_build_bytes,
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
