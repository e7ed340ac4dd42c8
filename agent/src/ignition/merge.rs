//! `ignition.config.merge` and `ignition.config.replace`: the referenced configs
//! are folded into one config, with Ignition's merge rules, before it is typed
//! and planned. Only inline `data:` URLs can be referenced (the agent fetches
//! nothing); that is what coreos-installer's `iso customize --live-ignition`
//! writes: the user's config, gzipped, merged into a wrapper config.
//!
//! The merge works on JSON values: every config, parent or child, is first
//! checked against the typed schema on its own, so an error names the config it
//! is in; the merged result is typed again by the caller.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{Map, Value};

use super::plan::{read_resource, since};
use super::schema::{Resource, VERSIONS};
use super::{typed, version};

/// How many levels of referenced configs are followed. Ignition has no limit;
/// data URLs cannot form a loop, but each level inflates the next, so a bound
/// turns a runaway config into a clear error.
pub const MAX_DEPTH: usize = 10;

/// `v` (a config `depth` references below the provided one) with its
/// references resolved depth first: the replacement if there is one, else `v`
/// with each merged config folded in, in order. The result has no
/// `ignition.config`; its version is the highest among the configs, since the
/// 3.x specs only add fields.
pub fn resolve(mut v: Value, depth: usize) -> Result<Value> {
    let own = version(&v)?;
    // Checking the whole config before following a reference reports this
    // config's own mistakes first, and types the references.
    let refs = typed(&v)?.ignition.config;
    if let Some(ign) = v.get_mut("ignition").and_then(Value::as_object_mut) {
        ign.remove("config");
    }
    let Some(refs) = refs else {
        return Ok(v);
    };
    if let Some(r) = refs.replace.as_ref().filter(|r| r.source.is_some()) {
        // As in Ignition, a replacement makes this config's merges moot too.
        let mut new = child(own, "ignition.config.replace", r, depth)?;
        let minor = version(&new)?.max(own);
        set_version(&mut new, minor);
        return Ok(new);
    }
    let mut minor = own;
    for (i, r) in refs.merge.iter().flatten().enumerate() {
        let c = child(own, &format!("ignition.config.merge[{i}]"), r, depth)?;
        minor = minor.max(version(&c)?);
        if let (Value::Object(p), Value::Object(c)) = (&mut v, c) {
            merge_object(p, c, "");
        }
        set_version(&mut v, minor);
    }
    Ok(v)
}

/// The config `r` references from `field` of a config of spec 3.`minor`,
/// resolved in turn.
fn child(minor: u32, field: &str, r: &Resource, depth: usize) -> Result<Value> {
    if depth >= MAX_DEPTH {
        bail!("{field}: referenced configs nest more than {MAX_DEPTH} levels deep");
    }
    // Spec 3.0.0 references had only `source` and `verification`.
    let compression = format!("{field}.compression");
    since(minor, 1, r.compression.is_some(), &compression)?;
    let headers = format!("{field}.httpHeaders");
    since(minor, 1, r.http_headers.is_some(), &headers)?;
    let bytes = read_resource(field, r)?.ok_or_else(|| anyhow!("{field}.source: required"))?;
    let v: Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{field}: the referenced config is not valid JSON"))?;
    resolve(v, depth + 1).with_context(|| format!("{field} (referenced config)"))
}

/// Sets `ignition.version` of `v`, a version-checked config, to 3.`minor`.0.
fn set_version(v: &mut Value, minor: u32) {
    let name = VERSIONS.iter().find(|(_, m)| *m == minor).map(|(s, _)| *s);
    let ign = v.get_mut("ignition").and_then(Value::as_object_mut);
    if let (Some(ign), Some(name)) = (ign, name) {
        ign.insert("version".into(), Value::String(name.into()));
    }
}

/// `parent.k` for the rule tables below (list indices are not part of it).
fn join(parent: &str, k: &str) -> String {
    if parent.is_empty() {
        k.to_string()
    } else {
        format!("{parent}.{k}")
    }
}

/// Merges `child` onto `parent`, objects found at `path`. Like Ignition: a field
/// the child sets wins (a null counts as unset), objects merge recursively,
/// lists merge per `list_key`.
fn merge_object(parent: &mut Map<String, Value>, child: Map<String, Value>, path: &str) {
    drop_shadowed(parent, &child, path);
    for (k, c) in child {
        if c.is_null() {
            continue;
        }
        let p = join(path, &k);
        match (parent.entry(k).or_insert(Value::Null), c) {
            (Value::Object(po), Value::Object(co)) => merge_object(po, co, &p),
            (Value::Array(pa), Value::Array(ca)) => merge_list(pa, ca, &p),
            (slot, c) => *slot = c,
        }
    }
}

/// What identifies an entry of a list, so a child's entry updates the parent's.
#[derive(Clone, Copy)]
enum Key {
    /// This field of the entry object.
    Field(&'static str),
    /// `number` when not 0, else `label` (Ignition's partition key).
    Partition,
    /// The entry itself: lists of strings are sets.
    Value,
    /// None: the lists are concatenated (`append`, command-line options).
    Concat,
}

/// The key of the list at `path` (Ignition's `Key()` / `IgnoreDuplicates()`).
fn list_key(path: &str) -> Key {
    match path {
        "storage.files" | "storage.directories" | "storage.links" => Key::Field("path"),
        "storage.disks" | "storage.filesystems" => Key::Field("device"),
        "storage.disks.partitions" => Key::Partition,
        "storage.raid"
        | "storage.luks"
        | "passwd.users"
        | "passwd.groups"
        | "systemd.units"
        | "systemd.units.dropins" => Key::Field("name"),
        "storage.luks.clevis.tang" => Key::Field("url"),
        "ignition.security.tls.certificateAuthorities" => Key::Field("source"),
        "storage.files.append"
        | "storage.filesystems.options"
        | "storage.filesystems.mountOptions"
        | "storage.raid.options"
        | "storage.luks.options" => Key::Concat,
        p if p.ends_with(".httpHeaders") => Key::Field("name"),
        _ => Key::Value,
    }
}

/// The key of `entry` (`Null` if it has none, as Ignition's empty key).
fn key_of(key: Key, entry: &Value) -> Value {
    match key {
        Key::Field(f) => entry.get(f).cloned().unwrap_or(Value::Null),
        Key::Partition => match (entry.get("number"), entry.get("label")) {
            (Some(n), _) if n.as_u64().is_some_and(|n| n != 0) => {
                Value::Array(vec!["number".into(), n.clone()])
            }
            (_, Some(l)) if !l.is_null() => Value::Array(vec!["label".into(), l.clone()]),
            _ => Value::Null,
        },
        Key::Value | Key::Concat => entry.clone(),
    }
}

/// Appends `child`'s entries to `parent`'s, except that an entry whose key a
/// parent entry has is merged into that entry, where it stands.
fn merge_list(parent: &mut Vec<Value>, child: Vec<Value>, path: &str) {
    let key = list_key(path);
    if let Key::Concat = key {
        parent.extend(child);
        return;
    }
    for c in child {
        let k = key_of(key, &c);
        match (parent.iter_mut().find(|p| key_of(key, p) == k), c) {
            (Some(Value::Object(po)), Value::Object(co)) => merge_object(po, co, path),
            (Some(slot), c) => *slot = c,
            (None, c) => parent.push(c),
        }
    }
}

/// Lists whose entries share one key space: a path is a file, a directory or a
/// link, and an argument should or should not exist.
const SHARED: &[(&str, &[&str])] = &[
    ("storage", &["files", "directories", "links"]),
    ("kernelArguments", &["shouldExist", "shouldNotExist"]),
];

/// Removes the parent entries a child entry of a sibling list replaces (a
/// directory in the child replaces a file of the parent at the same path).
fn drop_shadowed(parent: &mut Map<String, Value>, child: &Map<String, Value>, path: &str) {
    let Some((_, lists)) = SHARED.iter().find(|(p, _)| *p == path) else {
        return;
    };
    for list in lists.iter() {
        let key = list_key(&join(path, list));
        let keys: Vec<Value> = match child.get(*list) {
            Some(Value::Array(a)) => a.iter().map(|e| key_of(key, e)).collect(),
            _ => continue,
        };
        // The lists of a group share their key kind, so `key` fits them all.
        for other in lists.iter().filter(|o| *o != list) {
            if let Some(Value::Array(pa)) = parent.get_mut(*other) {
                pa.retain(|e| !keys.contains(&key_of(key, e)));
            }
        }
    }
}
