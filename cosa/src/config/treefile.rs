//! rpm-ostree treefiles ("manifests"): the package set and tree tweaks of a stream.
//!
//! A treefile is YAML (`.yaml`, `.yml`) or JSON (`.json`), chosen by extension,
//! and is read as rpm-ostree reads it:
//!
//! - `include` (a file or a list), then `arch-include` (basearch -> file or list),
//!   then the matching `conditional-include` entries (`if:` one expression or a
//!   list that must all hold; `include:` a file, a list, or an inline treefile)
//!   name files relative to the including file. The included file is the base:
//!   the includer's scalars win, lists are concatenated with the included
//!   entries first, maps (`add-commit-metadata`, `variables`) merge with the
//!   includer winning. Between sibling includes rpm-ostree's order holds: for
//!   scalars the first sibling wins, and a later sibling's list entries come
//!   before an earlier one's. Loading a file twice (a cycle or a diamond) is an error.
//! - `variables` (booleans, non-negative integers, strings), with `basearch`
//!   and `releasever` set automatically, feed the `if:` expressions (see
//!   `vars`) and `${name}` substitution in `ref`, `automatic-version-prefix`,
//!   string values of `add-commit-metadata`, and the carried-along
//!   `metadata`, `rojig`, `mutate-os-release` and `platform-module`.
//!   Scripts are not substituted into.
//! - `packages` entries are split on whitespace (single quotes keep a version
//!   query such as `'podman >= 4.1'` whole), `packages-<basearch>` adds to them
//!   for that basearch only; the result is a sorted set, as in rpm-ostree.
//! - File paths (`add-files` sources, `postprocess-script`, `check-passwd` /
//!   `check-groups` files) are made absolute against the declaring file.
//!
//! Keys cosa does not know are errors naming the file, the key and its line.
//! Keys rpm-ostree knows but cosa does not act on (`selinux`, `rpmdb`,
//! `boot-location`, `lockfile-repos`, `check-passwd`, ...) are kept, merged by
//! rpm-ostree's rules, and listed by [`Treefile::unsupported_keys`].
//!
//! cosa adds one key, `initramfs-generator`: the absolute path, inside the
//! composed tree, of a dracut-compatible initramfs generator. The compose runs
//! it as `GEN [initramfs-args...] OUTPUT KVER`; without it, dracut is used.

mod fragment;
mod include;
mod keys;
mod layer;
#[cfg(test)]
mod tests;
mod vars;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use include::Loader;
use layer::Layer;

/// A fully resolved treefile: includes followed, conditions applied, variables
/// substituted, file paths absolute. Serializes with rpm-ostree's key names
/// (kebab-case) for `cosa manifest --json`; `variables` shows every variable in
/// effect, including the automatic `basearch` and `releasever`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Treefile {
    #[serde(rename = "ref", skip_serializing_if = "Option::is_none")]
    pub r#ref: Option<String>,
    /// The basearch this treefile was resolved for.
    pub basearch: String,
    /// Names of the rpm-md repos (from `.repo` files in `config_dir`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repos: Vec<String>,
    /// Package names (or provides, or quoted version queries), sorted, unique.
    pub packages: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub exclude_packages: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub releasever: Option<String>,
    /// Every variable in effect, `basearch` and `releasever` included.
    pub variables: BTreeMap<String, Value>,
    /// (absolute source on the build host, destination in the tree).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub add_files: Vec<(PathBuf, String)>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_files: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remove_from_packages: Vec<RemoveFromPackage>,
    /// Inline scripts, in execution order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub postprocess: Vec<String>,
    /// Absolute path of the script run after `postprocess`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postprocess_script: Option<PathBuf>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub units: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_target: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub etc_group_members: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub initramfs_args: Vec<String>,
    /// cosa extension: absolute path in the tree of a dracut-compatible
    /// generator, run as `GEN [initramfs-args...] OUTPUT KVER`; default dracut.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initramfs_generator: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub machineid_compat: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatic_version_prefix: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub add_commit_metadata: BTreeMap<String, Value>,
    /// ostree refs (e.g. `overlay/15fcos`) checked out over the packages.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ostree_layers: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommends: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub documentation: Option<bool>,
    /// rpm-ostree keys cosa keeps but does not act on, by name.
    #[serde(flatten)]
    pub unsupported: BTreeMap<String, Value>,
    /// Every file loaded, top-level first, in load order (canonical paths).
    #[serde(skip)]
    pub source_files: Vec<PathBuf>,
    /// Directory of the top-level treefile, where `.repo` files are looked up.
    #[serde(skip)]
    pub config_dir: PathBuf,
}

/// A `remove-from-packages` entry: delete the files of `package` matching any
/// of `patterns` (regular expressions). Serializes as `[package, patterns...]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveFromPackage {
    pub package: String,
    pub patterns: Vec<String>,
}

impl<'de> Deserialize<'de> for RemoveFromPackage {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut entry = Vec::<String>::deserialize(d)?.into_iter();
        let package = entry
            .next()
            .ok_or_else(|| serde::de::Error::invalid_length(0, &"[package, regex...]"))?;
        Ok(RemoveFromPackage {
            package,
            patterns: entry.collect(),
        })
    }
}

impl Serialize for RemoveFromPackage {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(1 + self.patterns.len()))?;
        seq.serialize_element(&self.package)?;
        for p in &self.patterns {
            seq.serialize_element(p)?;
        }
        seq.end()
    }
}

impl Treefile {
    /// Load `path` and everything it includes, for `basearch` (e.g. "x86_64"), fully resolved.
    pub fn load(path: &Path, basearch: &str) -> Result<Treefile> {
        Self::load_inner(path, basearch)
            .with_context(|| format!("loading treefile {}", path.display()))
    }

    /// The rpm-ostree keys present that cosa does not implement, sorted.
    pub fn unsupported_keys(&self) -> Vec<String> {
        self.unsupported.keys().cloned().collect()
    }

    fn load_inner(path: &Path, basearch: &str) -> Result<Treefile> {
        let path = fs_err::canonicalize(path)?;
        let mut loader = Loader::new(basearch);
        let layer = loader.load(&path)?;
        let config_dir = path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let variables = std::mem::take(&mut loader.variables);
        let mut tf = Treefile::from_layer(layer, basearch, config_dir, loader.source_files);
        tf.substitute(&variables)?;
        tf.variables = variables
            .iter()
            .map(|(k, v)| (k.clone(), v.to_json()))
            .collect();
        Ok(tf)
    }

    fn from_layer(
        l: Layer,
        basearch: &str,
        config_dir: PathBuf,
        source_files: Vec<PathBuf>,
    ) -> Treefile {
        Treefile {
            r#ref: l.r#ref,
            basearch: basearch.to_string(),
            repos: l.repos,
            packages: l.packages.into_iter().collect(),
            exclude_packages: l.exclude_packages,
            releasever: l.releasever.map(|v| v.to_string()),
            variables: BTreeMap::new(),
            add_files: l.add_files,
            remove_files: l.remove_files,
            remove_from_packages: l.remove_from_packages,
            postprocess: l.postprocess,
            postprocess_script: l.postprocess_script,
            units: l.units,
            default_target: l.default_target,
            etc_group_members: l.etc_group_members,
            initramfs_args: l.initramfs_args,
            initramfs_generator: l.initramfs_generator,
            machineid_compat: l.machineid_compat,
            automatic_version_prefix: l.automatic_version_prefix,
            add_commit_metadata: l.add_commit_metadata,
            ostree_layers: l.ostree_layers,
            recommends: l.recommends,
            documentation: l.documentation,
            unsupported: l.unsupported,
            source_files,
            config_dir,
        }
    }

    /// `${name}` substitution, in the fields where rpm-ostree does it.
    fn substitute(&mut self, variables: &BTreeMap<String, vars::VarValue>) -> Result<()> {
        let map = vars::substitution_map(variables)?;
        let subst = |what: &str, s: &mut String| -> Result<()> {
            *s = vars::substitute(s, &map).with_context(|| what.to_string())?;
            Ok(())
        };
        if let Some(r) = &mut self.r#ref {
            subst("ref", r)?;
        }
        if let Some(p) = &mut self.automatic_version_prefix {
            subst("automatic-version-prefix", p)?;
        }
        for (k, v) in &mut self.add_commit_metadata {
            if let Value::String(s) = v {
                subst(&format!("add-commit-metadata: {k}"), s)?;
            }
        }
        for key in ["mutate-os-release", "platform-module"] {
            if let Some(Value::String(s)) = self.unsupported.get_mut(key) {
                subst(key, s)?;
            }
        }
        for (key, fields) in [
            ("metadata", None),
            ("rojig", Some(&["name", "summary", "description"])),
        ] {
            let Some(Value::Object(obj)) = self.unsupported.get_mut(key) else {
                continue;
            };
            for (k, v) in obj.iter_mut() {
                if fields.is_some_and(|f| !f.contains(&k.as_str())) {
                    continue;
                }
                if let Value::String(s) = v {
                    subst(&format!("{key}: {k}"), s)?;
                }
            }
        }
        Ok(())
    }
}
