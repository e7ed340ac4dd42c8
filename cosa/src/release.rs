//! Release metadata: a build's `release.json` (coreos-assembler's
//! `generate-release-meta`) and a stream's metadata `<stream>.json` in Fedora
//! CoreOS's stream-metadata format, which coreos-installer reads to find the
//! images it downloads.
//!
//! Both are made from the build's meta.json (one per architecture). Each image is
//! placed by platform, format and kind as Fedora CoreOS places its own: the qemu
//! qcow2 under `qemu`, the metal raw image under `metal` (the 4K-sector one as
//! format `4k.raw`), the live ISO as format `iso` and the PXE kernel, initramfs and
//! rootfs as format `pxe` of `metal`. A format is the file's extension after the
//! architecture (`qcow2`, `raw.xz`, `tar.gz`), so compressed images are listed
//! compressed. A location is `<base URL>/<build id>/<arch>/<file>`: serving the
//! workdir's `builds/` at the base URL makes every location resolve. An artifact's
//! `signature` is the detached GPG signature `cosa sign` makes beside it (listed
//! before it is made too: the format has one for every artifact).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use crate::builds::artifact::SignatureKind;
use crate::builds::meta::Meta;

/// One architecture of a build: its meta.json and directory.
pub struct ArchBuild<'a> {
    pub arch: &'a str,
    pub meta: &'a Meta,
    pub dir: &'a Path,
}

/// Where an image of meta.json's `images` goes: (platform, format, kind); `None`
/// for what the metadata does not list (the OCI archive, its manifest, the SBOM).
pub fn placement(key: &str, path: &str, arch: &str) -> Option<(String, String, String)> {
    // A disk image's format is its file name after the architecture; the PXE
    // kernel has no extension at all, so it is only looked for where needed.
    let ext = || {
        path.split_once(&format!(".{arch}."))
            .map(|(_, e)| e.to_string())
    };
    let (platform, format, kind) = match key {
        "metal4k" => ("metal", format!("4k.{}", ext()?), "disk"),
        k if k.parse::<crate::platform::Platform>().is_ok() => (key, ext()?, "disk"),
        "live-iso" => ("metal", ext()?, "disk"),
        "live-kernel" => ("metal", "pxe".into(), "kernel"),
        "live-initramfs" => ("metal", "pxe".into(), "initramfs"),
        "live-rootfs" => ("metal", "pxe".into(), "rootfs"),
        _ => return None,
    };
    Some((platform.to_string(), format, kind.to_string()))
}

fn gpg_signature(art: &crate::builds::artifact::Artifact) -> Option<&str> {
    art.signatures
        .iter()
        .find(|s| s.kind == SignatureKind::Gpg)
        .and_then(|s| s.path.as_deref())
}

/// The artifacts the metadata lists that `cosa sign` has not signed, as
/// `<arch> <platform> <format> <kind>`: their `signature` URLs do not resolve yet.
pub fn unsigned(arches: &[ArchBuild]) -> Vec<String> {
    let mut out = Vec::new();
    for a in arches {
        for (key, art) in &a.meta.images {
            if let Some((platform, format, kind)) = placement(key, &art.path, a.arch) {
                if gpg_signature(art).is_none() {
                    out.push(format!("{} {platform} {format} {kind}", a.arch));
                }
            }
        }
    }
    out
}

/// The release metadata of build `id`: for each architecture, its commit and
/// every listed image by platform → `artifacts` → format → kind.
pub fn release_json(id: &str, stream: &str, base_url: &str, arches: &[ArchBuild]) -> Result<Value> {
    if arches.is_empty() {
        bail!("build {id} has no architecture to describe");
    }
    let base = base_url.trim_end_matches('/');
    let mut architectures = Map::new();
    let mut last_modified = String::new();
    for a in arches {
        if a.meta.buildid != id {
            bail!(
                "{}: meta.json describes build {}, not {id}",
                a.dir.display(),
                a.meta.buildid
            );
        }
        let ts = a
            .meta
            .build_timestamp
            .clone()
            .unwrap_or_else(|| a.meta.ostree_timestamp.clone());
        last_modified = last_modified.max(ts);
        let mut media: BTreeMap<String, BTreeMap<String, Map<String, Value>>> = BTreeMap::new();
        for (key, art) in &a.meta.images {
            let Some((platform, format, kind)) = placement(key, &art.path, a.arch) else {
                continue;
            };
            let location = format!("{base}/{id}/{}/{}", a.arch, art.path);
            let mut entry = json!({"location": location, "sha256": art.sha256});
            // Where `cosa sign` puts the signature: the format has one for every
            // artifact (coreos-installer refuses metadata without it), signed or
            // not yet; see `unsigned`.
            let sig = gpg_signature(art).map_or_else(|| format!("{}.sig", art.path), String::from);
            entry["signature"] = json!(format!("{base}/{id}/{}/{sig}", a.arch));
            if let Some(u) = &art.uncompressed_sha256 {
                entry["uncompressed-sha256"] = json!(u);
            }
            media
                .entry(platform)
                .or_default()
                .entry(format)
                .or_default()
                .insert(kind, entry);
        }
        let media: Map<String, Value> = media
            .into_iter()
            .map(|(p, formats)| (p, json!({ "artifacts": formats })))
            .collect();
        architectures.insert(
            a.arch.to_string(),
            json!({"commit": a.meta.ostree_commit, "media": media}),
        );
    }
    Ok(json!({
        "release": id,
        "stream": stream,
        "metadata": {"last-modified": last_modified},
        "architectures": architectures,
    }))
}

/// The stream metadata a release makes: each platform's artifacts with the
/// release they come from.
pub fn stream_json(release: &Value) -> Result<Value> {
    let id = release["release"]
        .as_str()
        .context("release metadata without a release")?;
    let stream = release["stream"]
        .as_str()
        .context("release metadata without a stream")?;
    let mut architectures = Map::new();
    let arches = release["architectures"]
        .as_object()
        .context("release metadata without architectures")?;
    for (arch, a) in arches {
        let mut artifacts = Map::new();
        if let Some(media) = a["media"].as_object() {
            for (platform, m) in media {
                artifacts.insert(
                    platform.clone(),
                    json!({"release": id, "formats": m["artifacts"]}),
                );
            }
        }
        architectures.insert(arch.clone(), json!({ "artifacts": artifacts }));
    }
    Ok(json!({
        "stream": stream,
        "metadata": {
            "last-modified": release["metadata"]["last-modified"],
            "generator": format!("cosa {}", env!("CARGO_PKG_VERSION")),
        },
        "architectures": architectures,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builds::artifact::SignatureKind;
    use crate::builds::artifact::{Artifact, Signature};

    fn meta() -> Meta {
        let mut m = Meta::new("demo", "1.2", "c0ffee", 0, "x86_64");
        m.build_timestamp = Some("2026-12-06T07:00:00Z".into());
        let mut put = |k: &str, p: &str| {
            m.images
                .insert(k.into(), Artifact::new(p, &format!("sha-{k}"), 1));
        };
        put("ostree", "demo-1.2-ostree.x86_64.ociarchive");
        put("sbom", "demo-1.2-sbom.x86_64.spdx.json");
        put("qemu", "demo-1.2-qemu.x86_64.qcow2");
        put("metal", "demo-1.2-metal.x86_64.raw.xz");
        put("metal4k", "demo-1.2-metal4k.x86_64.raw");
        put("gcp", "demo-1.2-gcp.x86_64.tar.gz");
        put("live-iso", "demo-1.2-live-iso.x86_64.iso");
        put("live-kernel", "demo-1.2-live-kernel.x86_64");
        put("live-initramfs", "demo-1.2-live-initramfs.x86_64.img");
        put("live-rootfs", "demo-1.2-live-rootfs.x86_64.img");
        m.images.get_mut("metal").unwrap().uncompressed_sha256 = Some("raw-sha".into());
        for a in m.images.values_mut() {
            a.signatures.push(Signature {
                kind: SignatureKind::Gpg,
                key: "F1".into(),
                path: Some(format!("{}.sig", a.path)),
                identity: None,
                commit: None,
            });
        }
        m
    }

    #[test]
    fn images_are_placed_as_fedora_coreos_places_them() {
        let p = |k, path| placement(k, path, "x86_64");
        assert_eq!(
            p("metal", "a-metal.x86_64.raw.xz"),
            Some(("metal".into(), "raw.xz".into(), "disk".into()))
        );
        assert_eq!(
            p("metal4k", "a-metal4k.x86_64.raw"),
            Some(("metal".into(), "4k.raw".into(), "disk".into()))
        );
        assert_eq!(
            p("live-iso", "a-live-iso.x86_64.iso"),
            Some(("metal".into(), "iso".into(), "disk".into()))
        );
        assert_eq!(
            p("live-rootfs", "a-live-rootfs.x86_64.img"),
            Some(("metal".into(), "pxe".into(), "rootfs".into()))
        );
        assert_eq!(
            p("live-kernel", "a-live-kernel.x86_64"),
            Some(("metal".into(), "pxe".into(), "kernel".into()))
        );
        assert_eq!(p("ostree", "a-ostree.x86_64.ociarchive"), None);
        assert_eq!(p("sbom", "a-sbom.x86_64.spdx.json"), None);
    }

    #[test]
    fn release_and_stream_metadata() {
        let m = meta();
        let dir = tempfile::tempdir().unwrap();
        let mut m = m;
        m.images
            .get_mut("qemu")
            .unwrap()
            .signatures
            .push(Signature {
                kind: SignatureKind::Gpg,
                key: "F1".into(),
                path: Some("demo-1.2-qemu.x86_64.qcow2.sig".into()),
                identity: None,
                commit: None,
            });
        let a = [ArchBuild {
            arch: "x86_64",
            meta: &m,
            dir: dir.path(),
        }];
        let r = release_json("1.2", "stable", "http://127.0.0.1:8000/builds/", &a).unwrap();
        let x = &r["architectures"]["x86_64"];
        assert_eq!(x["commit"], "c0ffee");
        let qemu = &x["media"]["qemu"]["artifacts"]["qcow2"]["disk"];
        assert_eq!(
            qemu["location"],
            "http://127.0.0.1:8000/builds/1.2/x86_64/demo-1.2-qemu.x86_64.qcow2"
        );
        assert_eq!(
            qemu["signature"],
            "http://127.0.0.1:8000/builds/1.2/x86_64/demo-1.2-qemu.x86_64.qcow2.sig"
        );
        let metal = &x["media"]["metal"]["artifacts"];
        assert_eq!(metal["raw.xz"]["disk"]["uncompressed-sha256"], "raw-sha");
        assert_eq!(
            metal["raw.xz"]["disk"]["signature"],
            "http://127.0.0.1:8000/builds/1.2/x86_64/demo-1.2-metal.x86_64.raw.xz.sig"
        );
        assert_eq!(metal["pxe"]["kernel"]["sha256"], "sha-live-kernel");
        assert_eq!(metal["iso"]["disk"]["sha256"], "sha-live-iso");
        assert!(metal.get("4k.raw").is_some());
        assert!(x["media"].get("ostree").is_none());
        assert_eq!(r["metadata"]["last-modified"], "2026-12-06T07:00:00Z");

        let s = stream_json(&r).unwrap();
        assert_eq!(s["stream"], "stable");
        let metal = &s["architectures"]["x86_64"]["artifacts"]["metal"];
        assert_eq!(metal["release"], "1.2");
        assert_eq!(metal["formats"]["iso"]["disk"]["sha256"], "sha-live-iso");

        assert!(release_json("1.3", "stable", "u", &a).is_err());

        // An unsigned artifact: listed with the signature it will have.
        let mut m = meta();
        m.images.get_mut("gcp").unwrap().signatures.clear();
        let a = [ArchBuild {
            arch: "x86_64",
            meta: &m,
            dir: dir.path(),
        }];
        let r = release_json("1.2", "stable", "u", &a).unwrap();
        let gcp = &r["architectures"]["x86_64"]["media"]["gcp"]["artifacts"]["tar.gz"]["disk"];
        assert_eq!(
            gcp["signature"],
            "u/1.2/x86_64/demo-1.2-gcp.x86_64.tar.gz.sig"
        );
        assert_eq!(unsigned(&a), vec!["x86_64 gcp tar.gz disk"]);
    }
}
