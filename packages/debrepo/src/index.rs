//! What the Debian mirror serves: apt's package indexes, read through apt's own
//! tools (`apt-get indextargets` names them, `apt-helper cat-file` decompresses).

use std::collections::BTreeMap;
use std::io::BufReader;

use anyhow::{Context, Result};
use cmdext::CommandRunExt;
use deb822_fast::{Deb822, FromDeb822Paragraph};
use debian_control::lossy::apt::Package;

/// The architectures a Debian x86_64 system installs from.
pub const ARCHES: [&str; 2] = ["amd64", "all"];

/// Every version of every package the configured mirrors serve.
pub struct Universe {
    /// Name -> its records, newest version first.
    by_name: BTreeMap<String, Vec<Package>>,
}

impl Universe {
    /// Read apt's lists. `apt-get update` must have run (the caller's job: it
    /// needs the network, reading does not).
    pub fn load() -> Result<Universe> {
        let files = cmdext::command("apt-get")
            .args([
                "indextargets",
                "--format",
                "$(FILENAME)",
                "Created-By: Packages",
            ])
            .run_get_string()
            .context("listing apt's package indexes")?;
        let mut by_name: BTreeMap<String, Vec<Package>> = BTreeMap::new();
        let mut read = 0;
        for file in files.lines().filter(|f| !f.is_empty()) {
            if !std::path::Path::new(file).exists() {
                continue;
            }
            let text = cmdext::command("/usr/lib/apt/apt-helper")
                .args(["cat-file", file])
                .run_get_output()
                .with_context(|| format!("reading apt index {file}"))?
                .stdout;
            let doc = Deb822::from_reader(BufReader::new(&text[..]))
                .map_err(|e| anyhow::anyhow!("parsing apt index {file}: {e}"))?;
            for para in doc.iter() {
                let pkg = Package::from_paragraph(para)
                    .map_err(|e| anyhow::anyhow!("parsing a record of apt index {file}: {e}"))?;
                if ARCHES.contains(&pkg.architecture.as_str()) {
                    by_name.entry(pkg.name.clone()).or_default().push(pkg);
                }
            }
            read += 1;
        }
        anyhow::ensure!(
            read > 0,
            "apt has no package index on this machine: run `apt-get update` first"
        );
        for recs in by_name.values_mut() {
            recs.sort_by(|a, b| b.version.cmp(&a.version));
            recs.dedup_by(|a, b| a.version == b.version && a.architecture == b.architecture);
        }
        Ok(Universe { by_name })
    }

    /// The version apt would install (the newest one served).
    pub fn candidate(&self, name: &str) -> Option<&Package> {
        self.by_name.get(name).and_then(|v| v.first())
    }

    /// Every version served of `name`, newest first.
    pub fn versions(&self, name: &str) -> &[Package] {
        self.by_name.get(name).map_or(&[], |v| v.as_slice())
    }

    /// The candidates that provide `virt`.
    pub fn providers(&self, virt: &str) -> Vec<&Package> {
        self.by_name
            .values()
            .filter_map(|v| v.first())
            .filter(|p| {
                p.provides
                    .as_ref()
                    .is_some_and(|r| r.0.iter().flatten().any(|rel| rel.name == virt))
            })
            .collect()
    }
}
