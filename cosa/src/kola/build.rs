//! The build a kola run (or `cosa run`) is about, and which tests apply to it.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use fs_err as fs;

use crate::arch::Arch;
use crate::builds::{History, Meta, Workdir};
use crate::kola::builtin::BuildFacts;
use crate::kola::machine::TransportKind;
use crate::kola::select::{self, Denylist, Selected, Selection, Shard, TagFilter};
use crate::kola::test;

/// The package that carries the cosa agent (the demo stream's).
const AGENT_PACKAGE: &str = "demo-agent";

/// Which tests: shared by `kola run` and `kola list`.
#[derive(Debug, Clone, Default)]
pub struct SelectOptions {
    /// Test name globs; empty: all tests.
    pub patterns: Vec<String>,
    /// `TAG` or `!TAG`.
    pub tags: Vec<String>,
    /// Extra directories of external tests.
    pub exttests: Vec<PathBuf>,
    /// A denylist instead of the config's.
    pub denylist: Option<PathBuf>,
    /// Ignore every denylist.
    pub no_denylist: bool,
    /// `M/N`.
    pub shard: Option<String>,
    pub platform: String,
    /// Build ID; `None`: the latest.
    pub build: Option<String>,
}

/// The build under test and where its things are.
pub(crate) struct BuildUnderTest {
    pub(crate) wd: Workdir,
    pub(crate) id: String,
    pub(crate) arch: Arch,
    pub(crate) dir: PathBuf,
    pub(crate) meta: Meta,
}

impl BuildUnderTest {
    /// The build `build` (default: the latest) of the host's architecture.
    pub(crate) fn open(workdir: &Path, build: Option<&str>) -> Result<BuildUnderTest> {
        let wd = Workdir::open(workdir)?;
        let history = History::new(wd.builds_dir());
        let id = history.resolve_id(build)?;
        let arch = Arch::host()?;
        let dir = history.build_dir(&id, arch.name());
        let meta = history.load_meta(&id, arch.name())?;
        Ok(BuildUnderTest {
            wd,
            id,
            arch,
            dir,
            meta,
        })
    }

    /// Listing needs no build: without one, no stream-scoped denylist entries apply.
    fn open_for_list(workdir: &Path, build: Option<&str>) -> Result<BuildUnderTest> {
        let wd = Workdir::open(workdir)?;
        if build.is_none() && History::new(wd.builds_dir()).load()?.builds.is_empty() {
            return Ok(BuildUnderTest {
                wd,
                id: "none".into(),
                arch: Arch::host()?,
                dir: PathBuf::new(),
                meta: Meta::default(),
            });
        }
        BuildUnderTest::open(workdir, build)
    }

    /// The build's qemu image; a clear error when it was never made.
    pub(crate) fn qemu_image(&self) -> Result<PathBuf> {
        self.image("qemu", "`cosa buildextend-qemu` (or `cosa osbuild qemu`)")
    }

    /// The build's artifact `name` (meta.json `images`); a clear error naming
    /// `makes_it` when it was never made.
    pub(crate) fn image(&self, name: &str, makes_it: &str) -> Result<PathBuf> {
        let p = self.meta.images.get(name).map(|a| &a.path).ok_or_else(|| {
            anyhow!(
                "build {} has no {name} image: run {makes_it} first",
                self.id
            )
        })?;
        let p = self.dir.join(p);
        if !p.is_file() {
            bail!(
                "{} is listed in meta.json but missing (compressed? run `cosa decompress`, or {makes_it} again)",
                p.display()
            );
        }
        Ok(p)
    }

    /// The stream name: the last component of the ref (`demo/x86_64/stable`).
    fn stream(&self) -> Option<String> {
        self.meta
            .ostree_ref
            .as_deref()
            .and_then(|r| r.rsplit('/').next())
            .map(str::to_string)
    }

    /// The transport `requested`, or the one this build calls for: the
    /// agent if the build carries it (its lockfile lists `demo-agent`), else
    /// SSH, as upstream kola always uses.
    pub(crate) fn transport(&self, requested: Option<TransportKind>) -> Result<TransportKind> {
        if let Some(t) = requested {
            return Ok(t);
        }
        let Some(lock) = self.facts().lockfile else {
            return Ok(TransportKind::Ssh);
        };
        let l: serde_json::Value = serde_json::from_slice(&fs::read(&lock)?)
            .with_context(|| format!("parsing {}", lock.display()))?;
        Ok(if l["packages"].get(AGENT_PACKAGE).is_some() {
            TransportKind::Agent
        } else {
            TransportKind::Ssh
        })
    }

    pub(crate) fn facts(&self) -> BuildFacts {
        let lock = self
            .dir
            .join(format!("manifest-lock.generated.{}.json", self.arch));
        BuildFacts {
            overrides_rpm: self.wd.overrides_rpm_dir(),
            overrides_active: self.meta.overrides_active.unwrap_or(false),
            lockfile: lock.is_file().then_some(lock),
            commit: self.meta.ostree_commit.clone(),
            version: self.meta.ostree_version.clone(),
        }
    }

    fn selection(&self, s: &SelectOptions) -> Result<Selection> {
        let denylist = match (&s.denylist, s.no_denylist) {
            (_, true) => None,
            (Some(p), false) => Some(Denylist::load(p)?),
            (None, false) => {
                let p = self.wd.config_file("kola-denylist", "yaml")?;
                if p.is_file() {
                    Some(Denylist::load(&p)?)
                } else {
                    None
                }
            }
        };
        Ok(Selection {
            patterns: s.patterns.clone(),
            tags: s
                .tags
                .iter()
                .map(|t| TagFilter::parse(t))
                .collect::<Result<_>>()?,
            platform: s.platform.clone(),
            arch: self.arch.name().to_string(),
            // No build (kola list in a fresh workdir): kola's default distro.
            distro: Some(self.meta.name.as_str())
                .filter(|n| !n.is_empty())
                .unwrap_or("fcos")
                .to_string(),
            stream: self.stream(),
            denylist,
            shard: s.shard.as_deref().map(Shard::parse).transpose()?,
        })
    }

    /// The built-in and external tests `s` selects for this build.
    pub(crate) fn select_tests(&self, s: &SelectOptions) -> Result<(Selected, Selection)> {
        let sel = self.selection(s)?;
        let mut all = test::builtin_tests();
        all.extend(test::discover(&self.wd.config_dir(), &s.exttests)?);
        let today = chrono::Utc::now().date_naive();
        Ok((select::select(all, &sel, today)?, sel))
    }
}

/// `kola list`: the tests a run with `o` would run, and those it would skip.
pub fn list(workdir: &Path, o: &SelectOptions) -> Result<Selected> {
    let b = BuildUnderTest::open_for_list(workdir, o.build.as_deref())?;
    let mut selected = b.select_tests(o)?.0;
    // A bare `kola list` shows every test, the ones a bare `kola run` leaves out
    // (the install-media scenarios) too.
    if o.patterns.is_empty() && o.tags.is_empty() {
        let explicit = SelectOptions {
            tags: vec![crate::kola::testiso::TAG.to_string()],
            ..o.clone()
        };
        let more = b.select_tests(&explicit)?.0;
        selected.run.extend(more.run);
        selected.skipped.extend(more.skipped);
        selected.warn_only.extend(more.warn_only);
    }
    Ok(selected)
}
