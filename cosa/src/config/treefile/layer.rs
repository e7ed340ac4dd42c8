//! The mergeable content of a treefile, and rpm-ostree's rules for merging an
//! included file into its includer.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde_json::Value;

use super::keys::{merge_kind, Merge};
use super::vars::VarValue;
use super::RemoveFromPackage;

/// Everything of a treefile that survives include resolution. Lists and maps
/// are empty when absent: for merging, absent and empty behave alike.
#[derive(Debug, Default)]
pub(super) struct Layer {
    pub(super) r#ref: Option<String>,
    pub(super) basearch: Option<String>,
    pub(super) repos: Vec<String>,
    pub(super) packages: BTreeSet<String>,
    pub(super) exclude_packages: Vec<String>,
    pub(super) releasever: Option<VarValue>,
    pub(super) add_files: Vec<(PathBuf, String)>,
    pub(super) remove_files: Vec<String>,
    pub(super) remove_from_packages: Vec<RemoveFromPackage>,
    pub(super) postprocess: Vec<String>,
    pub(super) postprocess_script: Option<PathBuf>,
    pub(super) units: Vec<String>,
    pub(super) default_target: Option<String>,
    pub(super) etc_group_members: Vec<String>,
    pub(super) initramfs_args: Vec<String>,
    pub(super) initramfs_generator: Option<String>,
    pub(super) machineid_compat: Option<bool>,
    pub(super) automatic_version_prefix: Option<String>,
    pub(super) add_commit_metadata: BTreeMap<String, Value>,
    pub(super) ostree_layers: Vec<String>,
    pub(super) recommends: Option<bool>,
    pub(super) documentation: Option<bool>,
    pub(super) unsupported: BTreeMap<String, Value>,
}

fn scalar<T>(dest: &mut Option<T>, src: Option<T>) {
    if dest.is_none() {
        *dest = src;
    }
}

fn list<T>(dest: &mut Vec<T>, mut src: Vec<T>) {
    src.append(dest);
    *dest = src;
}

fn map<T>(dest: &mut BTreeMap<String, T>, mut src: BTreeMap<String, T>) {
    src.append(dest);
    *dest = src;
}

impl Layer {
    /// Merge `inc`, a file this one includes: the includer's scalars win,
    /// lists get the included entries first, maps merge with the includer winning.
    pub(super) fn merge_included(&mut self, inc: Layer) {
        scalar(&mut self.r#ref, inc.r#ref);
        scalar(&mut self.basearch, inc.basearch);
        list(&mut self.repos, inc.repos);
        self.packages.extend(inc.packages);
        list(&mut self.exclude_packages, inc.exclude_packages);
        scalar(&mut self.releasever, inc.releasever);
        list(&mut self.add_files, inc.add_files);
        list(&mut self.remove_files, inc.remove_files);
        list(&mut self.remove_from_packages, inc.remove_from_packages);
        list(&mut self.postprocess, inc.postprocess);
        scalar(&mut self.postprocess_script, inc.postprocess_script);
        list(&mut self.units, inc.units);
        scalar(&mut self.default_target, inc.default_target);
        list(&mut self.etc_group_members, inc.etc_group_members);
        list(&mut self.initramfs_args, inc.initramfs_args);
        scalar(&mut self.initramfs_generator, inc.initramfs_generator);
        scalar(&mut self.machineid_compat, inc.machineid_compat);
        scalar(
            &mut self.automatic_version_prefix,
            inc.automatic_version_prefix,
        );
        map(&mut self.add_commit_metadata, inc.add_commit_metadata);
        list(&mut self.ostree_layers, inc.ostree_layers);
        scalar(&mut self.recommends, inc.recommends);
        scalar(&mut self.documentation, inc.documentation);
        for (key, src) in inc.unsupported {
            let merged = match self.unsupported.remove(&key) {
                None => src,
                Some(dest) => merge_value(merge_kind(&key), dest, src),
            };
            self.unsupported.insert(key, merged);
        }
    }
}

/// Merge the values of a key cosa keeps but does not interpret.
fn merge_value(how: Merge, dest: Value, src: Value) -> Value {
    match (how, dest, src) {
        (Merge::List, Value::Array(dest), Value::Array(mut src)) => {
            src.extend(dest);
            Value::Array(src)
        }
        (Merge::Set, Value::Array(dest), Value::Array(src)) => Value::Array(union(src, dest)),
        (Merge::Map, Value::Object(dest), Value::Object(mut src)) => {
            src.extend(dest);
            Value::Object(src)
        }
        (Merge::MapOfSets, Value::Object(dest), Value::Object(mut src)) => {
            for (k, d) in dest {
                let v = match (src.remove(&k), d) {
                    (Some(Value::Array(s)), Value::Array(d)) => Value::Array(union(s, d)),
                    (_, d) => d,
                };
                src.insert(k, v);
            }
            Value::Object(src)
        }
        (_, dest, _) => dest,
    }
}

fn union(a: Vec<Value>, b: Vec<Value>) -> Vec<Value> {
    let mut all: Vec<Value> = a.into_iter().chain(b).collect();
    all.sort_by_key(|v| v.to_string());
    all.dedup();
    all
}

/// Split package entries on whitespace, except inside single quotes, which
/// keep version queries such as `'podman >= 4.1'` whole (as rpm-ostree does).
pub(super) fn split_packages<'a>(
    entries: impl IntoIterator<Item = &'a String>,
) -> Result<BTreeSet<String>> {
    let mut out = BTreeSet::new();
    for entry in entries {
        let mut quoted = false;
        for (i, part) in entry.split('\'').enumerate() {
            quoted = i % 2 == 1;
            if quoted {
                if !part.is_empty() {
                    out.insert(part.to_string());
                }
            } else {
                out.extend(part.split_whitespace().map(str::to_string));
            }
        }
        if quoted {
            bail!("package entry `{entry}`: missing closing quote");
        }
    }
    Ok(out)
}
