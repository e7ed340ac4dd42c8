//! Where `firstboot` finds its config when `--config` is not given.

use std::fs;
use std::path::Path;

use super::{read_config, FirstbootOpts, INSTALLED_CONFIG, LIVE_CONFIG};

fn opts(root: &Path) -> FirstbootOpts {
    FirstbootOpts {
        root: root.to_path_buf(),
        config: None,
    }
}

fn put(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

#[test]
fn no_source_means_no_config() {
    let t = tempfile::tempdir().unwrap();
    assert_eq!(read_config(&opts(t.path())).unwrap(), None);
}

#[test]
fn installed_config_comes_before_the_live_one() {
    let t = tempfile::tempdir().unwrap();
    put(t.path(), LIVE_CONFIG, "live");
    assert_eq!(read_config(&opts(t.path())).unwrap().unwrap(), b"live");
    put(t.path(), INSTALLED_CONFIG, "installed");
    assert_eq!(read_config(&opts(t.path())).unwrap().unwrap(), b"installed");
}

#[test]
fn blank_files_are_skipped_and_explicit_config_wins() {
    let t = tempfile::tempdir().unwrap();
    put(t.path(), INSTALLED_CONFIG, " \n");
    put(t.path(), LIVE_CONFIG, "live");
    assert_eq!(read_config(&opts(t.path())).unwrap().unwrap(), b"live");
    let explicit = t.path().join("x.ign");
    fs::write(&explicit, "explicit").unwrap();
    let o = FirstbootOpts {
        root: t.path().to_path_buf(),
        config: Some(explicit),
    };
    assert_eq!(read_config(&o).unwrap().unwrap(), b"explicit");
    let missing = FirstbootOpts {
        root: t.path().to_path_buf(),
        config: Some(t.path().join("nope")),
    };
    assert!(read_config(&missing).is_err());
}
