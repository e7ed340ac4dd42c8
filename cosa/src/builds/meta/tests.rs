//! meta.json's contract: what coreos-assembler's published schema (`src/v1.json`)
//! asks of the keys cosa writes, checked on the Meta each stage makes.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::*;
use crate::builds::artifact::Artifact;
use crate::compose::{pkgcache::ImportStats, record, Composed};

/// The keys coreos-assembler's schema requires.
const UPSTREAM_REQUIRED: &[&str] = &[
    "buildid",
    "name",
    "ostree-commit",
    "ostree-timestamp",
    "ostree-version",
];

/// The JSON type coreos-assembler's schema gives each key cosa writes. Its top level
/// has `additionalProperties: false`: a key missing here must not be written.
const UPSTREAM_TYPES: &[(&str, &str)] = &[
    ("name", "string"),
    ("buildid", "string"),
    ("ref", "string"),
    ("summary", "string"),
    ("ostree-commit", "string"),
    ("ostree-content-checksum", "string"),
    ("ostree-version", "string"),
    ("ostree-timestamp", "string"),
    ("rpm-ostree-inputhash", "string"),
    ("coreos-assembler.basearch", "string"),
    ("coreos-assembler.build-timestamp", "string"),
    ("coreos-assembler.overrides-active", "boolean"),
    ("coreos-assembler.config-gitrev", "string"),
    ("coreos-assembler.config-dirty", "string"),
    ("coreos-assembler.oci-imported", "boolean"),
    ("coreos-assembler.oci-imported-labels", "object"),
    ("fedora-coreos.parent-commit", "string"),
    ("pkgdiff", "array"),
    ("images", "object"),
    ("base-oscontainer", "object"),
    // Not written by cosa, kept (in `extra`) when another tool wrote it.
    ("build-url", "string"),
];

/// Keys the schema gives a `minLength: 64` (sha256 digests).
const UPSTREAM_DIGESTS: &[&str] = &[
    "ostree-commit",
    "ostree-content-checksum",
    "rpm-ostree-inputhash",
    "fedora-coreos.parent-commit",
];

fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_u64() || n.is_i64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Panics unless `m`, as written, is what coreos-assembler's schema accepts.
fn assert_upstream_contract(m: &Meta) {
    let v = serde_json::to_value(m).unwrap();
    let obj = v.as_object().unwrap();
    for k in UPSTREAM_REQUIRED {
        assert!(obj.contains_key(*k), "required key {k} missing: {v:#}");
    }
    for (k, val) in obj {
        let want = UPSTREAM_TYPES
            .iter()
            .find(|(n, _)| n == k)
            .unwrap_or_else(|| panic!("{k} is not a key of coreos-assembler's schema"))
            .1;
        assert_eq!(type_of(val), want, "type of {k}");
        if UPSTREAM_DIGESTS.contains(&k.as_str()) {
            assert!(val.as_str().unwrap().len() >= 64, "{k} is not a digest");
        }
    }
    let ts = obj["ostree-timestamp"].as_str().unwrap();
    assert!(
        regex::Regex::new(TIMESTAMP_PATTERN).unwrap().is_match(ts),
        "ostree-timestamp {ts}"
    );
    if let Some(images) = obj.get("images").and_then(Value::as_object) {
        assert!(images.contains_key("ostree"), "images without ostree");
        for (name, a) in images {
            assert_eq!(type_of(&a["path"]), "string", "images.{name}.path");
            assert_eq!(type_of(&a["sha256"]), "string", "images.{name}.sha256");
            assert_eq!(type_of(&a["size"]), "integer", "images.{name}.size");
            for k in ["uncompressed-sha256", "uncompressed-size"] {
                if let Some(x) = a.get(k) {
                    let want = if k.ends_with("size") {
                        "integer"
                    } else {
                        "string"
                    };
                    assert_eq!(type_of(x), want, "images.{name}.{k}");
                }
            }
        }
    }
    if let Some(pkgs) = obj.get("pkgdiff") {
        for item in pkgs.as_array().unwrap() {
            assert_eq!(type_of(item), "array", "pkgdiff item");
            assert!(!item.as_array().unwrap().is_empty(), "pkgdiff item");
        }
    }
    if let Some(labels) = obj.get("coreos-assembler.oci-imported-labels") {
        for (k, l) in labels.as_object().unwrap() {
            assert_eq!(type_of(l), "string", "label {k}");
        }
    }
    if let Some(c) = obj.get("base-oscontainer") {
        assert_eq!(type_of(&c["image"]), "string", "base-oscontainer.image");
    }
}

const COMMIT: &str = "f15f5b25cf138a7683e3d200c53ece2091bf71d31332135da87892ab72ff4ee3";
const DIGEST: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

fn artifact(path: &str) -> Artifact {
    Artifact {
        path: path.into(),
        sha256: DIGEST.into(),
        size: 3,
        uncompressed_sha256: None,
        uncompressed_size: None,
        signatures: Vec::new(),
    }
}

/// What `cosa build` writes.
fn composed() -> Meta {
    let composed = Composed {
        commit: COMMIT.into(),
        content_checksum: DIGEST.into(),
        kernel: Some("6.1.0".into()),
        initramfs: None,
        import: ImportStats::default(),
    };
    record::meta(&record::ComposedBuild {
        version: "1.0.1",
        ostree_ref: "demo/x86_64/stable",
        composed: &composed,
        inputhash: DIGEST,
        timestamp: 1_700_000_000,
        arch: "x86_64",
        overrides_active: true,
        config_git: Some(("abc123".into(), true)),
        pkgdiff: Some(pkgdiff::pkgdiff(&Default::default(), &Default::default())),
    })
}

/// What `cosa import` writes.
fn imported(base: Option<&Meta>) -> Meta {
    let labels = BTreeMap::from([("ostree.commit".to_string(), COMMIT.to_string())]);
    Meta::imported(
        base,
        "1.0.2",
        &ImportedImage {
            image: "oci-archive:derived.ociarchive",
            commit: DIGEST,
            base_commit: COMMIT,
            labels: &labels,
        },
        1_700_000_001,
        "x86_64",
    )
}

#[test]
fn composed_build_meets_the_contract() {
    let m = composed();
    assert_upstream_contract(&m);
    assert_eq!(m.name, "demo");
    assert_eq!(m.summary.as_deref(), Some("demo 1.0.1"));
    assert_eq!(m.ostree_timestamp, "2023-11-14T22:13:20Z");
    assert_eq!(m.get("coreos-assembler.config-dirty"), Some(json!("true")));
    // An empty pkgdiff is still recorded (there was a previous build to compare with).
    assert_eq!(m.get("pkgdiff"), Some(json!([])));
}

#[test]
fn imported_build_meets_the_contract() {
    let base = composed();
    let m = imported(Some(&base));
    assert_upstream_contract(&m);
    assert_eq!(m.name, "demo");
    assert_eq!(m.ostree_ref.as_deref(), Some("demo/x86_64/stable"));
    let orphan = imported(None);
    assert_upstream_contract(&orphan);
    assert_eq!(orphan.name, "cosa");
    assert_eq!(orphan.ostree_ref, None);
}

/// build-container, the image and live stages, compress and push add to a build's meta.
#[test]
fn later_stages_meet_the_contract() {
    let mut m = composed();
    // build-container
    m.images
        .insert("ostree".into(), artifact("x-ostree.ociarchive"));
    m.images
        .insert("oci-manifest".into(), artifact("x-manifest.json"));
    assert_upstream_contract(&m);
    // images and live media
    let t = tempfile::tempdir().unwrap();
    let made = t.path().join("x-qemu.qcow2");
    fs_err::write(&made, "abc").unwrap();
    let build = tempfile::tempdir().unwrap();
    crate::builds::artifact::install(
        build.path(),
        &mut m,
        vec![("qemu".into(), made.clone(), artifact("x-qemu.qcow2"))],
    )
    .unwrap();
    assert_eq!(m.images["qemu"].path, "x-qemu.qcow2");
    assert_upstream_contract(&m);
    // compress
    let mut c = artifact("x-qemu.qcow2.xz");
    c.uncompressed_sha256 = Some(DIGEST.into());
    c.uncompressed_size = Some(3);
    m.images.insert("qemu".into(), c);
    // push-container
    m.base_oscontainer = Some(ContainerImage {
        image: "quay.io/x/os".into(),
        digest: Some(format!("sha256:{DIGEST}")),
    });
    assert_upstream_contract(&m);
}

/// Every key this struct can write, with a value.
fn fully_populated() -> Meta {
    let mut m = imported(Some(&composed()));
    let c = composed();
    m.ostree_content_checksum = c.ostree_content_checksum;
    m.rpm_ostree_inputhash = c.rpm_ostree_inputhash;
    m.overrides_active = c.overrides_active;
    m.config_gitrev = c.config_gitrev;
    m.config_dirty = Some(false);
    m.pkgdiff = Some(pkgdiff::pkgdiff(
        &Default::default(),
        &serde_json::from_value(json!({"packages": {"a": {"evra": "1-1.x86_64"}}})).unwrap(),
    ));
    m.images.insert("ostree".into(), artifact("x.ociarchive"));
    m.base_oscontainer = Some(ContainerImage {
        image: "quay.io/x/os".into(),
        digest: None,
    });
    m.extra.insert("build-url".into(), json!("https://ci/1"));
    m
}

#[test]
fn every_key_is_readable_by_its_json_name() {
    let m = fully_populated();
    assert_upstream_contract(&m);
    let v = serde_json::to_value(&m).unwrap();
    let written = v.as_object().unwrap();
    let schema = schema::json_schema();
    for key in schema["properties"].as_object().unwrap().keys() {
        assert!(written.contains_key(key), "fully_populated() lacks {key}");
    }
    for (k, val) in written {
        assert_eq!(m.get(k).as_ref(), Some(val), "--get {k}");
    }
    assert_eq!(m.get("images.ostree.path"), Some(json!("x.ociarchive")));
    assert_eq!(m.get("coreos-assembler.config-dirty"), Some(json!("false")));
}

#[test]
fn unknown_keys_survive_a_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let p = t.path().join("meta.json");
    let mut v = serde_json::to_value(composed()).unwrap();
    v["amis"] = json!([{"name": "us-east-1", "hvm": "ami-1"}]);
    v["images"] =
        json!({"ostree": {"path": "o", "sha256": DIGEST, "size": 1, "skip-compression": true}});
    fs_err::write(&p, serde_json::to_vec(&v).unwrap()).unwrap();
    let m = Meta::load(&p).unwrap();
    assert_eq!(m.extra["amis"], v["amis"]);
    m.save(&p).unwrap();
    let back: Value = serde_json::from_slice(&fs_err::read(&p).unwrap()).unwrap();
    assert_eq!(back["amis"], v["amis"]);
    assert_eq!(back["rpm-ostree-inputhash"], v["rpm-ostree-inputhash"]);
}

#[test]
fn required_keys_are_required() {
    let mut v = serde_json::to_value(composed()).unwrap();
    v.as_object_mut().unwrap().remove("ostree-commit");
    let e = serde_json::from_value::<Meta>(v).unwrap_err();
    assert!(e.to_string().contains("ostree-commit"), "{e}");
    let mut v = serde_json::to_value(composed()).unwrap();
    v["coreos-assembler.config-dirty"] = json!("maybe");
    assert!(serde_json::from_value::<Meta>(v).is_err());
}

/// The project's schema says what upstream says of the keys cosa writes.
#[test]
fn schema_agrees_with_upstream() {
    let s = schema::json_schema();
    let required: Vec<&str> = s["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let mut want = UPSTREAM_REQUIRED.to_vec();
    want.sort();
    let mut have = required.clone();
    have.sort();
    assert_eq!(have, want);
    for (k, prop) in s["properties"].as_object().unwrap() {
        let (_, t) = UPSTREAM_TYPES
            .iter()
            .find(|(n, _)| n == k)
            .unwrap_or_else(|| panic!("{k} is not a key of coreos-assembler's schema"));
        let prop = match prop.get("$ref").and_then(Value::as_str) {
            Some(r) => &s["definitions"][r.trim_start_matches("#/definitions/")],
            None => prop,
        };
        assert_eq!(
            prop["type"],
            json!(t),
            "type of {k} in the project's schema"
        );
    }
}
