//! One .deb -> one RPM: name, version, relations, files, and the maintainer
//! scripts' effects (see maintscript.rs).
//!
//! Versions: Debian's `[epoch:]upstream[-revision]` becomes RPM's
//! Epoch/Version/Release: the epoch as is, the upstream version with any `-` as
//! `_` (RPM forbids `-` there), the revision as the release, `0` when there is
//! none (Debian reads a missing revision as `0` too). `~` keeps its meaning in
//! both. Every versioned relation spells the epoch and release out, so a missing
//! one means 0 as it does to dpkg, not "any" as it would to RPM.

use anyhow::{bail, Context, Result};
use debian_control::lossy::{Relation, Relations};
use debian_control::relations::VersionConstraint;
use debversion::Version;
use rpm::{Dependency, FileMode, FileOptions, PackageBuilder};

use crate::deb::{Control, Data, Kind};
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

/// The dependency as `rpm` builds it (a name with no version goes in whole, so a
/// rich dependency stays one string).
fn dependency(group: &[Relation]) -> Dependency {
    match group {
        [Relation {
            name,
            version: Some((c, v)),
            ..
        }] => {
            let evr = rpm_evr(v);
            match c {
                VersionConstraint::LessThan => Dependency::less(name, evr),
                VersionConstraint::LessThanEqual => Dependency::less_eq(name, evr),
                VersionConstraint::Equal => Dependency::eq(name, evr),
                VersionConstraint::GreaterThan => Dependency::greater(name, evr),
                VersionConstraint::GreaterThanEqual => Dependency::greater_eq(name, evr),
            }
        }
        _ => Dependency::any(rpm_group(group)),
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

/// Build the RPM of `deb`.
pub fn convert(ctl: &Control, data: &Data, extras: &Extras) -> Result<rpm::Package> {
    let c = &ctl.control;
    let desc = c.description.clone().unwrap_or_default();
    let (summary, body) = desc.split_once('\n').unwrap_or((&desc, ""));
    let arch = rpm_arch(&c.architecture)?;
    let evr = &c.version;
    let cfg = rpm::BuildConfig::v4()
        .compression(rpm::CompressionWithLevel::Zstd(3))
        .source_date(data.mtime as u32);
    let mut b = PackageBuilder::new(
        &c.name,
        &evr.upstream_version.replace('-', "_"),
        &format!("Debian: see /usr/share/doc/{}/copyright", c.name),
        arch,
        summary.trim(),
    );
    b.using_config(cfg)
        .release(evr.debian_revision.as_deref().unwrap_or("0"))
        .description(
            body.lines()
                .map(|l| l.strip_prefix(' ').unwrap_or(l))
                .collect::<Vec<_>>()
                .join("\n"),
        )
        .vendor("Debian (repackaged by cosa's debrepo)");
    if let Some(e) = evr.epoch {
        b.epoch(e);
    }
    if let Some(h) = &c.homepage {
        b.url(h);
    }

    for group in groups(&c.pre_depends) {
        // Requires(pre): installed before this package, as dpkg unpacks it.
        let mut d = dependency(group);
        d.flags |= rpm::DependencyFlags::SCRIPT_PRE;
        b.requires(d);
    }
    for group in groups(&c.depends) {
        b.requires(dependency(group));
    }
    for group in groups(&c.recommends) {
        b.recommends(dependency(group));
    }
    for group in groups(&c.suggests) {
        b.suggests(dependency(group));
    }
    for group in groups(&c.conflicts).chain(groups(&c.breaks)) {
        for rel in group {
            // Debian lets a package conflict with what it provides (one of a kind).
            if rel.name != c.name {
                b.conflicts(dependency(std::slice::from_ref(rel)));
            }
        }
    }
    for group in groups(&c.provides) {
        for rel in group {
            b.provides(match &rel.version {
                Some((_, v)) => Dependency::eq(&rel.name, rpm_evr(v)),
                None => Dependency::any(&rel.name),
            });
        }
    }

    add_entries(&mut b, ctl, data)?;
    add_extras(&mut b, &c.name, extras)?;
    b.build()
        .with_context(|| format!("building the RPM of {} {}", c.name, c.version))
}

fn add_entries(b: &mut PackageBuilder, ctl: &Control, data: &Data) -> Result<()> {
    for e in &data.entries {
        let what = || format!("adding {} to the RPM", e.path);
        match &e.kind {
            // The top-level directories are the stream's filesystem package's.
            Kind::Dir if e.path.rfind('/') == Some(0) => {}
            Kind::Dir => {
                b.with_dir_entry(
                    FileOptions::dir(&e.path)
                        .mode(FileMode::dir(e.mode))
                        .user(&e.user)
                        .group(&e.group),
                )
                .with_context(what)?;
            }
            Kind::Symlink(t) => {
                b.with_symlink(
                    FileOptions::symlink(&e.path, t)
                        .user(&e.user)
                        .group(&e.group),
                )
                .with_context(what)?;
            }
            Kind::File(data) => {
                let mut o = FileOptions::new(&e.path)
                    .mode(FileMode::regular(e.mode))
                    .user(&e.user)
                    .group(&e.group);
                if ctl.conffiles.contains(&e.path) {
                    o = o.config().noreplace();
                } else if is_doc(&e.path) {
                    o = o.doc();
                }
                b.with_file_contents(data.clone(), o).with_context(what)?;
            }
        }
    }
    Ok(())
}

fn add_extras(b: &mut PackageBuilder, name: &str, x: &Extras) -> Result<()> {
    if !x.sysusers.is_empty() {
        let text = format!(
            "# From {name}'s maintainer scripts (debrepo)\n{}\n",
            x.sysusers.join("\n")
        );
        b.with_file_contents(
            text,
            FileOptions::new(format!("/usr/lib/sysusers.d/debrepo-{name}.conf")).permissions(0o644),
        )?;
    }
    if !x.enable.is_empty() {
        let text: String = x.enable.iter().map(|u| format!("enable {u}\n")).collect();
        b.with_file_contents(
            format!("# From {name}'s maintainer scripts (debrepo)\n{text}"),
            FileOptions::new(format!(
                "/usr/lib/systemd/system-preset/80-debrepo-{name}.preset"
            ))
            .permissions(0o644),
        )?;
    }
    for a in &x.alternatives {
        let mut links = vec![(a.link.clone(), a.name.clone(), a.path.clone())];
        links.extend(a.slaves.iter().cloned());
        for (link, alt, path) in links {
            let at = format!("/etc/alternatives/{alt}");
            b.with_symlink(FileOptions::symlink(crate::deb::merge_usr(&link), &at))?;
            b.with_symlink(FileOptions::symlink(&at, crate::deb::merge_usr(&path)))?;
        }
    }
    if let Some(s) = &x.posttrans {
        b.post_trans_script(s.as_str());
    }
    Ok(())
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
