//! `systemd.units`: unit files, drop-ins, masks, and the record of enabled
//! units that `demo-agent serve` starts (this stream has no systemd).

use fs_err as fs;
use std::path::Path;

use anyhow::{bail, Result};

use super::plan::{Op, Planner};
use super::schema;

/// Where enabled units are recorded for `demo-agent serve` (see the doc).
pub const UNITS_D: &str = "/etc/demo-agent/units.d";
const SYSTEMD_DIR: &str = "/etc/systemd/system";
const UNIT_SUFFIXES: &[&str] = &[
    ".service",
    ".socket",
    ".target",
    ".timer",
    ".path",
    ".mount",
    ".automount",
    ".swap",
    ".slice",
    ".scope",
    ".device",
];

/// The command of a unit's single plain `ExecStart=`, reading the unit file
/// and then its drop-ins (where `ExecStart=` with no value resets the list).
pub fn plain_exec_start<'a>(texts: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let mut execs: Vec<String> = Vec::new();
    for text in texts {
        let mut section = String::new();
        let mut pending = String::new();
        for raw in text.lines() {
            if let Some(cont) = raw.strip_suffix('\\') {
                pending.push_str(cont);
                pending.push(' ');
                continue;
            }
            pending.push_str(raw);
            let line = std::mem::take(&mut pending);
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
                continue;
            }
            if line.starts_with('[') {
                section = line.to_string();
                continue;
            }
            if section != "[Service]" {
                continue;
            }
            if let Some((k, v)) = line.split_once('=') {
                if k.trim() == "ExecStart" {
                    let v = v.trim();
                    if v.is_empty() {
                        execs.clear();
                    } else {
                        execs.push(v.to_string());
                    }
                }
            }
        }
    }
    match execs.as_slice() {
        [one] if !one.starts_with(['@', '-', ':', '+', '!', '|']) => Some(one.clone()),
        _ => None,
    }
}

impl Planner<'_> {
    pub(super) fn unit(&mut self, u: &schema::Unit) -> Result<()> {
        let schema::Unit {
            name,
            enabled,
            mask,
            contents,
            dropins,
        } = u;
        if name.contains('/')
            || !UNIT_SUFFIXES
                .iter()
                .any(|s| name.len() > s.len() && name.ends_with(s))
        {
            bail!("name: {name:?} is not a unit name (e.g. foo.service)");
        }
        let unit_path = Path::new(SYSTEMD_DIR).join(name);
        let mask = mask.unwrap_or(false);
        if mask && contents.is_some() {
            bail!("mask and contents are both set");
        }
        if mask && *enabled == Some(true) {
            bail!("a unit cannot be both masked and enabled");
        }
        if let Some(c) = contents {
            self.root_file(&unit_path, c)?;
        }
        if mask {
            self.claim(&unit_path)?;
            self.ops.push(Op::Symlink {
                path: unit_path.clone(),
                target: "/dev/null".into(),
                owner: (0, 0),
                replace: true,
            });
        }
        let mut texts = vec![match contents {
            Some(c) => c.clone(),
            None => fs::read_to_string(self.host(&unit_path)).unwrap_or_default(),
        }];
        texts.extend(self.dropins(name, dropins.iter().flatten())?);
        self.enablement(name, *enabled, mask, &texts)
    }

    /// A root-owned 0644 file the config writes whole.
    fn root_file(&mut self, path: &Path, text: &str) -> Result<()> {
        self.claim(path)?;
        self.ops.push(Op::File {
            path: path.to_path_buf(),
            data: text.as_bytes().to_vec(),
            mode: 0o644,
            owner: (0, 0),
            replace: true,
        });
        Ok(())
    }

    /// Write the unit's drop-ins; their texts, for finding the ExecStart.
    fn dropins<'a>(
        &mut self,
        name: &str,
        dropins: impl Iterator<Item = &'a schema::Dropin>,
    ) -> Result<Vec<String>> {
        let mut texts = Vec::new();
        for (i, d) in dropins.enumerate() {
            if !d.name.ends_with(".conf") || d.name.contains('/') {
                bail!(
                    "dropins[{i}].name: {:?} must be a file name ending in .conf",
                    d.name
                );
            }
            if let Some(c) = &d.contents {
                let p = Path::new(SYSTEMD_DIR)
                    .join(format!("{name}.d"))
                    .join(&d.name);
                self.root_file(&p, c)?;
                texts.push(c.clone());
            }
        }
        Ok(texts)
    }

    /// Record an enabled unit's command for the agent to start; forget a disabled or masked one.
    fn enablement(
        &mut self,
        name: &str,
        enabled: Option<bool>,
        mask: bool,
        texts: &[String],
    ) -> Result<()> {
        let record = Path::new(UNITS_D).join(name);
        match enabled {
            Some(true) => match plain_exec_start(texts.iter().map(String::as_str)) {
                Some(cmd) => self.root_file(&record, &format!("{cmd}\n"))?,
                None => self.warnings.push(format!(
                    "unit {name} is enabled but has no single plain ExecStart= in [Service]: written, not started"
                )),
            },
            Some(false) | None
                if (mask || enabled == Some(false))
                    && fs::symlink_metadata(self.host(&record)).is_ok() =>
            {
                self.ops.push(Op::Remove { path: record });
            }
            _ => {}
        }
        Ok(())
    }
}
