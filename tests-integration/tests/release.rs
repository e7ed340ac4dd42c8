//! `cosa sign`: every signature it makes is checked by its real consumer (gpg for
//! the detached `.sig` files, an ostree remote with `gpg-verify=true` for the
//! commit, skopeo with a policy.json `signedBy` rule for the container image), and
//! bad keys or a changed artifact are refused with nothing signed.

use std::path::{Path, PathBuf};

use cmdext::CommandRunExt;
use common::Fixture;
use tests_integration as common;

const IDENTITY: &str = "localhost/cosa-test/os:stable";

#[test]
fn sign_makes_signatures_their_consumers_accept_and_refuses_bad_input() {
    let f = Fixture::new();
    let t = tempfile::tempdir().unwrap();
    f.cosa(&["build"]).ok();
    let unsigned_commit = f.latest_meta()["ostree-commit"]
        .as_str()
        .unwrap()
        .to_string();
    // A second build, with a changed overlay file: the one that gets signed.
    std::fs::write(
        f.config().join("overlays/10test/usr/lib/test-overlay"),
        "changed\n",
    )
    .unwrap();
    f.cosa(&["build"]).ok();
    f.cosa(&["build-container"]).ok();
    let meta = f.latest_meta();
    let id = meta["buildid"].as_str().unwrap().to_string();
    let commit = meta["ostree-commit"].as_str().unwrap().to_string();
    assert_ne!(commit, unsigned_commit);
    let dir = f.workdir().join(format!("builds/{id}/x86_64"));
    let meta_path = dir.join("meta.json");

    let (home, uid) = common::gpg_home(t.path(), "release");
    let (other_home, _) = common::gpg_home(t.path(), "other");
    let home_s = home.to_str().unwrap();
    let sign = |extra: &[&str]| {
        let mut a = vec!["sign", "--gpg-homedir", home_s, "--gpg-key", &uid];
        a.extend_from_slice(extra);
        f.cosa(&a)
    };

    // Refused, with nothing written: no identity for the never-pushed container
    // image, an unknown key, an unreadable GnuPG home, an artifact that changed.
    let before = std::fs::read(&meta_path).unwrap();
    let e = sign(&[]).err();
    assert!(e.contains("--container-identity"), "{e}");
    let e = f
        .cosa(&[
            "sign",
            "--gpg-homedir",
            home_s,
            "--gpg-key",
            "nobody@cosa.invalid",
        ])
        .err();
    assert!(
        e.contains("GPG key nobody@cosa.invalid") && e.contains("no secret key"),
        "{e}"
    );
    let missing = t.path().join("no-such-home");
    let e = f
        .cosa(&[
            "sign",
            "--gpg-homedir",
            missing.to_str().unwrap(),
            "--gpg-key",
            &uid,
        ])
        .err();
    assert!(e.contains("no-such-home"), "{e}");
    let sbom = dir.join(meta["images"]["sbom"]["path"].as_str().unwrap());
    let sbom_bytes = std::fs::read(&sbom).unwrap();
    std::fs::write(&sbom, [&sbom_bytes[..], b" "].concat()).unwrap();
    let e = sign(&["--container-identity", IDENTITY]).err();
    assert!(e.contains("does not match the sha256"), "{e}");
    assert!(
        e.contains(sbom.file_name().unwrap().to_str().unwrap()),
        "{e}"
    );
    std::fs::write(&sbom, &sbom_bytes).unwrap();
    assert_eq!(std::fs::read(&meta_path).unwrap(), before);
    let sigs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            (n.ends_with(".sig") || n.ends_with(".simplesig")).then_some(n)
        })
        .collect();
    assert!(sigs.is_empty(), "signatures left by refused runs: {sigs:?}");

    let out = sign(&["--container-identity", IDENTITY, "--json"]).ok();
    let signed: serde_json::Value = serde_json::from_str(&out).unwrap();
    let fpr = signed["key"].as_str().unwrap().to_string();
    assert_eq!(fpr.len(), 40, "{out}");
    // Again: the same signatures, recorded once.
    sign(&["--container-identity", IDENTITY]).ok();

    // meta.json records each signature under its artifact.
    let meta = f.latest_meta();
    common::assert_meta_schema_valid(&meta_path);
    let images = meta["images"].as_object().unwrap();
    assert!(images.len() >= 2, "{images:?}");

    // gpg, with only the public key, accepts each detached signature.
    let pubkey = t.path().join("release.gpg");
    common::gpg_export(&home, &pubkey);
    let verifier = t.path().join("gnupg-verify");
    std::fs::create_dir(&verifier).unwrap();
    let gpgv = |sig: &Path, file: &Path| {
        cmdext::command("gpgv")
            .arg("--keyring")
            .arg(&pubkey)
            .arg(sig)
            .arg(file)
            .env("GNUPGHOME", &verifier)
            .run()
    };
    for (name, art) in images {
        let sigs = art["signatures"].as_array().unwrap();
        let gpg: Vec<_> = sigs.iter().filter(|s| s["kind"] == "gpg").collect();
        assert_eq!(gpg.len(), 1, "{name}: {sigs:?}");
        assert_eq!(gpg[0]["key"], fpr.as_str());
        let file = dir.join(art["path"].as_str().unwrap());
        let sig = dir.join(gpg[0]["path"].as_str().unwrap());
        assert_eq!(sig, PathBuf::from(format!("{}.sig", file.display())));
        gpgv(&sig, &file).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    // ... and refuses it for a changed file.
    let copy = t.path().join("sbom-changed");
    std::fs::write(&copy, [&sbom_bytes[..], b" "].concat()).unwrap();
    assert!(gpgv(
        &dir.join(format!(
            "{}.sig",
            sbom.file_name().unwrap().to_str().unwrap()
        )),
        &copy
    )
    .is_err());

    ostree_remote_requires_the_signature(&f, t.path(), &pubkey, &commit, &unsigned_commit);
    let ostree = &images["ostree"];
    let kinds: Vec<&str> = ostree["signatures"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["gpg", "containers-simple-signing", "ostree-commit"],
        "{ostree}"
    );
    let archive = dir.join(ostree["path"].as_str().unwrap());
    let simplesig = PathBuf::from(format!("{}.simplesig", archive.display()));
    policy_accepts_the_container_signature(t.path(), &archive, &simplesig, &pubkey, &other_home);

    promote_runs_the_pipelines_steps(&f, &id, home_s, &uid);
}

/// `ci/promote`, the pipeline's promote job, on the signed build: refused unsigned
/// (no key) with nothing tagged; then signed, tagged, with release and stream
/// metadata naming the build.
fn promote_runs_the_pipelines_steps(f: &Fixture, id: &str, home: &str, uid: &str) {
    let promote = |extra: &[&str]| {
        cmdext::command(common::repo_root().join("ci/promote"))
            .args([
                "--stream",
                "stable",
                "--base-url",
                "https://builds.cosa.invalid/demo",
            ])
            .args(extra)
            .env("COSA", common::cosa_bin())
            .env("COSA_DIR", f.workdir())
            .output()
            .unwrap()
    };
    let tags = |f: &Fixture| f.builds_json()["tags"].clone();
    // The stream pointed at the first build until now: the release summary compares.
    let previous = f.builds_json()["builds"][1]["id"]
        .as_str()
        .unwrap()
        .to_string();
    f.cosa(&["tag", "add", "stable", &previous]).ok();
    let before = tags(f);
    let out = promote(&[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--gpg-key is required"));
    assert_eq!(tags(f), before, "an unsigned promotion tagged the build");

    let out = promote(&[
        "--gpg-key",
        uid,
        "--gpg-homedir",
        home,
        "--container-identity",
        IDENTITY,
    ]);
    assert!(
        out.status.success(),
        "ci/promote: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = serde_json::to_string(&tags(f)).unwrap();
    for tag in ["testing-passed", "stable"] {
        assert!(
            text.contains(tag) && text.contains(id),
            "no tag {tag} on {id}: {text}"
        );
    }
    // This build has no disk images, so the stream lists no artifacts; its
    // release metadata names the build.
    let stream: serde_json::Value = serde_json::from_slice(
        &std::fs::read(f.workdir().join("builds/streams/stable.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(stream["stream"], "stable", "{stream}");
    let release =
        std::fs::read_to_string(f.workdir().join(format!("builds/{id}/release.json"))).unwrap();
    assert!(release.contains(id), "{release}");
    // The release summary: `cosa diff` from the stream's previous build.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!("release summary: {previous} -> {id}"))
            && stdout.contains("files: 0 added, 0 removed"),
        "{stdout}"
    );
    let diff: serde_json::Value = serde_json::from_slice(
        &std::fs::read(f.workdir().join(format!("builds/{id}/release-diff.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(diff["from"], previous.as_str(), "{diff:#}");
    assert_eq!(diff["to"], id, "{diff:#}");
    let modified = diff["ostree"]["modified"].as_array().unwrap();
    assert!(
        modified.contains(&serde_json::json!("/usr/lib/test-overlay")),
        "{diff:#}"
    );
}

/// A pull from the workdir's repo through a remote with `gpg-verify=true` and the
/// public key: the signed commit comes, the unsigned one is refused.
fn ostree_remote_requires_the_signature(
    f: &Fixture,
    t: &Path,
    pubkey: &Path,
    signed: &str,
    unsigned: &str,
) {
    let repo = t.join("client-repo");
    let ostree = |args: &[&str]| {
        cmdext::command("ostree")
            .arg(format!("--repo={}", repo.display()))
            .args(args)
            .run_unchecked()
            .unwrap()
    };
    assert!(ostree(&["init", "--mode=bare-user"]).status.success());
    let url = format!("file://{}", f.workdir().join("cache/repo").display());
    let add = ostree(&[
        "remote",
        "add",
        "--set=gpg-verify=true",
        &format!("--gpg-import={}", pubkey.display()),
        "origin",
        &url,
    ]);
    assert!(
        add.status.success(),
        "{}",
        String::from_utf8_lossy(&add.stderr)
    );
    let pull = ostree(&["pull", "--commit-metadata-only", "origin", signed]);
    assert!(
        pull.status.success(),
        "signed commit refused: {}",
        String::from_utf8_lossy(&pull.stderr)
    );
    let pull = ostree(&["pull", "--commit-metadata-only", "origin", unsigned]);
    let err = String::from_utf8_lossy(&pull.stderr);
    assert!(!pull.status.success(), "unsigned commit accepted");
    assert!(err.to_lowercase().contains("signature"), "{err}");
}

/// skopeo with a `signedBy` rule for the key and the identity accepts the image
/// with our signature (placed as a `dir:` image's `signature-1`), and refuses it
/// with the signature tampered, for another identity, or for another key.
fn policy_accepts_the_container_signature(
    t: &Path,
    archive: &Path,
    simplesig: &Path,
    pubkey: &Path,
    other_home: &Path,
) {
    let image = t.join("image-dir");
    cmdext::command("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci-archive:{}", archive.display()))
        .arg(format!("dir:{}", image.display()))
        .run()
        .unwrap();
    let policy = |name: &str, key: &Path, identity: &str| {
        let p = t.join(format!("policy-{name}.json"));
        let v = serde_json::json!({
            "default": [{"type": "reject"}],
            "transports": {
                "dir": {"": [{
                    "type": "signedBy",
                    "keyType": "GPGKeys",
                    "keyPath": key,
                    "signedIdentity": {"type": "exactReference", "dockerReference": identity},
                }]},
            }
        });
        std::fs::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
        p
    };
    let copy = |policy: &Path| {
        let dest = tempfile::tempdir_in(t).unwrap();
        cmdext::command("skopeo")
            .arg("--policy")
            .arg(policy)
            .args(["copy", "--quiet"])
            .arg(format!("dir:{}", image.display()))
            .arg(format!("dir:{}", dest.path().display()))
            .run_unchecked()
            .unwrap()
    };
    let good = policy("good", pubkey, IDENTITY);
    // No signature at all: refused.
    assert!(!copy(&good).status.success());
    let sig = std::fs::read(simplesig).unwrap();
    std::fs::write(image.join("signature-1"), &sig).unwrap();
    let out = copy(&good);
    assert!(
        out.status.success(),
        "signed image refused: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other_identity = policy("identity", pubkey, "localhost/cosa-test/os:other");
    assert!(!copy(&other_identity).status.success());
    let other_key = t.join("other.gpg");
    common::gpg_export(other_home, &other_key);
    assert!(!copy(&policy("key", &other_key, IDENTITY)).status.success());
    let mut bad = sig.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(image.join("signature-1"), &bad).unwrap();
    assert!(!copy(&good).status.success());
}

/// Every artifact meta.json lists is there with its recorded sha256.
fn assert_artifacts_intact(dir: &Path) {
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).unwrap()).unwrap();
    let images = meta["images"].as_object().unwrap();
    assert!(!images.is_empty(), "{}: no artifacts", dir.display());
    for (name, a) in images {
        let file = dir.join(a["path"].as_str().unwrap());
        let sum = cmdext::command("sha256sum")
            .arg(&file)
            .run_get_string()
            .unwrap_or_else(|e| panic!("{name}: {e:#}"));
        assert_eq!(
            sum.split_whitespace().next(),
            a["sha256"].as_str(),
            "{name}: {}",
            file.display()
        );
    }
}

#[test]
fn prune_policy_keeps_what_it_says_and_breaks_no_kept_build() {
    let f = Fixture::new();
    let mut ids = Vec::new();
    for i in 0..4 {
        std::fs::write(
            f.config().join("overlays/10test/usr/lib/test-overlay"),
            format!("build {i}\n"),
        )
        .unwrap();
        f.cosa(&["build"]).ok();
        f.cosa(&["build-container"]).ok();
        ids.push(f.latest_meta()["buildid"].as_str().unwrap().to_string());
    }
    let [b1, b2, b3, b4] = [&ids[0], &ids[1], &ids[2], &ids[3]];
    f.cosa(&["tag", "add", "released", b2]).ok();
    // The three older builds were made 40 days ago.
    let old = cmdext::command("date")
        .args(["-u", "-d", "40 days ago", "+%Y-%m-%dT%H:%M:%SZ"])
        .run_get_string()
        .unwrap()
        .trim()
        .to_string();
    for id in [b1, b2, b3] {
        let p = f.workdir().join(format!("builds/{id}/x86_64/meta.json"));
        let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        m["coreos-assembler.build-timestamp"] = old.clone().into();
        std::fs::write(&p, serde_json::to_vec_pretty(&m).unwrap()).unwrap();
    }
    let t = tempfile::tempdir().unwrap();
    let policy = t.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "stable:\n  keep-last-n: 1\n  keep-younger-than: 30d\nnext:\n  keep-last-n: 10\n",
    )
    .unwrap();
    let policy_s = policy.to_str().unwrap();
    // What an interrupted build leaves: a directory builds.json does not list.
    let leftover = f.workdir().join("builds/9.interrupted/x86_64");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("partial.qcow2"), vec![0u8; 8192]).unwrap();
    let state = || {
        let mut dirs: Vec<String> = std::fs::read_dir(f.workdir().join("builds"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        dirs.sort();
        (f.builds_json(), dirs, f.ostree(&["refs"]))
    };
    let before = state();

    // Bad input, refused with nothing touched: a stream the policy does not name,
    // a config without a `stream` variable, a malformed policy.
    let e = f
        .cosa(&["prune", "--policy", policy_s, "--stream", "rawhide"])
        .err();
    assert!(e.contains("rawhide") && e.contains("next, stable"), "{e}");
    let e = f.cosa(&["prune", "--policy", policy_s]).err();
    assert!(e.contains("--stream"), "{e}");
    let bad = t.path().join("bad.yaml");
    std::fs::write(&bad, "stable: {keep-last-n: 0}\n").unwrap();
    let e = f
        .cosa(&[
            "prune",
            "--policy",
            bad.to_str().unwrap(),
            "--stream",
            "stable",
        ])
        .err();
    assert!(e.contains("bad.yaml") && e.contains("at least 1"), "{e}");
    assert_eq!(state(), before);

    // --dry-run says what would go and why the rest stays, and deletes nothing.
    let args = ["prune", "--policy", policy_s, "--stream", "stable"];
    let out = f.cosa(&[&args[..], &["--dry-run", "--json"]].concat()).ok();
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    let action = |id: &str| {
        plan["builds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(action(b4)["action"], "keep", "{plan}");
    assert_eq!(action(b2)["kept-because"], serde_json::json!(["tagged"]));
    assert_eq!(action(b3)["action"], "delete", "{plan}");
    assert_eq!(action(b1)["action"], "delete", "{plan}");
    assert_eq!(plan["leftovers"], serde_json::json!(["9.interrupted"]));
    let would_free = plan["freed-build-bytes"].as_u64().unwrap();
    assert!(would_free > 0, "{plan}");
    assert_eq!(state(), before);

    // The real run deletes exactly those, reclaims their artifacts, commits and
    // packages, and leaves every kept build whole.
    let out = f.cosa(&args).ok();
    assert!(out.contains(&format!("Deleting build {b3}")), "{out}");
    let kept: Vec<String> = f.builds_json()["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(kept, [b4.clone(), b2.clone()]);
    assert!(!leftover.exists(), "{out}");
    for id in [b1, b3] {
        assert!(!f.workdir().join("builds").join(id).exists(), "{id}");
        let gone = format!("cosa/build/{id}");
        assert!(!f.ostree(&["refs"]).lines().any(|l| l == gone), "{id}");
    }
    for id in [b4, b2] {
        assert_artifacts_intact(&f.workdir().join(format!("builds/{id}/x86_64")));
    }
    f.ostree(&["fsck"]);
    // The newest build still composes as before: nothing it needs was pruned.
    let out = f.cosa(&["build"]).ok();
    assert!(out.contains("No changes"), "{out}");
    let again = f.cosa(&args).ok();
    assert!(again.contains("Nothing to prune"), "{again}");
}
