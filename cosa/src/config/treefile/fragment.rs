//! One treefile as written, before includes are followed.
//!
//! Keys are checked while the parser still knows where it is, so an unknown
//! key is reported with its line (YAML) or the line where it ends (JSON).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::Value;

use super::keys::{classify, Field, KeyKind, Merge};
use super::layer::Layer;
use super::vars::{Conditions, ReleaseVer, VarValue};

/// A parsed treefile: the mergeable content plus what steers include resolution.
#[derive(Debug, Default)]
pub(super) struct Fragment {
    pub(super) layer: Layer,
    /// `packages` and the deprecated `bootstrap-packages`, not yet split.
    pub(super) packages: Vec<String>,
    /// `packages-<basearch>`, by basearch, not yet split.
    pub(super) arch_packages: BTreeMap<String, Vec<String>>,
    pub(super) variables: BTreeMap<String, VarValue>,
    pub(super) include: Vec<String>,
    pub(super) arch_include: BTreeMap<String, Vec<String>>,
    pub(super) conditional_include: Vec<ConditionalInclude>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ConditionalInclude {
    #[serde(rename = "if")]
    pub(super) condition: Conditions,
    pub(super) include: IncludeTarget,
}

/// What a conditional include pulls in: files, or a treefile written inline.
#[derive(Debug)]
pub(super) enum IncludeTarget {
    Files(Vec<String>),
    Inline(Box<Fragment>),
}

/// Parse one treefile; the format follows the file name's extension.
pub(super) fn parse(path: &Path, text: &str) -> Result<Fragment> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => {
            let mut de = serde_json::Deserializer::from_str(text);
            let f = de.deserialize_map(FragmentVisitor {
                inline: false,
                json: true,
            })?;
            de.end()?;
            Ok(f)
        }
        Some("yaml" | "yml") => match serde_yaml::from_str(text) {
            Ok(f) => Ok(f),
            // A file of only comments is an empty treefile, not an error.
            Err(_) if matches!(serde_yaml::from_str(text), Ok(serde_yaml::Value::Null)) => {
                Ok(Fragment::default())
            }
            Err(e) => Err(e.into()),
        },
        _ => bail!("unknown treefile format: the name must end in .yaml, .yml or .json"),
    }
}

impl Fragment {
    /// Make the file-relative paths absolute against `dir` (the declaring
    /// file's directory), check that the files exist, and check the values
    /// that the parser's types cannot.
    pub(super) fn prepare(&mut self, dir: &Path) -> Result<()> {
        let existing = |what: &str, p: &Path| -> Result<PathBuf> {
            let abs = dir.join(p);
            fs_err::metadata(&abs).with_context(|| format!("{what}: {}", abs.display()))?;
            Ok(abs)
        };
        for (src, dest) in &mut self.layer.add_files {
            // Only the directories ostree manages, as rpm-ostree checks them.
            let rel = dest.trim_start_matches('/');
            let managed = (rel.starts_with("usr/") && !rel.starts_with("usr/local/"))
                || ["etc/", "bin/", "sbin/", "lib/", "lib64/"]
                    .iter()
                    .any(|p| rel.starts_with(p));
            if !managed {
                bail!("add-files: unsupported destination {dest}: ostree manages only /usr (not /usr/local) and /etc");
            }
            *src = existing(&format!("add-files entry for {dest}"), src)?;
        }
        if let Some(g) = &self.layer.initramfs_generator {
            if !g.starts_with('/') {
                bail!("initramfs-generator: {g} must be an absolute path inside the tree");
            }
        }
        if let Some(script) = &mut self.layer.postprocess_script {
            *script = existing("postprocess-script", script)?;
        }
        // rpm-ostree reads these passwd/group files relative to the treefile too.
        for key in ["check-passwd", "check-groups"] {
            let Some(Value::Object(check)) = self.layer.unsupported.get_mut(key) else {
                continue;
            };
            if check.get("type").and_then(Value::as_str) != Some("file") {
                continue;
            }
            if let Some(Value::String(name)) = check.get_mut("filename") {
                let abs = existing(&format!("{key} filename"), Path::new(name))?;
                *name = abs.to_string_lossy().into_owned();
            }
        }
        for ci in &mut self.conditional_include {
            if let IncludeTarget::Inline(inline) = &mut ci.include {
                inline.prepare(dir)?;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Fragment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(FragmentVisitor {
            inline: false,
            json: false,
        })
    }
}

/// Keys that only make sense at the top of a file, not in an inline include.
const NOT_INLINE: &[&str] = &[
    "include",
    "arch-include",
    "conditional-include",
    "variables",
];

struct FragmentVisitor {
    inline: bool,
    /// JSON has no comments; rpm-ostree lets `comment*` keys stand in for them.
    json: bool,
}

impl<'de> Visitor<'de> for FragmentVisitor {
    type Value = Fragment;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a treefile (a mapping of keys to values)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fragment, A::Error> {
        let mut f = Fragment::default();
        let mut seen = BTreeMap::new();
        while let Some(kind) = map.next_key_seed(KeySeed {
            seen: &mut seen,
            inline: self.inline,
            json: self.json,
        })? {
            match kind {
                KeyKind::Supported(_, field) => read_field(&mut map, &mut f, field)?,
                KeyKind::ArchPackages(arch) => {
                    f.arch_packages.insert(arch, or_default(&mut map)?);
                }
                KeyKind::Unsupported(name, merge) => {
                    let v = match merge {
                        Merge::Scalar => map.next_value()?,
                        Merge::List | Merge::Set => {
                            map.next_value::<Option<_>>()?.map(Value::Array)
                        }
                        Merge::Map | Merge::MapOfSets => {
                            map.next_value::<Option<_>>()?.map(Value::Object)
                        }
                    };
                    if let Some(v) = v {
                        f.layer.unsupported.insert(name.to_string(), v);
                    }
                }
                KeyKind::JsonComment => {
                    map.next_value::<de::IgnoredAny>()?;
                }
                // KeySeed has already refused these.
                KeyKind::DeriveOnly | KeyKind::Unknown => {
                    return Err(de::Error::custom("unexpected key"));
                }
            }
        }
        Ok(f)
    }
}

/// A value where `null` (e.g. a key whose entries are all commented out)
/// means absent, as it does for rpm-ostree.
fn or_default<'de, A, T>(map: &mut A) -> Result<T, A::Error>
where
    A: MapAccess<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(map.next_value::<Option<T>>()?.unwrap_or_default())
}

fn read_field<'de, A: MapAccess<'de>>(
    map: &mut A,
    f: &mut Fragment,
    field: Field,
) -> Result<(), A::Error> {
    let l = &mut f.layer;
    match field {
        Field::Ref => l.r#ref = map.next_value()?,
        Field::Basearch => l.basearch = map.next_value()?,
        Field::Repos => l.repos = or_default(map)?,
        Field::Packages | Field::BootstrapPackages => {
            f.packages.extend(or_default::<_, Vec<String>>(map)?)
        }
        Field::ExcludePackages => l.exclude_packages = or_default(map)?,
        Field::Releasever => l.releasever = map.next_value::<Option<ReleaseVer>>()?.map(|r| r.0),
        Field::Variables => f.variables = or_default(map)?,
        Field::Include => f.include = or_default::<_, FileList>(map)?.0,
        Field::ArchInclude => {
            let m: BTreeMap<String, FileList> = or_default(map)?;
            f.arch_include = m.into_iter().map(|(k, v)| (k, v.0)).collect();
        }
        Field::ConditionalInclude => f.conditional_include = or_default(map)?,
        Field::AddFiles => l.add_files = or_default(map)?,
        Field::RemoveFiles => l.remove_files = or_default(map)?,
        Field::RemoveFromPackages => l.remove_from_packages = or_default(map)?,
        Field::Postprocess => l.postprocess = or_default(map)?,
        Field::PostprocessScript => l.postprocess_script = map.next_value()?,
        Field::Units => l.units = or_default(map)?,
        Field::DefaultTarget => l.default_target = map.next_value()?,
        Field::EtcGroupMembers => l.etc_group_members = or_default(map)?,
        Field::InitramfsArgs => l.initramfs_args = or_default(map)?,
        Field::InitramfsGenerator => l.initramfs_generator = map.next_value()?,
        Field::MachineidCompat => l.machineid_compat = map.next_value()?,
        Field::AutomaticVersionPrefix => l.automatic_version_prefix = map.next_value()?,
        Field::AddCommitMetadata => l.add_commit_metadata = or_default(map)?,
        Field::OstreeLayers => l.ostree_layers = or_default(map)?,
        Field::Recommends => l.recommends = map.next_value()?,
        Field::Documentation => l.documentation = map.next_value()?,
    }
    Ok(())
}

/// Reads one key and judges it, so that errors carry the key's position.
struct KeySeed<'a> {
    /// Current key name -> the spelling used, to catch duplicates and legacy+new pairs.
    seen: &'a mut BTreeMap<String, String>,
    inline: bool,
    json: bool,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = KeyKind;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<KeyKind, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = KeyKind;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a treefile key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<KeyKind, E> {
        if self.json && key.starts_with("comment") {
            return Ok(KeyKind::JsonComment);
        }
        let kind = classify(key);
        let name = match &kind {
            KeyKind::Supported(name, _) | KeyKind::Unsupported(name, _) => name.to_string(),
            KeyKind::ArchPackages(_) => key.to_string(),
            KeyKind::DeriveOnly => {
                return Err(E::custom(format!(
                    "key `{key}` belongs to client-side treefiles; composes do not accept it"
                )))
            }
            KeyKind::Unknown | KeyKind::JsonComment => {
                return Err(E::custom(format!("unknown key `{key}`")))
            }
        };
        if self.inline && NOT_INLINE.contains(&name.as_str()) {
            return Err(E::custom(format!(
                "key `{key}` is not allowed in an inline conditional include"
            )));
        }
        if let Some(prev) = self.seen.insert(name, key.to_string()) {
            return Err(if prev == key {
                E::custom(format!("duplicate key `{key}`"))
            } else {
                E::custom(format!("keys `{prev}` and `{key}` are the same setting"))
            });
        }
        Ok(kind)
    }
}

/// A file name or a list of them (`include`, `arch-include` values).
#[derive(Default)]
struct FileList(Vec<String>);

struct FileListVisitor;

impl<'de> Visitor<'de> for FileListVisitor {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a file name or a list of file names")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Vec<String>, E> {
        Ok(vec![v.to_string()])
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let mut v = Vec::new();
        while let Some(s) = seq.next_element()? {
            v.push(s);
        }
        Ok(v)
    }
}

impl<'de> Deserialize<'de> for FileList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(FileListVisitor).map(FileList)
    }
}

struct IncludeTargetVisitor;

impl<'de> Visitor<'de> for IncludeTargetVisitor {
    type Value = IncludeTarget;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a file name, a list of file names, or an inline treefile")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<IncludeTarget, E> {
        FileListVisitor.visit_str(v).map(IncludeTarget::Files)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<IncludeTarget, A::Error> {
        FileListVisitor.visit_seq(seq).map(IncludeTarget::Files)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<IncludeTarget, A::Error> {
        // Inline includes take no `comment*` keys, even in a JSON file.
        let inline = FragmentVisitor {
            inline: true,
            json: false,
        }
        .visit_map(map)?;
        Ok(IncludeTarget::Inline(Box::new(inline)))
    }
}

impl<'de> Deserialize<'de> for IncludeTarget {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(IncludeTargetVisitor)
    }
}
