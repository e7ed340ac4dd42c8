//! The running test, persisted under /var so it survives a reboot:
//!
//! ```text
//! /var/lib/demo-agent/job/job.json   what to run (written last: marks a complete unpack)
//! /var/lib/demo-agent/job/test/      the unpacked bundle (cwd; data/ is $KOLA_EXT_DATA)
//! /var/lib/demo-agent/job/tmp/       $AUTOPKGTEST_TMP
//! /var/lib/demo-agent/job/mark       set by /tmp/autopkgtest-reboot MARK
//! ```

use fs_err as fs;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// A `run` request without its bundle (that is unpacked beside it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobMeta {
    pub id: String,
    pub name: String,
    pub exec: String,
    pub env: BTreeMap<String, String>,
    pub timeout_secs: Option<u64>,
}

pub struct StateDir {
    dir: PathBuf,
}

/// What a fresh `serve` finds on disk.
pub enum Found {
    Nothing,
    /// A test asked to reboot: run it again with this mark.
    Resume(JobMeta, String),
    /// A test was running when the system went down without asking.
    Interrupted(JobMeta),
}

fn write_durably(path: &Path, data: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    if let Some(parent) = path.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

impl StateDir {
    pub fn new(dir: PathBuf) -> Self {
        StateDir { dir }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn job_dir(&self) -> PathBuf {
        self.dir.join("job")
    }

    pub fn test_dir(&self) -> PathBuf {
        self.job_dir().join("test")
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.job_dir().join("tmp")
    }

    /// Unpacks a new test, replacing any previous one.
    pub fn prepare(&self, meta: &JobMeta, bundle: &[u8]) -> Result<()> {
        self.finish()?;
        fs::create_dir_all(self.tmp_dir())
            .with_context(|| format!("creating {}", self.tmp_dir().display()))?;
        agent_protocol::bundle::unpack(bundle, &self.test_dir()).context("unpacking bundle")?;
        write_durably(
            &self.job_dir().join("job.json"),
            &serde_json::to_vec_pretty(meta)?,
        )
    }

    pub fn load(&self) -> Result<Found> {
        let meta_path = self.job_dir().join("job.json");
        let meta: JobMeta = match fs::read(&meta_path) {
            Ok(b) => serde_json::from_slice(&b)
                .with_context(|| format!("parsing {}", meta_path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Nothing),
            Err(e) => return Err(e).with_context(|| format!("reading {}", meta_path.display())),
        };
        match fs::read_to_string(self.job_dir().join("mark")) {
            Ok(m) => Ok(Found::Resume(meta, m.trim_end_matches('\n').to_string())),
            Err(_) => Ok(Found::Interrupted(meta)),
        }
    }

    pub fn set_mark(&self, mark: &str) -> Result<()> {
        write_durably(&self.job_dir().join("mark"), format!("{mark}\n").as_bytes())
    }

    /// The mark is consumed once the resumed run starts.
    pub fn clear_mark(&self) -> Result<()> {
        match fs::remove_file(self.job_dir().join("mark")) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }

    /// Forgets the current test.
    pub fn finish(&self) -> Result<()> {
        match fs::remove_dir_all(self.job_dir()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", self.job_dir().display()))
            }
            _ => Ok(()),
        }
    }
}
