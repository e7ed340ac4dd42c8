//! The project's JSON schema of meta.json, derived from [`Meta`] and committed as
//! `docs/meta.schema.json` (a unit test keeps it current; the integration tests
//! validate every meta.json a stage writes against it).

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::Schema;
use serde_json::Value;

use super::Meta;

/// The schema file, relative to the repository's root.
pub const SCHEMA_FILE: &str = "docs/meta.schema.json";

/// The schema of [`Meta`] as JSON (draft-07, as coreos-assembler's). An optional
/// field is absent, never `null`.
pub fn json_schema() -> serde_json::Value {
    let generator = SchemaSettings::draft07()
        .with_transform(RecursiveTransform(drop_null))
        .into_generator();
    generator.into_root_schema_for::<Meta>().to_value()
}

/// An optional field is skipped when absent, never written as `null` (which
/// coreos-assembler's schema rejects): `["string", "null"]` becomes `"string"`, and
/// `anyOf: [X, {"type": "null"}]` becomes X.
fn drop_null(schema: &mut Schema) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if let Some(Value::Array(types)) = obj.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            obj.insert("type".into(), only);
        }
    }
    let null = serde_json::json!({"type": "null"});
    if let Some(Value::Array(alts)) = obj.get_mut("anyOf") {
        alts.retain(|a| *a != null);
        if let [only] = alts.as_slice() {
            let only = only.as_object().cloned().unwrap_or_default();
            obj.remove("anyOf");
            obj.extend(only);
        }
    }
}

/// The schema as the committed file holds it.
pub fn json_schema_text() -> String {
    let mut s = serde_json::to_string_pretty(&json_schema()).expect("a schema serializes");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    /// Regenerate with `COSA_UPDATE_META_SCHEMA=1 cargo test -p cosa --lib meta::schema`.
    #[test]
    fn committed_schema_is_current() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(SCHEMA_FILE);
        let want = json_schema_text();
        if std::env::var_os("COSA_UPDATE_META_SCHEMA").is_some() {
            fs_err::write(&path, &want).unwrap();
        }
        let have = fs_err::read_to_string(&path).unwrap_or_default();
        assert!(
            have == want,
            "{} is out of date with builds::Meta: regenerate it with \
             COSA_UPDATE_META_SCHEMA=1 cargo test -p cosa --lib meta::schema",
            path.display()
        );
    }
}
