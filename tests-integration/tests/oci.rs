//! `cosa build-container`, `push-container` and `import`, checked with the readers
//! the image must satisfy: skopeo, podman and ostree-ext's importer.

use tests_integration as common;

use std::path::{Path, PathBuf};

use common::{path_exists, run_ok as run, Fixture, KVER, PODMAN_RUN};
use sha2::{Digest, Sha256};

fn sha256_file(p: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(p).unwrap()))
}

fn build_dir(f: &Fixture) -> PathBuf {
    let id = f.builds_json()["builds"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    f.workdir().join(format!("builds/{id}/x86_64"))
}

/// The latest build's archive.
fn archive(f: &Fixture) -> PathBuf {
    let meta = f.latest_meta();
    build_dir(f).join(meta["images"]["ostree"]["path"].as_str().unwrap())
}

/// A workdir with one build and its container image.
fn built() -> Fixture {
    let f = Fixture::new();
    f.cosa(&["build"]).ok();
    let out = f.cosa(&["build-container"]).ok();
    assert!(out.contains("Wrote "), "{out}");
    f
}

fn skopeo_inspect(image: &str) -> serde_json::Value {
    serde_json::from_str(&run(cmdext::command("skopeo").args(["inspect", image]))).unwrap()
}

fn validate_meta(path: &Path) {
    common::assert_meta_schema_valid(path);
}

/// ostree-ext's importer pulls `image` into a fresh repo; returns the commit it got.
fn ostree_ext_pull(image: &str, repo_dir: &Path) -> String {
    run(cmdext::command("ostree")
        .arg(format!("--repo={}", repo_dir.display()))
        .args(["init", "--mode=bare"]));
    let repo = ostree::Repo::new_for_path(repo_dir);
    repo.open(gio::Cancellable::NONE).unwrap();
    let imgref = ostree_ext::container::OstreeImageReference::try_from(
        format!("ostree-unverified-image:{image}").as_str(),
    )
    .unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let import = rt
        .block_on(ostree_ext::container::unencapsulate(&repo, &imgref))
        .unwrap();
    run(cmdext::command("ostree")
        .arg(format!("--repo={}", repo_dir.display()))
        .arg("fsck"));
    import.ostree_commit
}

#[test]
fn build_container_is_read_by_skopeo_and_ostree_ext_and_is_reproducible() {
    let f = built();
    let meta = f.latest_meta();
    let commit = meta["ostree-commit"].as_str().unwrap().to_string();
    let id = meta["buildid"].as_str().unwrap().to_string();
    let dir = build_dir(&f);
    let ostree = &meta["images"]["ostree"];
    let path = dir.join(ostree["path"].as_str().unwrap());
    assert_eq!(
        ostree["path"].as_str().unwrap(),
        format!("test-{id}-ostree.x86_64.ociarchive")
    );
    assert_eq!(ostree["sha256"].as_str().unwrap(), sha256_file(&path));
    assert_eq!(
        ostree["size"].as_u64().unwrap(),
        std::fs::metadata(&path).unwrap().len()
    );
    let manifest_path = dir.join(meta["images"]["oci-manifest"]["path"].as_str().unwrap());
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    validate_meta(&dir.join("meta.json"));

    // skopeo reads it; labels as bootc and rpm-ostree clients expect.
    let img = format!("oci-archive:{}", path.display());
    let info = skopeo_inspect(&img);
    let labels = &info["Labels"];
    assert_eq!(labels["ostree.commit"], commit.as_str());
    assert_eq!(labels["containers.bootc"], "1");
    assert_eq!(labels["ostree.bootable"], "true");
    assert_eq!(labels["ostree.linux"], KVER);
    assert_eq!(labels["org.opencontainers.image.version"], id.as_str());
    assert_eq!(
        labels["rpmostree.inputhash"],
        meta["rpm-ostree-inputhash"].as_str().unwrap()
    );
    // The commit layer, one layer per package with files, unpackaged files, the rpmdb.
    let layers = manifest["layers"].as_array().unwrap();
    assert!(layers.len() >= 6, "{manifest:#}");
    assert_eq!(info["Layers"].as_array().unwrap().len(), layers.len());
    let components: Vec<&str> = layers
        .iter()
        .filter_map(|l| l["annotations"]["ostree.components"].as_str())
        .collect();
    assert!(
        components.iter().any(|c| c.starts_with("shell-1.36-1")),
        "{components:?}"
    );

    // skopeo copies it.
    let t = tempfile::tempdir().unwrap();
    run(cmdext::command("skopeo")
        .args(["copy", "--quiet", &img])
        .arg(format!("oci:{}", t.path().join("copy").display())));

    // ostree-ext's importer gets the very same commit back.
    let pulled = ostree_ext_pull(&img, &t.path().join("repo"));
    assert_eq!(pulled, commit);

    // Reproducible: the same commit gives the same bytes.
    let out = f.cosa(&["build-container"]).ok();
    assert!(out.contains("already has"), "{out}");
    std::fs::rename(&path, t.path().join("first")).unwrap();
    f.cosa(&["build-container", "--force"]).ok();
    assert_eq!(sha256_file(&path), sha256_file(&t.path().join("first")));
    assert_eq!(std::fs::read(&manifest_path).unwrap(), {
        serde_json::to_vec(&manifest).unwrap()
    });

    // zstd, and a smaller layer budget: still read by ostree-ext.
    f.cosa(&[
        "build-container",
        "--force",
        "--compression",
        "zstd",
        "--max-layers",
        "4",
    ])
    .ok();
    let info = skopeo_inspect(&img);
    assert_eq!(info["Layers"].as_array().unwrap().len(), 4, "{info:#}");
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    assert!(m["layers"][0]["mediaType"]
        .as_str()
        .unwrap()
        .ends_with("+zstd"));
    assert_eq!(ostree_ext_pull(&img, &t.path().join("repo-zstd")), commit);
    let err = f
        .cosa(&["build-container", "--force", "--max-layers", "3"])
        .err();
    assert!(err.contains("too few"), "{err}");
}

#[test]
fn a_changed_package_changes_few_layers() {
    let f = built();
    // The latest build's OCI manifest.
    let manifest = |f: &Fixture| -> serde_json::Value {
        let path = f.latest_meta()["images"]["oci-manifest"]["path"]
            .as_str()
            .unwrap()
            .to_string();
        serde_json::from_slice(&std::fs::read(build_dir(f).join(path)).unwrap()).unwrap()
    };
    let first = manifest(&f);
    f.repo.add(&[common::kernel("6.1", "1")]).unwrap();
    f.cosa(&["build"]).ok();
    f.cosa(&["build-container"]).ok();
    let second = manifest(&f);
    let digests = |m: &serde_json::Value| -> Vec<String> {
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l["digest"].as_str().unwrap().to_string())
            .collect()
    };
    let (a, b) = (digests(&first), digests(&second));
    let changed: Vec<&String> = b.iter().filter(|d| !a.contains(d)).collect();
    // The commit layer, the kernel's layer, the rpmdb, unpackaged files (the initramfs
    // names the kernel): never the other packages' layers.
    assert!(changed.len() <= 4, "{changed:?}");
    assert!(b.len() - changed.len() >= 4, "{a:?}\n{b:?}");
}

#[test]
fn podman_runs_the_image_and_push_container_copies_it() {
    let f = built();
    let tag = format!(
        "localhost/cosa-test-{}:latest",
        f.dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase()
            .replace('.', "")
    );
    // push-container goes through skopeo to any transport; here local container storage.
    let out = f
        .cosa(&["push-container", &format!("containers-storage:{tag}")])
        .ok();
    assert!(out.contains("Pushed"), "{out}");
    let pushed = &f.latest_meta()["base-oscontainer"];
    assert_eq!(pushed["image"], format!("containers-storage:{tag}"));
    assert!(
        pushed["digest"].as_str().unwrap().starts_with("sha256:"),
        "{pushed}"
    );
    validate_meta(&build_dir(&f).join("meta.json"));
    let out = run(cmdext::command("podman").args(PODMAN_RUN).args([
        &tag,
        "/usr/bin/sh",
        "-c",
        "cat /etc/passwd /usr/lib/test-overlay; ls /sysroot/ostree/repo/objects | head -1",
    ]));
    assert!(out.contains("root:x:0:0"), "{out}");
    assert!(out.contains("from the overlay"), "{out}");
    assert!(out.contains("00"), "{out}");
    // The image carries the build's SBOM: podman reads the same bytes that
    // meta.json lists as `images.sbom`.
    let meta = f.latest_meta();
    let sbom = std::fs::read_to_string(
        build_dir(&f).join(meta["images"]["sbom"]["path"].as_str().unwrap()),
    )
    .unwrap();
    let in_image = run(cmdext::command("podman").args(PODMAN_RUN).args([
        &tag,
        "/usr/bin/cat",
        "/usr/share/buildinfo/sbom.spdx.json",
    ]));
    assert_eq!(in_image, sbom);
    let doc: serde_json::Value = serde_json::from_str(&sbom).unwrap();
    assert_eq!(doc["spdxVersion"], "SPDX-2.3");
    assert!(
        doc["documentNamespace"]
            .as_str()
            .unwrap()
            .ends_with(meta["rpm-ostree-inputhash"].as_str().unwrap()),
        "{}",
        doc["documentNamespace"]
    );

    // podman load reads the archive itself too.
    let out = run(cmdext::command("podman")
        .args(["load", "-i"])
        .arg(archive(&f)));
    assert!(out.contains("Loaded image"), "{out}");
    let _ = cmdext::command("podman").args(["rmi", "-f", &tag]).output();
}

/// The latest build's archive as an `oci:` directory under `t`.
fn oci_copy(f: &Fixture, t: &Path, name: &str) -> PathBuf {
    let dir = t.join(name);
    run(cmdext::command("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci-archive:{}", archive(f).display()))
        .arg(format!("oci:{}", dir.display())));
    dir
}

#[test]
fn import_applies_a_derived_layer_as_a_new_build() {
    use tar::EntryType::*;
    let f = built();
    let base = f.latest_meta();
    let base_commit = base["ostree-commit"].as_str().unwrap().to_string();
    let t = tempfile::tempdir().unwrap();
    let dir = oci_copy(&f, t.path(), "derived");
    common::append_oci_layer(
        &dir,
        &[
            ("etc/derived.conf", Regular, b"derived\n", 0o600),
            ("usr/share/.wh.added.txt", Regular, b"", 0o644),
            (
                "usr/bin/derived",
                Regular,
                b"#!/bin/sh\necho derived\n",
                0o755,
            ),
            ("var/lib/derived", Directory, b"", 0o750),
            ("var/tmp", Directory, b"", 0o1777),
        ],
    );
    let out = f.cosa(&["import", &format!("oci:{}", dir.display())]).ok();
    assert!(out.contains("Imported"), "{out}");
    assert_eq!(f.build_count(), 2);
    let meta = f.latest_meta();
    assert_eq!(meta["coreos-assembler.oci-imported"], true);
    assert_eq!(
        meta["coreos-assembler.oci-imported-labels"]["ostree.commit"],
        base_commit.as_str()
    );
    assert_eq!(meta["fedora-coreos.parent-commit"], base_commit.as_str());
    validate_meta(&build_dir(&f).join("meta.json"));
    let commit = meta["ostree-commit"].as_str().unwrap();
    assert_ne!(commit, base_commit);
    let parent = f.ostree(&["rev-parse", &format!("{commit}^")]);
    assert_eq!(parent.trim(), base_commit);
    f.ostree(&["fsck"]);

    let root = f.checkout(commit);
    assert_eq!(
        std::fs::read_to_string(root.join("usr/etc/derived.conf")).unwrap(),
        "derived\n"
    );
    assert!(path_exists(&root, "usr/bin/derived"));
    assert!(
        !path_exists(&root, "usr/share/added.txt"),
        "whiteout honoured"
    );
    assert!(!path_exists(&root, "etc"));
    assert_eq!(std::fs::read_dir(root.join("var")).unwrap().count(), 0);
    let tmpfiles =
        std::fs::read_to_string(root.join("usr/lib/tmpfiles.d/cosa-import-var.conf")).unwrap();
    assert_eq!(tmpfiles, "d /var/lib/derived 0750 0 0 - -\n");
    // The base tree is intact: the checkout was not written through.
    let base_root = f.checkout(&base_commit);
    assert!(path_exists(&base_root, "usr/share/added.txt"));
    assert!(!path_exists(&base_root, "usr/etc/derived.conf"));
    // Imported commit metadata keeps the base's, with the new version.
    let cm: serde_json::Value =
        serde_json::from_slice(&std::fs::read(build_dir(&f).join("commitmeta.json")).unwrap())
            .unwrap();
    assert_eq!(cm["version"], meta["buildid"]);
    assert_eq!(cm["ostree.linux"], KVER);

    // The imported tree carries its own SBOM, made from its rpmdb, not the base's.
    let sbom: serde_json::Value = serde_json::from_slice(
        &std::fs::read(root.join("usr/share/buildinfo/sbom.spdx.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(sbom["packages"][0]["versionInfo"], meta["buildid"]);
    let origin = sbom["packages"][0]["comment"].as_str().unwrap();
    assert!(
        origin.contains("imported from a container image"),
        "{origin}"
    );
    let base_sbom = std::fs::read(base_root.join("usr/share/buildinfo/sbom.spdx.json")).unwrap();
    let base_sbom: serde_json::Value = serde_json::from_slice(&base_sbom).unwrap();
    assert_eq!(
        sbom["packages"].as_array().unwrap().len(),
        base_sbom["packages"].as_array().unwrap().len()
    );

    // The imported build is a build like any other: it encapsulates again, and
    // ostree-ext reads that back to the imported commit.
    f.cosa(&["build-container"]).ok();
    let meta = f.latest_meta();
    let artifact =
        std::fs::read(build_dir(&f).join(meta["images"]["sbom"]["path"].as_str().unwrap()))
            .unwrap();
    assert_eq!(
        artifact,
        std::fs::read(root.join("usr/share/buildinfo/sbom.spdx.json")).unwrap()
    );
    let img = format!("oci-archive:{}", archive(&f).display());
    assert_eq!(ostree_ext_pull(&img, &t.path().join("repo")), commit);

    // The same image through the `dir:` transport, with an explicit version.
    let as_dir = t.path().join("as-dir");
    run(cmdext::command("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci:{}", dir.display()))
        .arg(format!("dir:{}", as_dir.display())));
    let dir_image = format!("dir:{}", as_dir.display());
    let out = f
        .cosa(&["import", &dir_image, "--version", "custom.1"])
        .ok();
    assert!(out.contains("build custom.1"), "{out}");
    assert_eq!(f.latest_meta()["buildid"], "custom.1");
    let err = f
        .cosa(&["import", &dir_image, "--version", "custom.1"])
        .err();
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn podman_build_derived_image_imports() {
    let f = built();
    let t = tempfile::tempdir().unwrap();
    std::fs::write(t.path().join("motd"), "hello from a derived image\n").unwrap();
    std::fs::write(
        t.path().join("Containerfile"),
        format!(
            "FROM oci-archive:{}\nCOPY motd /etc/motd\nRUN echo built > /usr/share/built-by-run && rm /usr/lib/test-overlay\n",
            archive(&f).display()
        ),
    )
    .unwrap();
    // Built into local container storage and imported from there.
    let tag = format!(
        "localhost/cosa-derived-{}:latest",
        f.dir
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .to_lowercase()
            .replace('.', "")
    );
    run(cmdext::command("podman")
        .args([
            "build",
            "--runtime",
            "runc",
            "--isolation",
            "chroot",
            "--ulimit",
            "nofile=1000:1000",
            "--ulimit",
            "nproc=1000:1000",
            "-f",
        ])
        .arg(t.path().join("Containerfile"))
        .arg("-t")
        .arg(&tag)
        .arg(t.path()));
    let out = f
        .cosa(&["import", &format!("containers-storage:{tag}")])
        .ok();
    let _ = cmdext::command("podman").args(["rmi", "-f", &tag]).output();
    assert!(out.contains("Imported"), "{out}");
    let commit = f.latest_meta()["ostree-commit"]
        .as_str()
        .unwrap()
        .to_string();
    let root = f.checkout(&commit);
    assert_eq!(
        std::fs::read_to_string(root.join("usr/etc/motd")).unwrap(),
        "hello from a derived image\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("usr/share/built-by-run")).unwrap(),
        "built\n"
    );
    assert!(!path_exists(&root, "usr/lib/test-overlay"));
    assert_eq!(std::fs::read_dir(root.join("var")).unwrap().count(), 0);
}

#[test]
fn bad_images_are_refused_and_builds_stay_unchanged() {
    use tar::EntryType::*;
    let f = built();
    let t = tempfile::tempdir().unwrap();
    let listing = || {
        let mut v: Vec<String> = walkdir::WalkDir::new(f.workdir().join("builds"))
            .into_iter()
            .map(|e| e.unwrap().path().display().to_string())
            .collect();
        v.sort();
        v
    };
    let before = listing();
    let builds_json = std::fs::read(f.workdir().join("builds/builds.json")).unwrap();
    let check = |image: String, expect: &str| {
        let err = f.cosa(&["import", &image]).err();
        assert!(err.contains(expect), "{image}: {err}");
        assert_eq!(listing(), before, "{image}");
        assert_eq!(
            std::fs::read(f.workdir().join("builds/builds.json")).unwrap(),
            builds_json
        );
    };

    // A corrupt archive.
    let corrupt = t.path().join("corrupt.ociarchive");
    let mut bytes = std::fs::read(archive(&f)).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&corrupt, bytes).unwrap();
    check(
        format!("oci-archive:{}", corrupt.display()),
        "reading image",
    );

    // A missing blob (the derived layer's).
    let dir = oci_copy(&f, t.path(), "missing");
    common::append_oci_layer(&dir, &[("usr/share/x", Regular, b"x", 0o644)]);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            dir.join("blobs/sha256").join(
                m["manifests"][0]["digest"]
                    .as_str()
                    .unwrap()
                    .trim_start_matches("sha256:"),
            ),
        )
        .unwrap(),
    )
    .unwrap();
    let last = manifest["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_string();
    std::fs::remove_file(dir.join("blobs/sha256").join(last)).unwrap();
    check(format!("oci:{}", dir.display()), "reading image");

    // Not an ostree image: a plain one-layer image without the labels.
    let plain = t.path().join("plain");
    std::fs::create_dir_all(plain.join("blobs/sha256")).unwrap();
    let config = br#"{"architecture":"amd64","os":"linux","config":{},"rootfs":{"type":"layers","diff_ids":[]}}"#;
    let cd = hex::encode(Sha256::digest(config));
    std::fs::write(plain.join("blobs/sha256").join(&cd), config).unwrap();
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{cd}"), "size": config.len()},
        "layers": []});
    let mb = serde_json::to_vec(&manifest).unwrap();
    let md = hex::encode(Sha256::digest(&mb));
    std::fs::write(plain.join("blobs/sha256").join(&md), &mb).unwrap();
    std::fs::write(
        plain.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .unwrap();
    std::fs::write(
        plain.join("index.json"),
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "manifests": [
            {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{md}"), "size": mb.len()}]}))
        .unwrap(),
    )
    .unwrap();
    common::append_oci_layer(&plain, &[("usr/bin/x", Regular, b"x", 0o755)]);
    check(
        format!("oci:{}", plain.display()),
        "not an ostree-based image",
    );

    // Files under /var are named and refused.
    let dir = oci_copy(&f, t.path(), "var");
    common::append_oci_layer(
        &dir,
        &[
            ("var/lib/app/state.db", Regular, b"x", 0o644),
            ("var/log/app.log", Regular, b"x", 0o644),
            ("usr/share/fine", Regular, b"x", 0o644),
        ],
    );
    let err = f.cosa(&["import", &format!("oci:{}", dir.display())]).err();
    assert!(
        err.contains("/var/lib/app/state.db") && err.contains("/var/log/app.log"),
        "{err}"
    );
    assert_eq!(listing(), before);

    // The base image itself: nothing to import.
    check(
        format!("oci-archive:{}", archive(&f).display()),
        "adds nothing",
    );
    // No transport.
    check("just-a-name".to_string(), "transport:reference");
}
