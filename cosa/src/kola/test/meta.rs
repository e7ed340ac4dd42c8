//! External test metadata: an inline `## kola:` YAML block or a `# kola: {json}`
//! line near the top of the test, or a `kola.json` beside it, parsed into
//! [`TestMeta`] with kola's keys and defaults.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use chrono::NaiveDate;
use serde::Deserialize;

use super::{BootFrom, TestMeta};

const YAML_PREFIX: &str = "## kola:";
const JSON_PREFIX: &str = "# kola:";
/// kola reads metadata from the first 8 KiB of a test.
const HEADER_BYTES: u64 = 8192;

/// kola's metadata keys, as written in the files (camelCase).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawMeta {
    architectures: Option<WordList>,
    platforms: Option<WordList>,
    distros: Option<WordList>,
    tags: Option<WordList>,
    required_tag: Option<String>,
    timeout_min: Option<u64>,
    exclusive: Option<bool>,
    conflicts: Option<Vec<String>>,
    additional_disks: Option<Vec<String>>,
    min_memory: Option<u64>,
    min_disk: Option<u64>,
    append_kernel_args: Option<WordList>,
    append_firstboot_kernel_args: Option<WordList>,
    allow_config_warnings: Option<bool>,
    description: Option<String>,
    additional_nics: Option<u32>,
    primary_disk: Option<String>,
    inject_container: Option<bool>,
    numa_nodes: Option<bool>,
    no_instance_creds: Option<bool>,
    instance_type: Option<String>,
    #[serde(rename = "bindMountHostRO")]
    bind_mount_host_ro: Option<Vec<String>>,
    creation_date: Option<String>,
    boot_from: Option<String>,
    required_host_ports: Option<Vec<u16>>,
}

/// kola writes lists as one whitespace-separated string; a YAML/JSON list is
/// accepted too.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum WordList {
    Words(String),
    List(Vec<String>),
}

impl WordList {
    fn words(self) -> Vec<String> {
        match self {
            WordList::Words(s) => s.split_whitespace().map(str::to_string).collect(),
            WordList::List(l) => l,
        }
    }

    /// kola's `"!a b"` form (exclude a and b) or `"a b"` (only a and b);
    /// in list form each excluded item carries its own `!`.
    fn include_exclude(self, key: &str) -> Result<(Vec<String>, Vec<String>)> {
        let items = match self {
            WordList::Words(s) => match s.trim_start().strip_prefix('!') {
                Some(rest) => {
                    let ex: Vec<String> = rest.split_whitespace().map(str::to_string).collect();
                    if ex.is_empty() {
                        bail!("{key}: `!` with nothing to exclude");
                    }
                    return Ok((Vec::new(), ex));
                }
                None => s.split_whitespace().map(str::to_string).collect(),
            },
            WordList::List(l) => l,
        };
        let (ex, inc): (Vec<String>, Vec<String>) =
            items.into_iter().partition(|i| i.starts_with('!'));
        if !ex.is_empty() && !inc.is_empty() {
            bail!("{key}: mixes included and `!`excluded items");
        }
        let ex = ex.into_iter().map(|e| e[1..].trim().to_string()).collect();
        Ok((inc, ex))
    }
}

impl RawMeta {
    pub(super) fn into_meta(self) -> Result<TestMeta> {
        let mut m = TestMeta::default();
        if let Some(a) = self.architectures {
            (m.architectures, m.exclude_architectures) = a.include_exclude("architectures")?;
        }
        if let Some(p) = self.platforms {
            (m.platforms, m.exclude_platforms) = p.include_exclude("platforms")?;
        }
        if let Some(d) = self.distros {
            (m.distros, m.exclude_distros) = d.include_exclude("distros")?;
        }
        if let Some(t) = self.tags {
            m.tags = t.words();
            if let Some(bad) = m.tags.iter().find(|t| t.starts_with('!')) {
                bail!("tags: `{bad}`: a test's tags cannot be negated");
            }
        }
        m.required_tag = self.required_tag.filter(|t| !t.is_empty());
        if let Some(t) = self.timeout_min {
            if t == 0 {
                bail!("timeoutMin: must be at least 1");
            }
            m.timeout = Duration::from_secs(t * 60);
        }
        m.exclusive = self.exclusive.unwrap_or(true);
        m.conflicts = self.conflicts.unwrap_or_default();
        m.additional_disks = self.additional_disks.unwrap_or_default();
        m.min_memory_mib = self.min_memory.filter(|&v| v > 0);
        m.min_disk_gib = self.min_disk.filter(|&v| v > 0);
        m.append_kernel_args = self
            .append_kernel_args
            .map(WordList::words)
            .unwrap_or_default();
        m.append_firstboot_kernel_args = self
            .append_firstboot_kernel_args
            .map(WordList::words)
            .unwrap_or_default();
        m.allow_config_warnings = self.allow_config_warnings.unwrap_or(false);
        m.description = self
            .description
            .map(|d| d.trim().to_string())
            .filter(|d| !d.is_empty());
        m.additional_nics = self.additional_nics.unwrap_or(0);
        m.primary_disk = self.primary_disk.filter(|d| !d.is_empty());
        m.inject_container = self.inject_container.unwrap_or(false);
        m.numa_nodes = self.numa_nodes.unwrap_or(false);
        m.no_instance_creds = self.no_instance_creds.unwrap_or(false);
        m.instance_type = self.instance_type.filter(|t| !t.is_empty());
        m.bind_mount_host_ro = self.bind_mount_host_ro.unwrap_or_default();
        m.boot_from = match self.boot_from.as_deref() {
            None | Some("") => None,
            Some("iso") => Some(BootFrom::Iso),
            Some("iso-as-disk") => Some(BootFrom::IsoAsDisk),
            Some(other) => bail!("bootFrom: `{other}`: expected `iso` or `iso-as-disk`"),
        };
        m.required_host_ports = self.required_host_ports.unwrap_or_default();
        m.creation_date = match self.creation_date.as_deref() {
            None | Some("") => None,
            Some(d) => Some(
                NaiveDate::parse_from_str(d, "%Y-%m-%d")
                    .with_context(|| format!("creationDate: `{d}`: expected YYYY-MM-DD"))?,
            ),
        };
        Ok(m)
    }
}

/// Where a test's metadata was found.
#[derive(Debug, PartialEq, Eq)]
enum Header {
    Yaml(String),
    Json(String),
}

/// Finds the metadata in a test's first lines.
fn find_header(text: &str) -> Result<Option<Header>> {
    let mut yaml: Option<(usize, String)> = None;
    let mut json: Option<(usize, String)> = None;
    let mut in_yaml = false;
    for (i, line) in text.lines().enumerate() {
        let lineno = i + 1;
        if in_yaml && !line.starts_with(YAML_PREFIX) {
            if let (Some(rest), Some((_, y))) = (line.strip_prefix("## "), yaml.as_mut()) {
                y.push_str(rest);
                y.push('\n');
                continue;
            }
            in_yaml = false;
        }
        if let Some(rest) = line.strip_prefix(YAML_PREFIX) {
            if let Some((first, _)) = &yaml {
                bail!(
                    "line {lineno}: a second `{YAML_PREFIX}` block (the first is on line {first})"
                );
            }
            if !rest.trim().is_empty() {
                bail!(
                    "line {lineno}: text after `{YAML_PREFIX}`; the YAML goes on the following `## ` lines"
                );
            }
            yaml = Some((lineno, String::new()));
            in_yaml = true;
        } else if let Some(rest) = line.strip_prefix(JSON_PREFIX) {
            if let Some((first, _)) = &json {
                bail!("line {lineno}: a second `{JSON_PREFIX}` line (the first is line {first})");
            }
            json = Some((lineno, rest.trim().to_string()));
        }
    }
    match (yaml, json) {
        (Some((y, _)), Some((j, _))) => bail!(
            "both `{YAML_PREFIX}` YAML (line {y}) and `{JSON_PREFIX}` JSON (line {j}) metadata; keep one"
        ),
        (Some((_, y)), None) => Ok(Some(Header::Yaml(y))),
        (None, Some((_, j))) => Ok(Some(Header::Json(j))),
        (None, None) => Ok(None),
    }
}

fn parse_header(header: Header) -> Result<TestMeta> {
    let raw: RawMeta = match header {
        Header::Yaml(y) if y.trim().is_empty() => RawMeta::default(),
        Header::Yaml(y) => serde_yaml::from_str(&y).context("invalid `## kola:` YAML")?,
        Header::Json(j) => serde_json::from_str(&j).context("invalid `# kola:` JSON")?,
    };
    raw.into_meta()
}

/// Metadata from the text of a test; `None` if it has none.
pub(super) fn metadata_from_text(text: &str) -> Result<Option<TestMeta>> {
    find_header(text)?.map(parse_header).transpose()
}

/// Reads the metadata of the test executable at `path` (`None`: it has none).
pub fn parse_metadata(path: &Path) -> Result<Option<TestMeta>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(HEADER_BYTES).read_to_end(&mut buf))
        .with_context(|| format!("reading {}", path.display()))?;
    let text = String::from_utf8_lossy(&buf);
    metadata_from_text(&text).with_context(|| format!("kola metadata in {}", path.display()))
}

/// A directory's `kola.json`: the metadata of its tests that have none inline.
pub(super) fn parse_kola_json(path: &Path) -> Result<TestMeta> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let raw: RawMeta =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    raw.into_meta()
        .with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(text: &str) -> TestMeta {
        metadata_from_text(text).unwrap().unwrap()
    }

    fn err(text: &str) -> String {
        format!("{:#}", metadata_from_text(text).unwrap_err())
    }

    #[test]
    fn yaml_fields() {
        let m = meta(
            "#!/bin/bash\n\
             set -xeuo pipefail\n\
             ## kola:\n\
             ##   architectures: \"! s390x ppc64le\"\n\
             ##   platforms: qemu\n\
             ##   distros: \"fcos rhcos\"\n\
             ##   tags: \"platform-independent needs-internet\"\n\
             ##   requiredTag: k8s\n\
             ##   timeoutMin: 15\n\
             ##   exclusive: false\n\
             ##   conflicts: [ext.config.other]\n\
             ##   additionalDisks: [\"5G\", \"1G:serial=disk1\"]\n\
             ##   minMemory: 4096\n\
             ##   minDisk: 20\n\
             ##   appendKernelArgs: \"net.ifnames=0 ip=dhcp\"\n\
             ##   appendFirstbootKernelArgs: rd.neednet=1\n\
             ##   allowConfigWarnings: true\n\
             ##   additionalNics: 2\n\
             ##   primaryDisk: \":512e\"\n\
             ##   creationDate: 2026-01-02\n\
             ##   description: Checks\n\
             ##     several things.\n\
             ##\n\
             ## A comment that is not metadata: the block ended at `##`.\n",
        );
        assert!(m.architectures.is_empty());
        assert_eq!(m.exclude_architectures, ["s390x", "ppc64le"]);
        assert_eq!(m.platforms, ["qemu"]);
        assert!(m.exclude_platforms.is_empty());
        assert_eq!(m.distros, ["fcos", "rhcos"]);
        assert_eq!(m.tags, ["platform-independent", "needs-internet"]);
        assert_eq!(m.required_tag.as_deref(), Some("k8s"));
        assert_eq!(m.timeout, Duration::from_secs(15 * 60));
        assert!(!m.exclusive);
        assert_eq!(m.conflicts, ["ext.config.other"]);
        assert_eq!(m.additional_disks, ["5G", "1G:serial=disk1"]);
        assert_eq!(m.min_memory_mib, Some(4096));
        assert_eq!(m.min_disk_gib, Some(20));
        assert_eq!(m.append_kernel_args, ["net.ifnames=0", "ip=dhcp"]);
        assert_eq!(m.append_firstboot_kernel_args, ["rd.neednet=1"]);
        assert!(m.allow_config_warnings);
        assert_eq!(m.additional_nics, 2);
        assert_eq!(m.primary_disk.as_deref(), Some(":512e"));
        assert_eq!(m.creation_date, NaiveDate::from_ymd_opt(2026, 1, 2));
        assert_eq!(m.description.as_deref(), Some("Checks several things."));
    }

    #[test]
    fn json_line() {
        let m = meta(
            "#!/bin/sh\n# kola: {\"architectures\": \"x86_64 aarch64\", \"platforms\": \"!azure gcp\", \
             \"tags\": [\"ignition\", \"reboot\"], \"exclusive\": true, \"timeoutMin\": 3, \"bootFrom\": \"\"}\nexit 0\n",
        );
        assert_eq!(m.architectures, ["x86_64", "aarch64"]);
        assert_eq!(m.exclude_platforms, ["azure", "gcp"]);
        assert_eq!(m.tags, ["ignition", "reboot"]);
        assert!(m.exclusive);
        assert_eq!(m.timeout, Duration::from_secs(180));
        assert_eq!(m.boot_from, None);
    }

    #[test]
    fn defaults() {
        assert_eq!(metadata_from_text("#!/bin/sh\necho hi\n").unwrap(), None);
        let m = meta("#!/bin/sh\n## kola:\necho\n");
        assert_eq!(m, TestMeta::default());
        assert!(m.exclusive);
        assert_eq!(m.timeout, super::super::DEFAULT_TIMEOUT);
        // A block running to the end of the file still counts.
        assert_eq!(meta("## kola:\n##   tags: a b").tags, ["a", "b"]);
    }

    #[test]
    fn list_form_excludes() {
        let m = meta("## kola:\n##   architectures: ['!s390x', '!ppc64le']\n");
        assert_eq!(m.exclude_architectures, ["s390x", "ppc64le"]);
        assert!(err("## kola:\n##   platforms: ['qemu', '!aws']\n").contains("mixes"));
        assert!(err("## kola:\n##   platforms: '!'\n").contains("nothing to exclude"));
    }

    #[test]
    fn errors() {
        let e = err("## kola:\n##   tags: a\n##   timeoutMinutes: 3\n");
        assert!(e.contains("unknown field `timeoutMinutes`"), "{e}");
        let e = err("# kola: {\"bogus\": 1}\n");
        assert!(e.contains("unknown field `bogus`"), "{e}");
        let e = err("#!/bin/sh\n## kola:\n##   tags: a\n# kola: {\"tags\": \"b\"}\n");
        assert!(
            e.contains("both") && e.contains("line 2") && e.contains("line 4"),
            "{e}"
        );
        let e = err("# kola: {\"tags\": \"b\"}\n## kola:\n##   tags: a\n");
        assert!(e.contains("both"), "{e}");
        assert!(err("## kola:\n##   a: 1\n## kola:\n").contains("second"));
        assert!(err("## kola: {tags: a}\n").contains("following"));
        assert!(err("## kola:\n##   timeoutMin: 0\n").contains("timeoutMin"));
        assert!(err("## kola:\n##   bootFrom: usb\n").contains("bootFrom"));
        assert!(err("## kola:\n##   creationDate: May 1\n").contains("creationDate"));
        assert!(err("## kola:\n##   tags: '!x'\n").contains("negated"));
        assert!(err("# kola: {tags: a}\n").contains("JSON"));
        assert!(err("## kola:\n##   minMemory: lots\n").contains("YAML"));
    }

    #[test]
    fn error_names_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("test.sh");
        std::fs::write(&p, "#!/bin/sh\n## kola:\n##   colour: blue\n").unwrap();
        let e = format!("{:#}", parse_metadata(&p).unwrap_err());
        assert!(
            e.contains(&*p.to_string_lossy()) && e.contains("colour"),
            "{e}"
        );
    }
}
