//! `cosa sign`, `cosa generate-release-meta` and `cosa stream-metadata`.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::builds::meta::Meta;
use crate::builds::workdir::write_atomic;
use crate::builds::{History, Workdir};
use crate::cli::{GlobalOpts, ReleaseMetaOpts, SignOpts, StreamMetadataOpts};
use crate::release::{release_json, stream_json, ArchBuild};

/// The release metadata of build `id`, every architecture builds.json lists for it.
fn release_of(h: &History, id: &str, stream: &str, base_url: &str) -> Result<serde_json::Value> {
    let b = h.load()?;
    let entry = b
        .builds
        .iter()
        .find(|e| e.id == id)
        .with_context(|| format!("build {id} is not in builds.json"))?;
    let mut metas: Vec<(String, PathBuf, Meta)> = Vec::new();
    for arch in &entry.arches {
        let meta = h
            .load_meta(id, arch)
            .with_context(|| format!("reading the meta.json of build {id} ({arch})"))?;
        metas.push((arch.clone(), h.build_dir(id, arch), meta));
    }
    let arches: Vec<ArchBuild> = metas
        .iter()
        .map(|(arch, dir, meta)| ArchBuild { arch, meta, dir })
        .collect();
    let unsigned = crate::release::unsigned(&arches);
    if !unsigned.is_empty() {
        eprintln!(
            "warning: build {id} is not signed; the signature URLs of {} do not resolve \
             until `cosa sign` (coreos-installer needs --insecure meanwhile)",
            unsigned.join(", ")
        );
    }
    release_json(id, stream, base_url, &arches)
}

fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs_err::create_dir_all(parent)?;
    }
    let mut bytes = serde_json::to_vec_pretty(v)?;
    bytes.push(b'\n');
    write_atomic(path, &bytes)
}

pub fn sign(g: &GlobalOpts, o: &SignOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let key = crate::sign::GpgKey::find(o.gpg_homedir.as_deref(), &o.gpg_key)?;
    let signed = crate::sign::sign(
        &wd,
        &crate::sign::SignOptions {
            build: o.build.clone(),
            key,
            container_identity: o.container_identity.clone(),
        },
    )?;
    if o.json {
        println!("{}", serde_json::to_string_pretty(&signed)?);
        return Ok(());
    }
    for f in &signed.files {
        println!("Signed {f}");
    }
    if let Some(i) = &signed.container_identity {
        println!("Signed the container image for {i}");
    }
    println!(
        "Signed build {} (ostree commit {}) with GPG key {}",
        signed.build, signed.commit, signed.key
    );
    Ok(())
}

pub fn release_meta(g: &GlobalOpts, o: &ReleaseMetaOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let _lock = wd.lock("generate-release-meta", true)?;
    let h = History::new(wd.builds_dir());
    let id = h.resolve_id(o.build.as_deref())?;
    let release = release_of(&h, &id, &o.stream, &o.base_url)?;
    let out = o
        .output
        .clone()
        .unwrap_or_else(|| wd.builds_dir().join(&id).join("release.json"));
    write_json(&out, &release)?;
    println!("Wrote {} (build {id}, stream {})", out.display(), o.stream);
    Ok(())
}

pub fn stream_metadata(g: &GlobalOpts, o: &StreamMetadataOpts) -> Result<()> {
    let wd = Workdir::open(&g.workdir)?;
    let _lock = wd.lock("stream-metadata", true)?;
    let h = History::new(wd.builds_dir());
    let b = h.load()?;
    let id = b
        .tags
        .iter()
        .find(|t| t.name == o.stream)
        .map(|t| t.target.clone())
        .with_context(|| {
            format!(
                "no build is tagged {s}: tag the build to publish with `cosa tag add {s} BUILD`",
                s = o.stream
            )
        })?;
    let stream = stream_json(&release_of(&h, &id, &o.stream, &o.base_url)?)?;
    let out = o.output.clone().unwrap_or_else(|| {
        wd.builds_dir()
            .join("streams")
            .join(format!("{}.json", o.stream))
    });
    write_json(&out, &stream)?;
    println!("Wrote {} (stream {}, build {id})", out.display(), o.stream);
    Ok(())
}
