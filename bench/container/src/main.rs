//! `cosa build-container` against ostree-ext's `container::encapsulate` on the same
//! commits of one workdir, side by side, alternating runs.
//!
//! usage: bench-container WORKDIR COSA [RUNS] [MAX_LAYERS]
//!
//! Timed on the newest build: `cosa build-container --force` (the binary, so process
//! start and meta.json writes count against cosa) and ostree-ext writing an
//! `oci-archive:` twice: as configured by default (one content layer) and chunked like
//! rpm-ostree does it (content metadata from the packages, `max_layers`). ostree-ext's
//! content metadata is computed before its clock starts. With an older build in the
//! workdir, also measures how much of the new image's bytes sit in layers whose
//! digests did not change (cosa; ostree-ext chunked with the prior manifest).

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use std::rc::Rc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cmdext::{command, CommandRunExt};
use ostree_ext::chunking::ObjectMetaSized;
use ostree_ext::container::{self as oc, ImageReference, Transport};
use ostree_ext::objectsource::{ObjectMeta, ObjectSourceMeta};
use serde_json::Value;

struct Build {
    id: String,
    commit: String,
    dir: PathBuf,
}

fn builds(wd: &Path) -> Result<Vec<Build>> {
    let bj: Value = serde_json::from_slice(&std::fs::read(wd.join("builds/builds.json"))?)?;
    let arch = std::env::consts::ARCH;
    let mut out = Vec::new();
    for b in bj["builds"].as_array().context("no builds")? {
        let id = b["id"].as_str().context("build id")?.to_string();
        let dir = wd.join("builds").join(&id).join(arch);
        let meta: Value = serde_json::from_slice(&std::fs::read(dir.join("meta.json"))?)?;
        let commit = meta["ostree-commit"]
            .as_str()
            .context("commit")?
            .to_string();
        out.push(Build { id, commit, dir });
    }
    Ok(out)
}

/// ostree-ext's content metadata: object → package, as rpm-ostree would give it.
fn contentmeta(repo: &ostree::Repo, wd: &Path, commit: &str) -> Result<ObjectMetaSized> {
    let scratch = tempfile::tempdir_in(wd.join("tmp"))?;
    let owners = cosa::oci::encapsulate::object_owners(
        repo,
        &wd.join("cache/repo"),
        commit,
        scratch.path(),
    )?;
    let mut meta = ObjectMeta::default();
    let mut ids: BTreeMap<String, Rc<str>> = BTreeMap::new();
    for (obj, nevra) in &owners {
        // rpm-ostree gives unpackaged content a source of its own, too.
        let nevra = nevra.clone().unwrap_or_else(|| "unpackaged".to_string());
        let id = ids
            .entry(nevra.clone())
            .or_insert_with(|| Rc::from(nevra.as_str()))
            .clone();
        meta.map.insert(obj.clone(), id);
    }
    for id in ids.values() {
        meta.set.insert(ObjectSourceMeta {
            identifier: id.clone(),
            name: id.clone(),
            srcid: id.clone(),
            change_time_offset: 1,
            change_frequency: 1,
        });
    }
    ObjectMetaSized::compute_sizes(repo, meta)
}

fn ostree_ext_encapsulate(
    rt: &tokio::runtime::Runtime,
    repo: &ostree::Repo,
    commit: &str,
    meta: Option<&ObjectMetaSized>,
    max_layers: u32,
    prior: Option<&ostree_ext::oci_spec::image::ImageManifest>,
    dest: &ImageReference,
) -> Result<()> {
    let mut opts = oc::ExportOpts::default();
    if let Some(m) = meta {
        opts.contentmeta = Some(m);
        opts.max_layers = NonZeroU32::new(max_layers);
        opts.prior_build = prior;
    }
    rt.block_on(oc::encapsulate(
        repo,
        commit,
        &oc::Config::default(),
        Some(opts),
        dest,
    ))?;
    Ok(())
}

fn cosa_build_container(cosa: &Path, wd: &Path, id: &str, max_layers: u32) -> Result<()> {
    command(cosa)
        .arg("-C")
        .arg(wd)
        .args(["build-container", "--force", "--build", id])
        .args(["--max-layers", &max_layers.to_string()])
        .env("RUST_LOG", "warn")
        .run()?;
    Ok(())
}

/// (digest, size) of each layer of a manifest.
fn layers(manifest: &Value) -> Vec<(String, u64)> {
    manifest["layers"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|l| {
                    (
                        l["digest"].as_str().unwrap_or_default().to_string(),
                        l["size"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Share of `new`'s bytes in layers whose digests are also in `old`; unchanged/total layers.
fn reuse(old: &Value, new: &Value) -> (f64, usize, usize) {
    let old: Vec<String> = layers(old).into_iter().map(|l| l.0).collect();
    let new = layers(new);
    let total: u64 = new.iter().map(|l| l.1).sum();
    let kept: Vec<&(String, u64)> = new.iter().filter(|l| old.contains(&l.0)).collect();
    let kept_bytes: u64 = kept.iter().map(|l| l.1).sum();
    (
        100.0 * kept_bytes as f64 / total.max(1) as f64,
        kept.len(),
        new.len(),
    )
}

fn cosa_manifest(b: &Build) -> Result<Value> {
    let meta: Value = serde_json::from_slice(&std::fs::read(b.dir.join("meta.json"))?)?;
    let p = b.dir.join(
        meta["images"]["oci-manifest"]["path"]
            .as_str()
            .context("no oci-manifest")?,
    );
    Ok(serde_json::from_slice(&std::fs::read(p)?)?)
}

fn oci_dir_manifest(dir: &Path) -> Result<Value> {
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json"))?)?;
    let d = index["manifests"][0]["digest"]
        .as_str()
        .context("no manifest")?;
    let p = dir
        .join("blobs/sha256")
        .join(d.trim_start_matches("sha256:"));
    Ok(serde_json::from_slice(&std::fs::read(p)?)?)
}

/// CPU seconds (user + system) used so far by this process and its waited-for children.
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let rest = stat.rsplit_once(')').map_or("", |x| x.1);
    // Fields after the command: state is 3rd overall; utime..cstime are 14..17.
    let f: Vec<u64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    f.iter().sum::<u64>() as f64 / 100.0
}

/// Wall and CPU seconds of `f`.
fn timed(f: impl FnOnce() -> Result<()>) -> Result<(f64, f64)> {
    let (t, c) = (Instant::now(), cpu_seconds());
    f()?;
    Ok((t.elapsed().as_secs_f64(), cpu_seconds() - c))
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        bail!("usage: bench-container WORKDIR COSA [RUNS] [MAX_LAYERS]");
    }
    let wd = std::fs::canonicalize(&args[1])?;
    let cosa = std::fs::canonicalize(&args[2])?;
    let runs: usize = args.get(3).map_or(Ok(3), |s| s.parse())?;
    let max_layers: u32 = args.get(4).map_or(Ok(64), |s| s.parse())?;
    let repo = ostree::Repo::new_for_path(wd.join("cache/repo"));
    repo.open(gio::Cancellable::NONE)?;
    let rt = tokio::runtime::Runtime::new()?;
    let out = tempfile::tempdir_in("/var/tmp")?;
    let builds = builds(&wd)?;
    let latest = builds.first().context("no builds")?;

    let t = Instant::now();
    let meta = contentmeta(&repo, &wd, &latest.commit)?;
    println!(
        "build {} (commit {}): {} packages own content; ostree-ext content metadata computed in {:.2} s (untimed)",
        latest.id,
        &latest.commit[..12],
        meta.sizes.len(),
        t.elapsed().as_secs_f64()
    );
    let archive = |name: &str| ImageReference {
        transport: Transport::OciArchive,
        name: out.path().join(name).display().to_string(),
    };
    let (mut tc, mut t1, mut tn) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cc, mut c1, mut cn) = (Vec::new(), Vec::new(), Vec::new());
    println!(
        "{:<6} {:>20} {:>24} {:>24}",
        "run",
        "cosa",
        "ostree-ext (1 layer)",
        format!("ostree-ext ({max_layers} chunks)")
    );
    println!(
        "{:<6} {:>20} {:>24} {:>24}",
        "", "wall / cpu s", "wall / cpu s", "wall / cpu s"
    );
    for run in 1..=runs {
        let (w, c) = timed(|| cosa_build_container(&cosa, &wd, &latest.id, max_layers))?;
        tc.push(w);
        cc.push(c);
        let (w, c) = timed(|| {
            ostree_ext_encapsulate(
                &rt,
                &repo,
                &latest.commit,
                None,
                max_layers,
                None,
                &archive("one.ociarchive"),
            )
        })?;
        t1.push(w);
        c1.push(c);
        let (w, c) = timed(|| {
            ostree_ext_encapsulate(
                &rt,
                &repo,
                &latest.commit,
                Some(&meta),
                max_layers,
                None,
                &archive("chunked.ociarchive"),
            )
        })?;
        tn.push(w);
        cn.push(c);
        println!(
            "{run:<6} {:>11.2} / {:>6.2} {:>15.2} / {:>6.2} {:>15.2} / {:>6.2}",
            tc[run - 1],
            cc[run - 1],
            t1[run - 1],
            c1[run - 1],
            tn[run - 1],
            cn[run - 1]
        );
    }
    let (mc, m1, mn) = (median(&tc), median(&t1), median(&tn));
    println!(
        "{:<6} {mc:>11.2} / {:>6.2} {m1:>15.2} / {:>6.2} {mn:>15.2} / {:>6.2}",
        "median",
        median(&cc),
        median(&c1),
        median(&cn)
    );
    let size = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let cosa_meta: Value = serde_json::from_slice(&std::fs::read(latest.dir.join("meta.json"))?)?;
    let cosa_size = cosa_meta["images"]["ostree"]["size"].as_u64().unwrap_or(0);
    println!(
        "archive bytes: cosa {} ({} layers), ostree-ext 1 layer {}, ostree-ext chunked {}",
        cosa_size,
        layers(&cosa_manifest(latest)?).len(),
        size(out.path().join("one.ociarchive")),
        size(out.path().join("chunked.ociarchive")),
    );
    println!(
        "speed-up of cosa: {:.2}x vs ostree-ext 1 layer, {:.2}x vs ostree-ext chunked (goal >= 1.5x)",
        m1 / mc,
        mn / mc
    );

    // The archive timed above is a valid ostree-native image: ostree-ext pulls it
    // back into a fresh repo to the same commit.
    let check = tempfile::tempdir_in("/var/tmp")?;
    let check_repo = ostree::Repo::new_for_path(check.path());
    check_repo.create(ostree::RepoMode::BareUser, gio::Cancellable::NONE)?;
    let archive_path = latest.dir.join(
        cosa_meta["images"]["ostree"]["path"]
            .as_str()
            .context("no images.ostree")?,
    );
    let imgref = oc::OstreeImageReference::try_from(
        format!(
            "ostree-unverified-image:oci-archive:{}",
            archive_path.display()
        )
        .as_str(),
    )?;
    let pulled = rt.block_on(oc::unencapsulate(&check_repo, &imgref))?;
    println!(
        "ostree-ext pulls cosa's archive back to commit {}: {}",
        &pulled.ostree_commit[..12],
        if pulled.ostree_commit == latest.commit {
            "same commit"
        } else {
            "MISMATCH"
        }
    );

    if let Some(prev) = builds.get(1) {
        cosa_build_container(&cosa, &wd, &prev.id, max_layers)?;
        cosa_build_container(&cosa, &wd, &latest.id, max_layers)?;
        let (pct, kept, n) = reuse(&cosa_manifest(prev)?, &cosa_manifest(latest)?);
        println!(
            "after build {} -> {}: cosa keeps {pct:.1}% of the image's bytes in unchanged layers ({kept} of {n} layers) (goal >= 90%)",
            prev.id, latest.id
        );
        let prev_meta = contentmeta(&repo, &wd, &prev.commit)?;
        let dir = |name: &str| ImageReference {
            transport: Transport::OciDir,
            name: out.path().join(name).display().to_string(),
        };
        ostree_ext_encapsulate(
            &rt,
            &repo,
            &prev.commit,
            Some(&prev_meta),
            max_layers,
            None,
            &dir("prev"),
        )?;
        let prev_manifest = oci_dir_manifest(&out.path().join("prev"))?;
        let prior: ostree_ext::oci_spec::image::ImageManifest =
            serde_json::from_value(prev_manifest.clone())?;
        ostree_ext_encapsulate(
            &rt,
            &repo,
            &latest.commit,
            Some(&meta),
            max_layers,
            Some(&prior),
            &dir("new"),
        )?;
        let (pct, kept, n) = reuse(&prev_manifest, &oci_dir_manifest(&out.path().join("new"))?);
        println!(
            "                  ostree-ext chunked (with the prior manifest) keeps {pct:.1}% ({kept} of {n} layers)"
        );
    }
    Ok(())
}
