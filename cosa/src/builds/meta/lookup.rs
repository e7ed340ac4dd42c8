//! `cosa meta --get KEY`: a key of meta.json by name.
//!
//! coreos-assembler's keys have dots in them (`coreos-assembler.basearch`), and a
//! dotted path (`images.qemu.path`) reaches into objects: at each level a literal
//! key wins, then the shortest dotted prefix that names a key is followed.

use serde_json::Value;

use super::Meta;

impl Meta {
    /// The value of `key`: a top-level key as written, or a dotted path into it.
    pub fn get(&self, key: &str) -> Option<Value> {
        let v = serde_json::to_value(self).ok()?;
        lookup(&v, key).cloned()
    }
}

/// `key` in `v`: the literal key first, then `PREFIX.REST` for each dot from the left.
fn lookup<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    if let Some(found) = obj.get(key) {
        return Some(found);
    }
    key.match_indices('.').find_map(|(i, _)| {
        let inner = obj.get(&key[..i])?;
        lookup(inner, &key[i + 1..])
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn literal_keys_with_dots_win() {
        let v = json!({
            "coreos-assembler.overrides-active": true,
            "coreos-assembler": {"overrides-active": false},
        });
        assert_eq!(
            lookup(&v, "coreos-assembler.overrides-active"),
            Some(&json!(true))
        );
    }

    #[test]
    fn dotted_paths_reach_into_objects() {
        let v = json!({
            "images": {"qemu": {"path": "x.qcow2"}},
            "coreos-assembler.oci-imported-labels": {"org.opencontainers.image.version": "1"},
        });
        assert_eq!(lookup(&v, "images.qemu.path"), Some(&json!("x.qcow2")));
        assert_eq!(
            lookup(
                &v,
                "coreos-assembler.oci-imported-labels.org.opencontainers.image.version"
            ),
            Some(&json!("1"))
        );
        assert_eq!(lookup(&v, "images.qemu.sha256"), None);
        assert_eq!(lookup(&v, "images.aws"), None);
        assert_eq!(lookup(&v, "images.qemu.path.more"), None);
    }

    #[test]
    fn unknown_keys_are_readable() {
        let mut m = Meta::default();
        m.extra.insert("build-url".into(), json!("https://ci/1"));
        m.overrides_active = Some(true);
        assert_eq!(m.get("build-url"), Some(json!("https://ci/1")));
        assert_eq!(
            m.get("coreos-assembler.overrides-active"),
            Some(json!(true))
        );
        assert_eq!(m.get("no-such-key"), None);
    }
}
