//! `.repo` files: parsing, selecting the enabled sections, rewriting for libdnf.

use super::*;

/// One `[id]` section of a .repo file, in order, values with continuation lines joined.
#[derive(Clone, Debug)]
pub(super) struct RepoSection {
    pub(super) id: String,
    pub(super) file: PathBuf,
    pub(super) entries: Vec<(String, String)>,
}

impl RepoSection {
    pub(super) fn get(&self, key: &str) -> Option<&str> {
        self.entries
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A list-valued key (baseurl, gpgkey): separated by commas or whitespace.
    pub(super) fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default()
    }

    pub(super) fn urls(&self) -> Vec<String> {
        let mut u = self.list("baseurl");
        u.extend(self.list("mirrorlist"));
        u.extend(self.list("metalink"));
        u
    }

    pub(super) fn gpgcheck(&self) -> bool {
        self.get("gpgcheck")
            .is_some_and(|v| matches!(v.to_ascii_lowercase().as_str(), "1" | "yes" | "true" | "on"))
    }
}

/// Parse a .repo file with GLib's key-file parser, in file order. Values are taken raw
/// (no GLib escapes), as dnf reads them.
pub(super) fn parse_repo_file(path: &Path) -> Result<Vec<RepoSection>> {
    let text = fs_err::read_to_string(path)?;
    let kf = glib::KeyFile::new();
    kf.load_from_data(&fold_continuations(&text), glib::KeyFileFlags::NONE)
        .with_context(|| format!("parsing repo file {}", path.display()))?;
    kf.groups()
        .iter()
        .map(|group| {
            let group = group.as_str();
            let at = |key: &str| format!("{}: [{group}] {key}", path.display());
            let entries = kf
                .keys(group)
                .with_context(|| at(""))?
                .iter()
                .map(|key| {
                    let key = key.as_str();
                    let v = kf.value(group, key).with_context(|| at(key))?;
                    Ok((key.to_string(), v.trim().to_string()))
                })
                .collect::<Result<_>>()?;
            Ok(RepoSection {
                id: group.trim().to_string(),
                file: path.to_path_buf(),
                entries,
            })
        })
        .collect()
}

/// What GLib's key-file syntax lacks of dnf's: an indented line continues the value
/// above it, and `;` starts a comment as `#` does.
fn fold_continuations(text: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    // Whether the last line kept is a `key=value` that an indented line may continue.
    let mut in_value = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            out.push(format!("#{trimmed}"));
            continue;
        }
        if in_value && line.starts_with(char::is_whitespace) {
            if let Some(last) = out.iter_mut().rev().find(|l| !l.starts_with('#')) {
                last.push(' ');
                last.push_str(trimmed);
                continue;
            }
        }
        in_value = !trimmed.starts_with('[') && trimmed.contains('=');
        out.push(line.to_string());
    }
    out.join("\n") + "\n"
}

/// Lexically normalize `a/./b/../c` (the path need not exist).
pub(super) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// cosa extension: a location without `scheme://` is relative to the .repo file.
pub(super) fn absolutize_url(url: &str, dir: &Path) -> String {
    if url.contains("://") {
        return url.to_string();
    }
    format!("file://{}", normalize(&dir.join(url)).display())
}

/// The enabled sections of the setup's .repo files, URLs made absolute.
pub(super) fn select_repos(setup: &RepoSetup) -> Result<Vec<RepoSection>> {
    let mut all: Vec<RepoSection> = Vec::new();
    for f in &setup.repo_files {
        let abs = std::path::absolute(f).with_context(|| format!("repo file {}", f.display()))?;
        for s in parse_repo_file(&abs)? {
            if let Some(prev) = all.iter().find(|p| p.id == s.id) {
                bail!(
                    "repo '{}' is defined in both {} and {}",
                    s.id,
                    prev.file.display(),
                    s.file.display()
                );
            }
            all.push(s);
        }
    }
    let mut selected = Vec::new();
    for id in &setup.enabled {
        // libdnf reads a [main] section of a .repo file as global options, not a repo.
        ensure!(
            id != "main",
            "repo id 'main' is reserved by libdnf: rename the repo"
        );
        let mut s = all.iter().find(|s| &s.id == id).cloned().ok_or_else(|| {
            let files: Vec<String> = setup
                .repo_files
                .iter()
                .map(|f| f.display().to_string())
                .collect();
            anyhow!(
                "repo '{id}' not found in any repo file ({})",
                files.join(", ")
            )
        })?;
        let dir = s.file.parent().unwrap_or(Path::new("/")).to_path_buf();
        for (k, v) in s.entries.iter_mut() {
            if k == "baseurl" || k == "gpgkey" {
                let urls: Vec<String> = v
                    .split(|c: char| c == ',' || c.is_whitespace())
                    .filter(|u| !u.is_empty())
                    .map(|u| absolutize_url(u, &dir))
                    .collect();
                *v = urls.join(" ");
            }
        }
        if setup.releasever.is_none() && s.entries.iter().any(|(_, v)| v.contains("$releasever")) {
            bail!(
                "repo '{id}' ({}) uses $releasever but no releasever is set",
                s.file.display()
            );
        }
        ensure!(
            !s.urls().is_empty(),
            "repo '{id}' ({}) has no baseurl, mirrorlist or metalink",
            s.file.display()
        );
        s.entries
            .retain(|(k, _)| k != "enabled" && k != "skip_if_unavailable");
        s.entries.push(("enabled".into(), "1".into()));
        s.entries.push(("skip_if_unavailable".into(), "0".into()));
        selected.push(s);
    }
    Ok(selected)
}

pub(super) fn render_repos(repos: &[RepoSection]) -> String {
    let mut out = String::new();
    for r in repos {
        out.push_str(&format!("# from {}\n[{}]\n", r.file.display(), r.id));
        for (k, v) in &r.entries {
            out.push_str(&format!("{k}={v}\n"));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_file_relative_baseurl_and_continuations() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("a.repo");
        std::fs::write(
            &f,
            "# c\n[one]\nname=One\nbaseurl=../repo/$basearch\n  https://m/x\ngpgkey=key.asc\n\n[two]\nbaseurl=http://x/\nenabled=0\n",
        )
        .unwrap();
        let setup = RepoSetup {
            repo_files: vec![f.clone()],
            enabled: vec!["one".into()],
            releasever: None,
            basearch: "x86_64".into(),
            cache_dir: d.path().join("cache"),
        };
        let r = select_repos(&setup).unwrap();
        assert_eq!(r.len(), 1);
        let parent = d.path().parent().unwrap().display().to_string();
        assert_eq!(
            r[0].list("baseurl"),
            vec![
                format!("file://{parent}/repo/$basearch"),
                "https://m/x".into()
            ]
        );
        assert_eq!(
            r[0].list("gpgkey"),
            vec![format!("file://{}/key.asc", d.path().display())]
        );
        assert!(render_repos(&r).contains("enabled=1\n"));

        let missing = RepoSetup {
            enabled: vec!["nope".into()],
            ..setup
        };
        let e = format!("{:#}", select_repos(&missing).unwrap_err());
        assert!(e.contains("'nope'"), "{e}");
    }

    #[test]
    fn repo_file_syntax() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("b.repo");
        std::fs::write(
            &f,
            "; dnf comment\n[ spaced ]\n  name = Spaced\nbaseurl = http://a/\n# between\n\thttp://b/\nexclude=x\\sy\n",
        )
        .unwrap();
        let r = parse_repo_file(&f).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].id, "spaced");
        assert_eq!(r[0].get("name"), Some("Spaced"));
        assert_eq!(r[0].list("baseurl"), vec!["http://a/", "http://b/"]);
        // Values are raw: no GLib escapes.
        assert_eq!(r[0].get("exclude"), Some("x\\sy"));

        for (bad, what) in [
            ("baseurl=http://x/\n[a]\n", "outside"),
            ("[a]\nno equals sign\n", "malformed"),
        ] {
            std::fs::write(&f, bad).unwrap();
            let e = format!("{:#}", parse_repo_file(&f).unwrap_err());
            assert!(e.contains(&f.display().to_string()), "{what}: {e}");
        }
    }
}
