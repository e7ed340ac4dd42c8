//! Rendering a [`Package`] as a spec file. The payload is staged by the caller
//! directly as the buildroot, so `%install` is empty.

use std::fmt::Write as _;

use anyhow::{bail, ensure, Result};

use crate::{FileEntry, Package};

/// The spec text for `pkg`.
pub(crate) fn render(pkg: &Package) -> Result<String> {
    check_identity(pkg)?;
    let summary = pkg.summary.lines().next().unwrap_or_default().trim();
    let summary = if summary.is_empty() {
        pkg.name.as_str()
    } else {
        summary
    };
    let mut s = String::new();
    preamble(&mut s, pkg, summary)?;
    // Writing to a String cannot fail.
    let _ = writeln!(s, "\n%description\n{}\n", escape_macros(summary));
    let _ = writeln!(s, "%install\n");
    for (section, body) in [
        ("pre", &pkg.pre),
        ("post", &pkg.post),
        ("posttrans", &pkg.posttrans),
    ] {
        if let Some(body) = body {
            let _ = writeln!(s, "%{section}\n{}\n", escape_macros(body.trim_end()));
        }
    }
    files_section(&mut s, pkg)?;
    Ok(s)
}

/// Name, version, release and arch are single words rpm accepts.
fn check_identity(pkg: &Package) -> Result<()> {
    for (what, value) in [
        ("name", &pkg.name),
        ("version", &pkg.version),
        ("release", &pkg.release),
        ("arch", &pkg.arch),
    ] {
        ensure!(
            !value.is_empty()
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._+~^-".contains(c))
                && (what == "name" || !value.contains('-')),
            "invalid {what} {value:?}"
        );
    }
    Ok(())
}

/// The tags: identity, summary, and exactly the dependencies the test declares.
fn preamble(w: &mut String, pkg: &Package, summary: &str) -> Result<()> {
    let _ = writeln!(w, "Name: {}", pkg.name);
    if let Some(epoch) = pkg.epoch {
        let _ = writeln!(w, "Epoch: {epoch}");
    }
    let _ = writeln!(w, "Version: {}", pkg.version);
    let _ = writeln!(w, "Release: {}", pkg.release);
    let _ = writeln!(w, "Summary: {}", escape_macros(summary));
    let _ = writeln!(w, "License: MIT");
    let _ = writeln!(w, "BuildArch: {}", pkg.arch);
    let _ = writeln!(w, "AutoReqProv: no");
    for (tag, deps) in [
        ("Requires", &pkg.requires),
        ("Provides", &pkg.provides),
        ("Conflicts", &pkg.conflicts),
        ("Obsoletes", &pkg.obsoletes),
        ("Recommends", &pkg.recommends),
    ] {
        for dep in deps {
            ensure!(
                !dep.trim().is_empty() && !dep.contains('\n'),
                "invalid {tag} {dep:?}"
            );
            let _ = writeln!(w, "{tag}: {}", escape_macros(dep));
        }
    }
    Ok(())
}

/// `%files`: directories, then files with their mode and capabilities, then symlinks as listed.
fn files_section(w: &mut String, pkg: &Package) -> Result<()> {
    let _ = writeln!(w, "%files\n%defattr(-,root,root,-)");
    for dir in &pkg.dirs {
        let _ = writeln!(w, "%dir %attr(0755,root,root) {}", files_path(dir)?);
    }
    for entry in &pkg.files {
        match entry {
            FileEntry::File { path, mode, .. } | FileEntry::Copy { path, mode, .. } => {
                let caps = match pkg.caps.get(path) {
                    Some(c) => {
                        ensure!(
                            c.chars()
                                .all(|ch| ch.is_ascii_alphanumeric() || "_,=+-".contains(ch)),
                            "invalid capabilities {c:?} for {path}"
                        );
                        format!("%caps({c}) ")
                    }
                    None => String::new(),
                };
                let _ = writeln!(
                    w,
                    "{caps}%attr({:04o},root,root) {}",
                    mode & 0o7777,
                    files_path(path)?
                );
            }
            FileEntry::Symlink { path, .. } => {
                let _ = writeln!(w, "{}", files_path(path)?);
            }
        }
    }
    Ok(())
}

/// Spec bodies are macro-expanded: a literal `%` must be written `%%`.
fn escape_macros(s: &str) -> String {
    s.replace('%', "%%")
}

/// A path as a `%files` line wants it: quoted, macros escaped, no glob characters.
fn files_path(path: &str) -> Result<String> {
    ensure!(path.starts_with('/'), "path {path:?} is not absolute");
    if let Some(c) = path.chars().find(|c| "*?[]{}\"\\\n".contains(*c)) {
        bail!("path {path:?}: character {c:?} is not supported in %files");
    }
    Ok(format!("\"{}\"", escape_macros(path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_deps_scripts_and_files() {
        let pkg = Package::new("foo", "1.0", "1")
            .requires("bar >= 2")
            .file("/etc/foo 100%.conf", "x")
            .symlink("/usr/bin/foo", "../lib/foo")
            .post("echo 50% > /etc/done");
        let spec = render(&pkg).unwrap();
        assert!(spec.contains("Requires: bar >= 2\n"));
        assert!(spec.contains("%attr(0644,root,root) \"/etc/foo 100%%.conf\"\n"));
        assert!(spec.contains("\n\"/usr/bin/foo\"\n"));
        assert!(spec.contains("%post\necho 50%% > /etc/done\n"));
    }

    #[test]
    fn rejects_bad_input() {
        assert!(render(&Package::new("foo", "1-2", "1")).is_err());
        assert!(render(&Package::new("foo", "1", "1").file("/a*", "")).is_err());
        assert!(render(&Package::new("foo", "1", "1").file("rel", "")).is_err());
    }
}
