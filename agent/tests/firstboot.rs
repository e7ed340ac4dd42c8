//! `demo-agent firstboot` as the init runs it: the console lines and the exit
//! status kola and the init depend on.

use std::fs;
use std::path::Path;
use std::process::Output;

fn firstboot(root: &Path, config: &Path) -> Output {
    cmdext::command(env!("CARGO_BIN_EXE_demo-agent"))
        .arg("firstboot")
        .arg("--root")
        .arg(root)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap()
}

#[test]
fn success_line() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    fs::create_dir(&root).unwrap();
    let cfg = d.path().join("config.ign");
    fs::write(
        &cfg,
        r#"{"ignition":{"version":"3.4.0"},
            "passwd":{"users":[{"name":"core","sshAuthorizedKeys":["ssh-ed25519 AAAA"]}]},
            "storage":{"files":[{"path":"/etc/kola-marker","contents":{"source":"data:,booted"}}],
                       "directories":[{"path":"/var/lib/x"}]},
            "systemd":{"units":[{"name":"m.service","enabled":true,
                                 "contents":"[Service]\nExecStart=/bin/true\n"}]}}"#,
    )
    .unwrap();
    let out = firstboot(&root, &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("demo-agent: ignition: applied 2 files, 1 users, 1 units"),
        "{stderr}"
    );
    assert_eq!(
        fs::read_to_string(root.join("etc/kola-marker")).unwrap(),
        "booted"
    );
    assert!(root.join("etc/demo-agent/units.d/m.service").exists());
}

#[test]
fn failure_line_and_nothing_written() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    fs::create_dir(&root).unwrap();
    let cfg = d.path().join("config.ign");
    fs::write(
        &cfg,
        r#"{"ignition":{"version":"2.2.0"},"storage":{"files":[{"path":"/etc/x","filesystem":"root"}]}}"#,
    )
    .unwrap();
    let out = firstboot(&root, &cfg);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "demo-agent: ignition: FAILED: ignition.version: unsupported config version \"2.2.0\""
        ),
        "{stderr}"
    );
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0);

    fs::write(&cfg, "{not json").unwrap();
    let out = firstboot(&root, &cfg);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("demo-agent: ignition: FAILED: config is not valid JSON"));

    // An empty config (fw_cfg entry present but empty) is no config.
    fs::write(&cfg, "").unwrap();
    let out = firstboot(&root, &cfg);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no config provided"));
    assert_eq!(fs::read_dir(&root).unwrap().count(), 0);
}
