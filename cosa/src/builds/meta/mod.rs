//! A build's `meta.json`, in coreos-assembler's schema.
//!
//! The keys cosa writes are typed fields: the keys coreos-assembler's schema requires
//! are plain fields, the ones a stage adds later (`images`, `pkgdiff`, …) are
//! optional. Keys cosa does not know (written by other tools) are kept in `extra`
//! and written back unchanged. `schema.rs` derives the project's JSON schema of this
//! struct (`docs/meta.schema.json`) and tests it against upstream's contract.

mod lookup;
pub mod pkgdiff;
pub mod schema;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::artifact::Artifact;
use super::workdir::write_atomic;
pub use pkgdiff::{PkgDiff, PkgDiffKind, PkgVersions};

/// The schema's pattern for `ostree-timestamp` (what [`super::history::rfc3339`] writes).
const TIMESTAMP_PATTERN: &str = r"^\d{4}-\d{2}-\d{2}T.*Z$";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
#[schemars(title = "cosa build meta.json")]
pub struct Meta {
    /// The OS name: the first component of the ref; stateroot and artifact prefix.
    pub name: String,
    #[schemars(length(min = 1))]
    pub buildid: String,
    /// The ostree ref the build's commit was written to.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub ostree_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub summary: Option<String>,
    #[schemars(length(min = 64))]
    pub ostree_commit: String,
    /// The sha256 of the commit's content (its tree), without its metadata.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 64))]
    pub ostree_content_checksum: Option<String>,
    #[schemars(length(min = 1))]
    pub ostree_version: String,
    /// The commit's timestamp, `2020-01-15T19:31:31Z`.
    #[schemars(regex(pattern = TIMESTAMP_PATTERN))]
    pub ostree_timestamp: String,
    /// The hash of everything that determines a composed build's content.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 64))]
    pub rpm_ostree_inputhash: Option<String>,
    #[serde(
        rename = "coreos-assembler.basearch",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1))]
    pub basearch: Option<String>,
    /// When the build was made (not the commit's timestamp, which may be fixed).
    #[serde(
        rename = "coreos-assembler.build-timestamp",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1))]
    pub build_timestamp: Option<String>,
    /// RPMs from `overrides/rpm` went into the build.
    #[serde(
        rename = "coreos-assembler.overrides-active",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub overrides_active: Option<bool>,
    /// The config's git commit, when the config is a git checkout.
    #[serde(
        rename = "coreos-assembler.config-gitrev",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 1))]
    pub config_gitrev: Option<String>,
    /// Whether the config had uncommitted changes: `"true"` or `"false"`, a string
    /// as coreos-assembler's schema types it.
    #[serde(
        rename = "coreos-assembler.config-dirty",
        default,
        skip_serializing_if = "Option::is_none",
        with = "bool_string"
    )]
    #[schemars(with = "Option<String>", length(min = 1))]
    pub config_dirty: Option<bool>,
    /// The build was imported from a container image (`cosa import`), not composed.
    #[serde(
        rename = "coreos-assembler.oci-imported",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub oci_imported: Option<bool>,
    /// The imported image's labels.
    #[serde(
        rename = "coreos-assembler.oci-imported-labels",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub oci_imported_labels: Option<BTreeMap<String, String>>,
    /// The commit an imported image was derived from.
    #[serde(
        rename = "fedora-coreos.parent-commit",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(length(min = 64))]
    pub parent_commit: Option<String>,
    /// Package changes since the previous build.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkgdiff: Option<Vec<PkgDiff>>,
    /// The build's artifacts by name (platform, `ostree`, `live-iso`, …). When there
    /// are any, coreos-assembler's schema wants `ostree` (the OCI archive) among them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("required" = ["ostree"]))]
    pub images: BTreeMap<String, Artifact>,
    /// Where `cosa push-container` pushed the OCI archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_oscontainer: Option<ContainerImage>,
    /// Keys cosa does not know, kept so that a load and save changes nothing else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// A pushed container image (coreos-assembler's `primary-image`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ContainerImage {
    /// The repository it was pushed to, without transport.
    pub image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

impl Meta {
    /// The keys every build has, whichever stage made it (compose or import):
    /// `timestamp` is the commit's, in Unix seconds.
    pub fn new(name: &str, buildid: &str, ostree_commit: &str, timestamp: u64, arch: &str) -> Self {
        Meta {
            name: name.to_string(),
            buildid: buildid.to_string(),
            ostree_commit: ostree_commit.to_string(),
            ostree_version: buildid.to_string(),
            ostree_timestamp: super::history::rfc3339(timestamp),
            basearch: Some(arch.to_string()),
            build_timestamp: Some(super::history::now_rfc3339()),
            ..Meta::default()
        }
    }

    #[fn_error_context::context("loading {}", path.display())]
    pub fn load(path: &Path) -> Result<Self> {
        let b = fs_err::read(path)?;
        Ok(serde_json::from_slice(&b)?)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut s = serde_json::to_vec_pretty(self)
            .with_context(|| format!("serializing {}", path.display()))?;
        s.push(b'\n');
        write_atomic(path, &s)
    }

    /// The commit's timestamp in Unix seconds (0 when it does not parse).
    pub fn ostree_timestamp_secs(&self) -> u64 {
        chrono::DateTime::parse_from_rfc3339(&self.ostree_timestamp)
            .map_or(0, |t| t.timestamp() as u64)
    }
}

/// `Option<bool>` as the strings `"true"`/`"false"`.
mod bool_string {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<bool>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(b) => s.serialize_str(if *b { "true" } else { "false" }),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<bool>, D::Error> {
        match Option::<String>::deserialize(d)?.as_deref() {
            None => Ok(None),
            Some("true") => Ok(Some(true)),
            Some("false") => Ok(Some(false)),
            Some(other) => Err(D::Error::custom(format!(
                "expected \"true\" or \"false\", got {other:?}"
            ))),
        }
    }
}
/// What `cosa import` learned of the image it made a build of.
pub struct ImportedImage<'a> {
    /// The image reference as given (`oci-archive:derived.ociarchive`).
    pub image: &'a str,
    pub commit: &'a str,
    /// The commit the image was derived from (its `ostree.commit` label).
    pub base_commit: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

impl Meta {
    /// The meta.json of build `buildid` imported from `img`; `base` is the build
    /// the image was derived from, when it is in the history (name and ref follow it).
    pub fn imported(
        base: Option<&Meta>,
        buildid: &str,
        img: &ImportedImage,
        timestamp: u64,
        arch: &str,
    ) -> Self {
        let name = base.map_or("cosa", |m| m.name.as_str());
        Meta {
            summary: Some(format!("{name} {buildid} (imported from {})", img.image)),
            ostree_ref: base.and_then(|m| m.ostree_ref.clone()),
            oci_imported: Some(true),
            oci_imported_labels: Some(img.labels.clone()),
            parent_commit: Some(img.base_commit.to_string()),
            ..Meta::new(name, buildid, img.commit, timestamp, arch)
        }
    }
}
