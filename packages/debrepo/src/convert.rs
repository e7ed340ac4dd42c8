//! One .deb -> one RPM: name, version, relations, files, and the maintainer
//! scripts' effects (see maintscript.rs).
//!
//! Versions: Debian's `[epoch:]upstream[-revision]` becomes RPM's
//! Epoch/Version/Release: the epoch as is, the upstream version with any `-` as
//! `_` (RPM forbids `-` there), the revision as the release, `0` when there is
//! none (Debian reads a missing revision as `0` too). `~` keeps its meaning in
//! both. Every versioned relation spells the epoch and release out, so a missing
//! one means 0 as it does to dpkg, not "any" as it would to RPM.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use cmdext::CommandRunExt;
use debian_control::lossy::{Relation, Relations};
use debian_control::relations::VersionConstraint;
use debversion::Version;
use fs_err as fs;

use crate::deb::{Control, Data, Entry, Kind};
use crate::maintscript::Alternative;

/// `epoch:version-release` of a Debian version.
pub fn rpm_evr(v: &Version) -> String {
    format!(
        "{}:{}-{}",
        v.epoch.unwrap_or(0),
        v.upstream_version.replace('-', "_"),
        v.debian_revision.as_deref().unwrap_or("0")
    )
}

fn rpm_arch(deb_arch: &str) -> Result<&'static str> {
    Ok(match deb_arch {
        "amd64" => "x86_64",
        "arm64" => "aarch64",
        "all" => "noarch",
        other => bail!("architecture {other} has no RPM name here"),
    })
}

/// One relation in RPM's syntax (`name`, `name >= E:V-R`).
fn rpm_rel(rel: &Relation) -> String {
    match &rel.version {
        None => rel.name.clone(),
        Some((c, v)) => {
            let op = match c {
                VersionConstraint::LessThan => "<",
                VersionConstraint::LessThanEqual => "<=",
                VersionConstraint::Equal => "=",
                VersionConstraint::GreaterThan => ">",
                VersionConstraint::GreaterThanEqual => ">=",
            };
            format!("{} {op} {}", rel.name, rpm_evr(v))
        }
    }
}

/// A group of alternatives: one relation as is, several as a rich `or`.
pub fn rpm_group(group: &[Relation]) -> String {
    match group {
        [one] => rpm_rel(one),
        _ => format!(
            "({})",
            group.iter().map(rpm_rel).collect::<Vec<_>>().join(" or ")
        ),
    }
}

fn groups(r: &Option<Relations>) -> impl Iterator<Item = &Vec<Relation>> {
    r.iter().flat_map(|r| r.0.iter())
}

/// What the converter adds beyond the .deb itself.
#[derive(Default)]
pub struct Extras {
    /// sysusers.d lines (from the closure's definition).
    pub sysusers: Vec<String>,
    /// Units to enable by preset.
    pub enable: Vec<String>,
    /// Alternatives this package wins in the closure: it ships their symlinks.
    pub alternatives: Vec<Alternative>,
    /// A %posttrans scriptlet (from the closure's definition).
    pub posttrans: Option<String>,
}

fn is_doc(path: &str) -> bool {
    ["/usr/share/doc/", "/usr/share/man/", "/usr/share/info/"]
        .iter()
        .any(|d| path.starts_with(d))
}

/// Text for a spec file: `%` is a macro there.
fn spec_text(s: &str) -> String {
    s.replace('%', "%%")
}

/// What rpmbuild's %files reads as a pattern (or an escape, the backslash).
const GLOB: [char; 6] = ['*', '?', '[', ']', '{', '\\'];

/// A path in `%files`: quoted (spaces), `%` escaped. rpmbuild expands glob
/// characters, with no escape for them: each becomes `?`, which matches the
/// path itself (and [`check_globs`] makes sure nothing else).
fn spec_path(p: &str) -> Result<String> {
    if p.contains(['"', '\n']) {
        bail!("{p:?} has a character rpmbuild's %files cannot take");
    }
    let p: String = p
        .chars()
        .map(|c| if GLOB.contains(&c) { '?' } else { c })
        .collect();
    Ok(format!("\"{}\"", spec_text(&p)))
}

/// The /bin and /sbin paths of the commands merging /usr moved: they still
/// resolve through the merged-/usr symlinks, and file dependencies name them
/// (`/bin/sh`), which a solver only finds in Provides (Fedora's bash provides
/// /bin/sh the same way). Paths a Provides cannot carry are left out.
fn moved_command_provides(entries: &[Entry]) -> Vec<&str> {
    entries
        .iter()
        .filter(|e| matches!(e.kind, Kind::File(_) | Kind::Symlink(_)))
        .filter_map(|e| e.moved_from.as_deref())
        .filter(|o| o.starts_with("/bin/") || o.starts_with("/sbin/"))
        .filter(|o| {
            o.chars()
                .all(|c| c.is_ascii_alphanumeric() || "/._+-".contains(c))
        })
        .collect()
}

/// No path with glob characters would, as its `?` pattern, also match another.
fn check_globs(paths: &[&str]) -> Result<()> {
    for p in paths.iter().filter(|p| p.contains(GLOB)) {
        let pat: Vec<char> = p.chars().collect();
        for q in paths.iter().filter(|q| *q != p) {
            let q: Vec<char> = q.chars().collect();
            let same =
                q.len() == pat.len() && pat.iter().zip(&q).all(|(a, b)| GLOB.contains(a) || a == b);
            if same {
                bail!(
                    "{p:?} and {:?} cannot both be listed in rpmbuild's %files",
                    q.iter().collect::<String>()
                );
            }
        }
    }
    Ok(())
}

/// The spec of the RPM: header, relations, scriptlets, and the file list of the
/// staged root.
fn spec(ctl: &Control, data: &Data, x: &Extras, root: &Path) -> Result<String> {
    let c = &ctl.control;
    let desc = c.description.clone().unwrap_or_default();
    let (summary, body) = desc.split_once('\n').unwrap_or((&desc, ""));
    let body: Vec<&str> = body
        .lines()
        .map(|l| l.strip_prefix(' ').unwrap_or(l))
        .map(|l| if l == "." { "" } else { l })
        .collect();
    let v = &c.version;
    let mut s = String::new();
    let w = &mut s;
    writeln!(
        w,
        "# Generated by debrepo from {} {} ({})",
        c.name, v, c.architecture
    )?;
    writeln!(w, "Name: {}", c.name)?;
    if let Some(e) = v.epoch {
        writeln!(w, "Epoch: {e}")?;
    }
    writeln!(w, "Version: {}", v.upstream_version.replace('-', "_"))?;
    writeln!(
        w,
        "Release: {}",
        v.debian_revision.as_deref().unwrap_or("0")
    )?;
    writeln!(w, "Summary: {}", spec_text(summary.trim()))?;
    writeln!(
        w,
        "License: Debian: see /usr/share/doc/{}/copyright",
        c.name
    )?;
    writeln!(w, "Vendor: Debian (repackaged by debrepo)")?;
    if let Some(h) = &c.homepage {
        writeln!(w, "URL: {}", spec_text(h))?;
    }
    writeln!(w, "BuildArch: {}", rpm_arch(&c.architecture)?)?;
    writeln!(w, "AutoReqProv: no")?;
    for g in groups(&c.pre_depends) {
        writeln!(w, "Requires(pre): {}", rpm_group(g))?;
    }
    for g in groups(&c.depends) {
        writeln!(w, "Requires: {}", rpm_group(g))?;
    }
    for g in groups(&c.recommends) {
        writeln!(w, "Recommends: {}", rpm_group(g))?;
    }
    for g in groups(&c.suggests) {
        writeln!(w, "Suggests: {}", rpm_group(g))?;
    }
    for rel in groups(&c.conflicts).chain(groups(&c.breaks)).flatten() {
        // Debian lets a package conflict with what it provides (one of a kind).
        if rel.name != c.name {
            writeln!(w, "Conflicts: {}", rpm_group(std::slice::from_ref(rel)))?;
        }
    }
    for rel in groups(&c.provides).flatten() {
        match &rel.version {
            Some((_, pv)) => writeln!(w, "Provides: {} = {}", rel.name, rpm_evr(pv))?,
            None => writeln!(w, "Provides: {}", rel.name)?,
        }
    }
    for p in moved_command_provides(&data.entries) {
        writeln!(w, "Provides: {p}")?;
    }
    writeln!(w, "\n%description\n{}", spec_text(&body.join("\n")))?;
    writeln!(w, "\n%install\ncp -a {}/. %{{buildroot}}/", root.display())?;
    if let Some(p) = &x.posttrans {
        // The merged path: rpmbuild makes the interpreter a file dependency.
        writeln!(w, "\n%posttrans -p /usr/bin/sh\n{}", spec_text(p))?;
    }
    writeln!(w, "\n%files")?;
    check_globs(
        &data
            .entries
            .iter()
            .map(|e| e.path.as_str())
            .collect::<Vec<_>>(),
    )?;
    for e in &data.entries {
        let path = spec_path(&e.path)?;
        let attr = format!("%attr({:04o},{},{})", e.mode, e.user, e.group);
        match &e.kind {
            // The top-level directories are the stream's filesystem package's.
            Kind::Dir if e.path.rfind('/') == Some(0) => {}
            Kind::Dir => writeln!(w, "%dir {attr} {path}")?,
            Kind::Symlink(_) => writeln!(w, "{path}")?,
            Kind::File(_) if ctl.conffiles.contains(&e.path) => {
                writeln!(w, "%config(noreplace) {attr} {path}")?
            }
            Kind::File(_) if is_doc(&e.path) => writeln!(w, "%doc {attr} {path}")?,
            Kind::File(_) => writeln!(w, "{attr} {path}")?,
        }
    }
    for (path, _) in extra_files(&c.name, x) {
        writeln!(w, "{}", spec_path(&path)?)?;
    }
    Ok(s)
}

/// What the converter adds to the package: path and content (a file) or target
/// (a symlink, `Err`).
fn extra_files(name: &str, x: &Extras) -> Vec<(String, std::result::Result<String, String>)> {
    let mut out = Vec::new();
    if !x.sysusers.is_empty() {
        out.push((
            format!("/usr/lib/sysusers.d/debrepo-{name}.conf"),
            Ok(format!(
                "# From {name}'s maintainer scripts (debrepo)\n{}\n",
                x.sysusers.join("\n")
            )),
        ));
    }
    if !x.enable.is_empty() {
        let units: String = x.enable.iter().map(|u| format!("enable {u}\n")).collect();
        out.push((
            format!("/usr/lib/systemd/system-preset/80-debrepo-{name}.preset"),
            Ok(format!(
                "# From {name}'s maintainer scripts (debrepo)\n{units}"
            )),
        ));
    }
    for a in &x.alternatives {
        let mut links = vec![(a.link.clone(), a.name.clone(), a.path.clone())];
        links.extend(a.slaves.iter().cloned());
        for (link, alt, path) in links {
            let at = format!("/etc/alternatives/{alt}");
            out.push((crate::deb::merge_usr(&link), Err(at.clone())));
            out.push((at, Err(crate::deb::merge_usr(&path))));
        }
    }
    out
}

/// Lay the package's files out under `root`, as rpmbuild's %install copies them.
fn stage(
    data: &Data,
    extra: &[(String, std::result::Result<String, String>)],
    root: &Path,
) -> Result<()> {
    for e in &data.entries {
        let p = root.join(e.path.trim_start_matches('/'));
        match &e.kind {
            Kind::Dir => fs::create_dir_all(&p)?,
            Kind::Symlink(t) => {
                fs::create_dir_all(p.parent().expect("below root"))?;
                fs::os::unix::fs::symlink(t, &p)?;
            }
            Kind::File(bytes) => {
                fs::create_dir_all(p.parent().expect("below root"))?;
                fs::write(&p, bytes)?;
                fs::set_permissions(&p, std::fs::Permissions::from_mode(e.mode.into()))?;
            }
        }
    }
    for (path, what) in extra {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().expect("below root"))?;
        if p.symlink_metadata().is_ok() {
            bail!("{path} is both in the package and added by debrepo");
        }
        match what {
            Ok(text) => fs::write(&p, text)?,
            Err(target) => fs::os::unix::fs::symlink(target, &p)?,
        }
    }
    Ok(())
}

/// Build the RPM of one .deb with rpmbuild in `work` (scratch, emptied first);
/// returns the RPM's path.
pub fn convert(ctl: &Control, data: &Data, x: &Extras, work: &Path) -> Result<std::path::PathBuf> {
    if work.exists() {
        fs::remove_dir_all(work)?;
    }
    let root = work.join("root");
    fs::create_dir_all(&root)?;
    let extra = extra_files(&ctl.control.name, x);
    stage(data, &extra, &root)?;
    let spec_path = work.join(format!("{}.spec", ctl.control.name));
    fs::write(&spec_path, spec(ctl, data, x, &root)?)?;
    let rpms = work.join("rpms");
    let def = |k: &str, v: &str| ["--define".to_string(), format!("{k} {v}")];
    let mut cmd = cmdext::command("rpmbuild");
    cmd.args(["-bb", "--quiet", "--nodeps"]);
    for (k, v) in [
        ("_topdir", work.display().to_string()),
        ("_rpmdir", rpms.display().to_string()),
        ("_builddir", work.join("build").display().to_string()),
        (
            "_buildrootdir",
            work.join("buildroot").display().to_string(),
        ),
        ("_dbpath", work.join("rpmdb").display().to_string()),
        ("_build_id_links", "none".into()),
        ("debug_package", "%{nil}".into()),
        ("__os_install_post", "%{nil}".into()),
        ("_binary_payload", "w3.zstdio".into()),
        ("source_date_epoch_from_changelog", "0".into()),
        ("use_source_date_epoch_as_buildtime", "1".into()),
        ("clamp_mtime_to_source_date_epoch", "1".into()),
    ] {
        cmd.args(def(k, &v));
    }
    cmd.env("SOURCE_DATE_EPOCH", data.mtime.to_string());
    cmd.arg(&spec_path).run().context("rpmbuild")?;
    let built: Vec<_> = walk_rpms(&rpms)?;
    match &built[..] {
        [one] => Ok(one.clone()),
        _ => bail!(
            "rpmbuild made {} RPMs in {}, expected one",
            built.len(),
            rpms.display()
        ),
    }
}

fn walk_rpms(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir)? {
        let p = e?.path();
        if p.is_dir() {
            out.extend(walk_rpms(&p)?);
        } else if p.extension().is_some_and(|x| x == "rpm") {
            out.push(p);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> Vec<Relation> {
        s.parse::<Relations>().unwrap().0.remove(0)
    }

    #[test]
    fn versions_map_with_epoch_release_and_tilde() {
        let v: Version = "1:9.2p1-2+deb12u10".parse().unwrap();
        assert_eq!(rpm_evr(&v), "1:9.2p1-2+deb12u10");
        let v: Version = "252.39-1~deb12u2".parse().unwrap();
        assert_eq!(rpm_evr(&v), "0:252.39-1~deb12u2");
        let v: Version = "1.2-beta-3".parse().unwrap();
        assert_eq!(rpm_evr(&v), "0:1.2_beta-3");
        let v: Version = "059".parse().unwrap();
        assert_eq!(rpm_evr(&v), "0:059-0");
    }

    #[test]
    fn files_paths_are_quoted_and_globs_made_single_matches() {
        assert_eq!(spec_path("/usr/bin/[").unwrap(), "\"/usr/bin/?\"");
        assert_eq!(spec_path("/a b/100%").unwrap(), "\"/a b/100%%\"");
        assert!(spec_path("/a\"b").is_err());
        assert_eq!(spec_path("/u/a\\x2db").unwrap(), "\"/u/a?x2db\"");
        assert!(check_globs(&["/usr/bin/[", "/usr/bin/ab", "/usr/bin/test"]).is_ok());
        let e = check_globs(&["/usr/bin/[", "/usr/bin/ab", "/usr/bin/x"]).unwrap_err();
        assert!(e.to_string().contains("cannot both be listed"), "{e}");
    }

    #[test]
    fn commands_moved_from_bin_and_sbin_keep_their_paths_as_provides() {
        let e = |path: &str, from: Option<&str>, kind: Kind| Entry {
            path: path.into(),
            moved_from: from.map(String::from),
            mode: 0o755,
            user: "root".into(),
            group: "root".into(),
            kind,
        };
        let entries = [
            e("/usr/bin/sh", Some("/bin/sh"), Kind::Symlink("dash".into())),
            e("/usr/bin/dash", Some("/bin/dash"), Kind::File(vec![])),
            e("/usr/sbin/agetty", Some("/sbin/agetty"), Kind::File(vec![])),
            e("/usr/bin/[", Some("/bin/["), Kind::File(vec![])),
            e("/usr/lib/x.so", Some("/lib/x.so"), Kind::File(vec![])),
            e("/usr/bin/ls", None, Kind::File(vec![])),
            e("/usr/bin", Some("/bin"), Kind::Dir),
        ];
        assert_eq!(
            moved_command_provides(&entries),
            ["/bin/sh", "/bin/dash", "/sbin/agetty"]
        );
    }

    #[test]
    fn relations_become_rpm_and_rich_dependencies() {
        assert_eq!(rpm_group(&rel("libc6 (>= 2.34)")), "libc6 >= 0:2.34-0");
        assert_eq!(rpm_group(&rel("libc6:any (<< 3)")), "libc6 < 0:3-0");
        assert_eq!(
            rpm_group(&rel("default-dbus-system-bus | dbus-system-bus")),
            "(default-dbus-system-bus or dbus-system-bus)"
        );
        assert_eq!(
            rpm_group(&rel("systemd (= 252.39-1~deb12u2) | foo (>> 1:2)")),
            "(systemd = 0:252.39-1~deb12u2 or foo > 1:2-0)"
        );
    }
}
