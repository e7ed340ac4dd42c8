//! Finding external tests on disk, named as kola names them
//! (mantle/kola/harness.go `registerTestDir`).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::meta::{parse_kola_json, parse_metadata};
use super::{builtin_tests, KolaTest, TestBody, TestMeta, EXTERNAL_TAG};

/// kola's name for a directory's only test, which then gets no `.<exe>` suffix.
const DEFAULT_TEST: &str = "test.sh";
/// A directory with this name beside a test is its data, not more tests.
const DATA_DIR: &str = "data";
/// Where a config keeps its tests: ours, and a distribution config's (kola's).
const TEST_ROOTS: [&str; 2] = ["kola-tests", "tests/kola"];

/// The external tests of a config (its `kola-tests/` and `tests/kola/`) and of
/// each extra directory (`-E DIR`: its `tests/kola/` or `kola-tests/` if it has
/// one, else DIR itself), sorted by name within each source. Names are
/// `ext.<basename of the config or DIR>.<dir>[.<exe>]`; a name defined twice is an error.
/// Built-in tests are not included: see [`all_tests`].
pub fn discover(config_dir: &Path, extra_dirs: &[PathBuf]) -> Result<Vec<KolaTest>> {
    let mut tests = Vec::new();
    let mut seen_roots = Vec::new();
    let mut sources = vec![(config_dir, false)];
    sources.extend(extra_dirs.iter().map(|d| (d.as_path(), true)));
    for (dir, extra) in sources {
        if extra && !dir.is_dir() {
            bail!("external tests directory {} does not exist", dir.display());
        }
        let prefix = format!("ext.{}", dir_name(dir)?);
        let roots: Vec<PathBuf> = TEST_ROOTS
            .iter()
            .map(|r| dir.join(r))
            .filter(|r| r.is_dir())
            .collect();
        let roots = if roots.is_empty() && extra {
            vec![dir.to_path_buf()]
        } else {
            roots
        };
        for root in roots {
            // `-E` naming the config itself adds nothing.
            let canonical =
                fs::canonicalize(&root).with_context(|| format!("resolving {}", root.display()))?;
            if seen_roots.contains(&canonical) {
                continue;
            }
            seen_roots.push(canonical);
            let mut found = discover_dir(&root, &prefix)?;
            found.sort_by(|a, b| a.name.cmp(&b.name));
            tests.extend(found);
        }
    }
    check_unique(&tests)?;
    Ok(tests)
}

/// Built-in tests followed by [`discover`]'s external tests.
pub fn all_tests(config_dir: &Path, extra_dirs: &[PathBuf]) -> Result<Vec<KolaTest>> {
    let mut tests = builtin_tests();
    tests.extend(discover(config_dir, extra_dirs)?);
    check_unique(&tests)?;
    Ok(tests)
}

/// The tests under one tests root, named `<prefix>.<dir>[.<exe>]`.
pub fn discover_dir(root: &Path, prefix: &str) -> Result<Vec<KolaTest>> {
    let mut tests = Vec::new();
    walk(root, root, prefix, &mut tests)?;
    Ok(tests)
}

/// kola derives `<config>` from the directory's own name, as given (not resolved:
/// a workdir's `src/config` symlink names its tests `ext.config.*`).
fn dir_name(dir: &Path) -> Result<String> {
    if let Some(n) = dir.file_name() {
        return Ok(n.to_string_lossy().into_owned());
    }
    let abs = fs::canonicalize(dir).with_context(|| format!("resolving {}", dir.display()))?;
    match abs.file_name() {
        Some(n) => Ok(n.to_string_lossy().into_owned()),
        None => bail!("{} has no name to derive test names from", dir.display()),
    }
}

fn check_unique(tests: &[KolaTest]) -> Result<()> {
    let mut by_name: BTreeMap<&str, &KolaTest> = BTreeMap::new();
    for t in tests {
        if let Some(prev) = by_name.insert(&t.name, t) {
            bail!(
                "test {} is defined twice: {} and {}",
                t.name,
                origin(prev),
                origin(t)
            );
        }
    }
    Ok(())
}

fn origin(t: &KolaTest) -> String {
    match &t.body {
        TestBody::External { exe, .. } => exe.display().to_string(),
        TestBody::Builtin(_) => "built in".into(),
    }
}

/// What one test directory holds besides subdirectories.
#[derive(Default)]
struct TestDir {
    executables: Vec<PathBuf>,
    config: Option<PathBuf>,
    butane: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    base_meta: Option<TestMeta>,
}

fn walk(root: &Path, dir: &Path, prefix: &str, out: &mut Vec<KolaTest>) -> Result<()> {
    let mut entries = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<std::io::Result<Vec<_>>>()
        .with_context(|| format!("reading {}", dir.display()))?;
    entries.sort();
    let mut td = TestDir::default();
    let mut subdirs = Vec::new();
    for file_name in entries {
        let name = file_name.to_string_lossy().into_owned();
        let path = dir.join(&file_name);
        // Follows symlinks, as kola does (data/ is often a link to a shared one).
        let md = fs::metadata(&path).with_context(|| format!("stat {}", path.display()))?;
        let executable = md.permissions().mode() & 0o111 != 0;
        if md.is_dir() {
            if name == DATA_DIR {
                td.data_dir = Some(path);
            } else {
                subdirs.push((path, format!("{prefix}.{name}")));
            }
        } else if !md.is_file() {
            continue;
        } else if executable {
            td.executables.push(path);
        } else {
            match name.as_str() {
                "config.ign" => td.config = Some(path),
                "config.bu" => td.butane = Some(path),
                "config.fcc" => bail!(
                    "{}: config.fcc is not supported anymore; rename it to config.bu",
                    path.display()
                ),
                "kola.json" => td.base_meta = Some(parse_kola_json(&path)?),
                _ => warn_if_script(&path),
            }
        }
    }
    if td.config.is_some() && td.butane.is_some() {
        bail!(
            "{} has both config.ign and config.bu; keep one",
            dir.display()
        );
    }
    let single = td.executables.len() == 1;
    for exe in &td.executables {
        let exe_name = exe.file_name().unwrap_or_default().to_string_lossy();
        let name = if single && exe_name == DEFAULT_TEST {
            prefix.to_string()
        } else {
            format!("{prefix}.{exe_name}")
        };
        let mut meta = match parse_metadata(exe)? {
            Some(m) => m,
            None => td.base_meta.clone().unwrap_or_default(),
        };
        meta.tags.insert(0, EXTERNAL_TAG.to_string());
        meta.butane_config = td.butane.clone();
        out.push(KolaTest {
            name,
            body: TestBody::External {
                exe: exe.clone(),
                dir: dir.to_path_buf(),
                root: root.to_path_buf(),
                data_dir: td.data_dir.clone(),
                config: td.config.clone(),
            },
            meta,
        });
    }
    for (sub, sub_prefix) in subdirs {
        walk(root, &sub, &sub_prefix, out)?;
    }
    Ok(())
}

/// A script without its execute bit is almost always a mistake (kola warns too).
fn warn_if_script(path: &Path) {
    let mut head = [0u8; 2];
    let is_script = fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"#!";
    if is_script {
        tracing::warn!(
            "{} starts with #! but is not executable: not a test",
            path.display()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(path: &Path, text: &str, mode: u32) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, text).unwrap();
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    fn names(tests: &[KolaTest]) -> Vec<&str> {
        tests.iter().map(|t| t.name.as_str()).collect()
    }

    #[test]
    fn naming_as_kola() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("config");
        let t = cfg.join("tests/kola");
        write(&t.join("one/test.sh"), "#!/bin/sh\n", 0o755);
        write(&t.join("named/check"), "#!/bin/sh\n", 0o755);
        write(&t.join("multi/test.sh"), "#!/bin/sh\n", 0o755);
        write(&t.join("multi/other"), "#!/bin/sh\n", 0o755);
        write(&t.join("multi/lib.sh"), "#!/bin/sh\n", 0o644);
        write(&t.join("nested/deeper/test.sh"), "#!/bin/sh\n", 0o755);
        write(&t.join("nested/data/helper.sh"), "#!/bin/sh\n", 0o755);
        write(&t.join("README.md"), "docs\n", 0o644);
        let tests = discover(&cfg, &[]).unwrap();
        assert_eq!(
            names(&tests),
            [
                "ext.config.multi.other",
                "ext.config.multi.test.sh",
                "ext.config.named.check",
                "ext.config.nested.deeper",
                "ext.config.one",
            ]
        );
        assert!(tests.iter().all(|t| t.meta.tags == ["external"]));
    }

    #[test]
    fn extra_dirs_and_duplicates() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("stream");
        write(&cfg.join("kola-tests/basic/test.sh"), "#!/bin/sh\n", 0o755);
        let extra = d.path().join("more");
        write(&extra.join("x/test.sh"), "#!/bin/sh\n", 0o755);
        let repo = d.path().join("repo");
        write(&repo.join("tests/kola/y/test.sh"), "#!/bin/sh\n", 0o755);
        let tests = discover(&cfg, &[extra, repo, cfg.clone()]).unwrap();
        assert_eq!(
            names(&tests),
            ["ext.stream.basic", "ext.more.x", "ext.repo.y"]
        );

        write(&cfg.join("tests/kola/basic/test.sh"), "#!/bin/sh\n", 0o755);
        let e = format!("{:#}", discover(&cfg, &[]).unwrap_err());
        assert!(e.contains("ext.stream.basic is defined twice"), "{e}");

        let e = format!(
            "{:#}",
            discover(&cfg, &[d.path().join("nope")]).unwrap_err()
        );
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn configs_and_data() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("config/tests/kola");
        write(&t.join("ign/test.sh"), "#!/bin/sh\n", 0o755);
        write(&t.join("ign/config.ign"), "{}", 0o644);
        fs::create_dir_all(t.join("ign/data")).unwrap();
        write(&t.join("bu/test.sh"), "#!/bin/sh\n", 0o755);
        write(&t.join("bu/config.bu"), "variant: fcos\n", 0o644);
        write(&t.join("json/test.sh"), "#!/bin/sh\n", 0o755);
        write(&t.join("json/kola.json"), r#"{"tags": "slow"}"#, 0o644);
        let tests = discover(&d.path().join("config"), &[]).unwrap();
        let by = |n: &str| tests.iter().find(|t| t.name == n).unwrap();
        let TestBody::External {
            config, data_dir, ..
        } = &by("ext.config.ign").body
        else {
            panic!("external")
        };
        assert_eq!(config.as_deref(), Some(&*t.join("ign/config.ign")));
        assert_eq!(data_dir.as_deref(), Some(&*t.join("ign/data")));
        assert_eq!(
            by("ext.config.bu").meta.butane_config.as_deref(),
            Some(&*t.join("bu/config.bu"))
        );
        assert_eq!(by("ext.config.json").meta.tags, ["external", "slow"]);

        write(&t.join("fcc/config.fcc"), "", 0o644);
        let e = format!("{:#}", discover(&d.path().join("config"), &[]).unwrap_err());
        assert!(e.contains("config.fcc"), "{e}");
    }

    #[test]
    fn all_tests_has_builtins() {
        let d = tempfile::tempdir().unwrap();
        let cfg = d.path().join("config");
        fs::create_dir_all(&cfg).unwrap();
        let tests = all_tests(&cfg, &[]).unwrap();
        assert_eq!(
            names(&tests)[..6],
            [
                "basic",
                "firstboot",
                "reboot",
                "kernel-override",
                "ostree-status",
                "ostree.upgrade"
            ]
        );
        // Then the install-media scenarios.
        assert_eq!(tests.len(), 6 + crate::kola::testiso::ALL.len());
        assert_eq!(tests[6].name, crate::kola::testiso::ALL[0].name);
    }

    #[test]
    fn both_metadata_forms_is_an_error_naming_the_file() {
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kola/bad-both");
        let e = format!("{:#}", discover(&fixture, &[]).unwrap_err());
        assert!(
            e.contains("tests/kola/both/test.sh") && e.contains("both `## kola:`"),
            "{e}"
        );
    }
}
