//! `debrepo build`: the pinned .debs -> RPMs -> an rpm-md repository.
//!
//! Each RPM is rebuilt only when its inputs change: the .deb's checksum, what the
//! definition adds to it, and the converter itself (this program's checksum).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cmdext::CommandRunExt;
use fs_err as fs;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::closure::{Definition, Pin};
use crate::convert::{convert, Extras};
use crate::deb::{Control, Data};
use crate::index::Universe;
use crate::maintscript::{self, Alternative};
use crate::resolve::Set;

pub struct Layout {
    pub debs: PathBuf,
    /// rpmbuild's scratch, one directory per package.
    pub work: PathBuf,
    pub repo: PathBuf,
    pub stamps: PathBuf,
}

impl Layout {
    pub fn new(out: &Path) -> Layout {
        Layout {
            debs: out.join("debs"),
            work: out.join("build"),
            repo: out.join("repo"),
            stamps: out.join("stamps"),
        }
    }
}

/// What the maintainer scripts of the whole closure ask for, per package.
fn extras_of(def: &Definition, ctls: &[Control]) -> Result<BTreeMap<String, Extras>> {
    let mut out: BTreeMap<String, Extras> = BTreeMap::new();
    let mut best: BTreeMap<String, (String, Alternative)> = BTreeMap::new();
    let mut errors = Vec::new();
    for c in ctls {
        let name = &c.control.name;
        let scripts: Vec<&str> = ["preinst", "postinst"]
            .iter()
            .filter_map(|s| c.scripts.get(*s).map(String::as_str))
            .collect();
        let fx = maintscript::scan(&scripts);
        let x = out.entry(name.clone()).or_default();
        x.enable = fx.enable;
        x.enable
            .extend(def.enable.get(name).cloned().unwrap_or_default());
        match (def.sysusers.get(name), &fx.creates_accounts) {
            (Some(lines), _) => x.sysusers = lines.clone(),
            (None, Some(cmd)) => errors.push(format!(
                "{name}'s maintainer scripts create accounts (`{cmd}`): declare them under [sysusers] \"{name}\" (an empty list if none matters)"
            )),
            (None, None) => {}
        }
        let alternatives = match def.alternatives.get(name) {
            Some(decl) => decl
                .iter()
                .map(|d| Alternative {
                    name: d.name.clone(),
                    link: d.link.clone(),
                    path: d.path.clone(),
                    priority: d.priority,
                    slaves: Vec::new(),
                })
                .collect(),
            None => {
                for line in fx.unreadable {
                    errors.push(format!(
                        "{name}'s maintainer scripts run `{line}`, which debrepo cannot read: declare it under [alternatives] \"{name}\""
                    ));
                }
                fx.alternatives
            }
        };
        x.posttrans = def.posttrans.get(name).cloned();
        for a in alternatives {
            let better = best
                .get(&a.name)
                .is_none_or(|(_, b)| a.priority > b.priority);
            if better {
                best.insert(a.name.clone(), (name.clone(), a));
            }
        }
    }
    if !errors.is_empty() {
        bail!(
            "cannot map the maintainer scripts:\n  {}",
            errors.join("\n  ")
        );
    }
    for (owner, alt) in best.into_values() {
        out.entry(owner).or_default().alternatives.push(alt);
    }
    Ok(out)
}

fn self_digest() -> Result<String> {
    let exe = std::env::current_exe().context("finding debrepo's own executable")?;
    crate::fetch::sha256_file(&exe)
}

fn stamp_of(pin: &Pin, x: &Extras, tool: &str) -> String {
    let mut h = Sha256::new();
    h.update(tool);
    h.update(&pin.sha256);
    h.update(format!(
        "{:?}|{:?}|{:?}|{:?}",
        x.sysusers, x.enable, x.alternatives, x.posttrans
    ));
    hex::encode(h.finalize())
}

/// Build (or bring up to date) the repository of `pins` under `out`.
pub fn build(def: &Definition, pins: &[Pin], out: &Path) -> Result<()> {
    fs::create_dir_all(out)?;
    // rpmbuild runs its scripts elsewhere: every path it sees is absolute.
    let out = fs::canonicalize(out)?;
    let lay = Layout::new(&out);
    let mut universe: Option<Universe> = None;
    let debs = crate::fetch::fetch_all(pins, &lay.debs, &mut universe)?;

    let ctls: Vec<Control> = debs
        .par_iter()
        .map(|p| Control::read(p))
        .collect::<Result<_>>()?;
    for (pin, c) in pins.iter().zip(&ctls) {
        if c.control.name != pin.name || c.control.version.to_string() != pin.version {
            bail!(
                "{} is {} {}, but the lock pins {} {} under that name",
                lay.debs.join(pin.file_name()).display(),
                c.control.name,
                c.control.version,
                pin.name,
                pin.version
            );
        }
    }
    let mut set = Set::default();
    for c in &ctls {
        set.insert(&c.control);
    }
    set.check(def)?;
    let extras = extras_of(def, &ctls)?;

    fs::create_dir_all(&lay.repo)?;
    fs::create_dir_all(&lay.stamps)?;
    let tool = self_digest()?;
    let todo: Vec<usize> = (0..pins.len())
        .filter(|&i| {
            let stamp = lay.stamps.join(format!("{}.stamp", pins[i].name));
            let want = stamp_of(&pins[i], &extras[&pins[i].name], &tool);
            match fs::read_to_string(&stamp) {
                Ok(s) => {
                    let mut l = s.lines();
                    !(l.next() == Some(want.as_str())
                        && l.next().is_some_and(|f| lay.repo.join(f).exists()))
                }
                Err(_) => true,
            }
        })
        .collect();
    eprintln!(
        "debrepo: {} package(s) pinned, {} to convert",
        pins.len(),
        todo.len()
    );
    let done = std::sync::atomic::AtomicUsize::new(0);
    todo.par_iter()
        .map(|&i| {
            let pin = &pins[i];
            let x = &extras[&pin.name];
            let work = lay.work.join(&pin.name);
            let rpm = Data::read(&debs[i])
                .and_then(|data| convert(&ctls[i], &data, x, &work))
                .with_context(|| format!("converting {}", debs[i].display()))?;
            let file = rpm
                .file_name()
                .expect("an RPM file")
                .to_string_lossy()
                .into_owned();
            fs::rename(&rpm, lay.repo.join(&file))?;
            fs::remove_dir_all(&work)?;
            fs::write(
                lay.stamps.join(format!("{}.stamp", pin.name)),
                format!("{}\n{file}\n", stamp_of(pin, x, &tool)),
            )?;
            let n = done.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            eprintln!("debrepo: [{n}/{}] {file}", todo.len());
            Ok(())
        })
        .collect::<Result<()>>()?;

    prune(&lay, pins)?;
    eprintln!("debrepo: indexing {}", lay.repo.display());
    cmdext::command("createrepo_c")
        .args(["--quiet", "--no-database", "--update"])
        .arg(&lay.repo)
        .run()
        .with_context(|| format!("indexing {}", lay.repo.display()))?;
    Ok(())
}

/// Remove RPMs and stamps of packages the lock no longer pins.
fn prune(lay: &Layout, pins: &[Pin]) -> Result<()> {
    let mut keep = std::collections::BTreeSet::new();
    for pin in pins {
        let stamp = fs::read_to_string(lay.stamps.join(format!("{}.stamp", pin.name)))?;
        keep.insert(stamp.lines().nth(1).unwrap_or_default().to_string());
    }
    for e in fs::read_dir(&lay.repo)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(".rpm") && !keep.contains(&name) {
            fs::remove_file(e.path())?;
        }
    }
    for e in fs::read_dir(&lay.stamps)? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(pkg) = name.strip_suffix(".stamp") {
            if !pins.iter().any(|p| p.name == pkg) {
                fs::remove_file(e.path())?;
            }
        }
    }
    Ok(())
}
