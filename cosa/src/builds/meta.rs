//! A build's `meta.json` (coreos-assembler's schema, `shared/reference/meta.schema.json`).
//!
//! Kept as a JSON object rather than a struct: every stage adds its own keys
//! (`images.<platform>`, …) and must round-trip the others untouched.

use std::path::Path;

use anyhow::{Context, Result};
use serde_json::{Map, Value};

use super::workdir::write_atomic;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Meta(pub Map<String, Value>);

impl Meta {
    pub fn load(path: &Path) -> Result<Self> {
        let b = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let v: Map<String, Value> =
            serde_json::from_slice(&b).with_context(|| format!("parsing {}", path.display()))?;
        Ok(Meta(v))
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let mut s = serde_json::to_vec_pretty(&self.0)?;
        s.push(b'\n');
        write_atomic(path, &s)
    }

    pub fn set(&mut self, key: &str, v: impl Into<Value>) {
        self.0.insert(key.to_string(), v.into());
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(Value::as_str)
    }

    /// A value by dotted path (`images.qemu.path`).
    pub fn get_path(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut cur = self.0.get(parts.next()?)?;
        for p in parts {
            cur = cur.get(p)?;
        }
        Some(cur)
    }

    pub fn buildid(&self) -> Option<&str> {
        self.get_str("buildid")
    }

    pub fn ostree_commit(&self) -> Option<&str> {
        self.get_str("ostree-commit")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotted_paths() {
        let m = Meta(serde_json::from_str(r#"{"a": {"b": {"c": 1}}, "k": "v"}"#).unwrap());
        assert_eq!(m.get_path("a.b.c"), Some(&Value::from(1)));
        assert_eq!(m.get_path("a.x"), None);
        assert_eq!(m.get_str("k"), Some("v"));
    }
}
