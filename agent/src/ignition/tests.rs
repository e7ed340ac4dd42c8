//! Parsing, validation and application into a temporary root.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use serde_json::json;

use super::units::plain_exec_start;
use super::{provision, Counts};
use crate::console::Console;

fn seeded_root() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    let etc = d.path().join("etc");
    fs::create_dir_all(&etc).unwrap();
    fs::write(
        etc.join("passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/sbin/nologin\n",
    )
    .unwrap();
    fs::write(
        etc.join("group"),
        "root:x:0:\nwheel:x:10:root\nusers:x:100:\nnogroup:x:65534:\n",
    )
    .unwrap();
    fs::write(etc.join("shadow"), "root:*:19000:0:99999:7:::\n").unwrap();
    fs::set_permissions(etc.join("shadow"), std::fs::Permissions::from_mode(0o600)).unwrap();
    d
}

/// Every node under `root`: kind, mode and contents (or link target).
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let m = fs::symlink_metadata(&p).unwrap();
        let rel = p.strip_prefix(root).unwrap().display().to_string();
        let desc = if m.file_type().is_symlink() {
            format!("link {}", fs::read_link(&p).unwrap().display())
        } else if m.is_dir() {
            for e in fs::read_dir(&p).unwrap() {
                stack.push(e.unwrap().path());
            }
            format!("dir {:o}", m.mode() & 0o7777)
        } else {
            format!(
                "file {:o} {:?}",
                m.mode() & 0o7777,
                String::from_utf8_lossy(&fs::read(&p).unwrap())
            )
        };
        out.insert(rel, desc);
    }
    out
}

fn apply(root: &Path, cfg: serde_json::Value) -> anyhow::Result<Counts> {
    provision(cfg.to_string().as_bytes(), root, Console::Stderr)
}

fn err(root: &Path, cfg: serde_json::Value) -> String {
    let before = snapshot(root);
    let e = format!("{:#}", apply(root, cfg).unwrap_err());
    assert_eq!(
        before,
        snapshot(root),
        "a failed config wrote something ({e})"
    );
    e
}

fn mode(p: &Path) -> u32 {
    fs::symlink_metadata(p).unwrap().mode() & 0o7777
}

#[test]
fn files_directories_links() {
    let root = seeded_root();
    let r = root.path();
    fs::create_dir_all(r.join("etc/existing")).unwrap();
    fs::write(r.join("etc/motd"), "old\n").unwrap();
    let counts = apply(
        r,
        json!({
            "ignition": {"version": "3.4.0"},
            "storage": {
                "files": [
                    {"path": "/etc/hello", "mode": 0o600,
                     "contents": {"source": "data:,hello%20world%0A"}},
                    {"path": "/etc/deep/nested/b64", "mode": 0o755,
                     "contents": {"source": "data:text/plain;base64,IyEvYmluL3NoCmVjaG8gaGkK"}},
                    {"path": "/etc/motd", "append": [{"source": "data:,more%0A"}]},
                    {"path": "/var/empty-file"},
                    {"path": "/etc/./x/../replaced", "overwrite": true,
                     "contents": {"source": "data:,new"}}
                ],
                "directories": [
                    {"path": "/var/lib/thing", "mode": 0o750},
                    {"path": "/etc/existing", "mode": 0o700}
                ],
                "links": [
                    {"path": "/etc/hello-link", "target": "/etc/hello"},
                    {"path": "/etc/hello-hard", "target": "/etc/hello", "hard": true}
                ]
            }
        }),
    )
    .unwrap();
    assert_eq!(
        counts,
        Counts {
            files: 9,
            users: 0,
            units: 0
        }
    );
    assert_eq!(
        fs::read_to_string(r.join("etc/hello")).unwrap(),
        "hello world\n"
    );
    assert_eq!(mode(&r.join("etc/hello")), 0o600);
    assert_eq!(
        fs::read_to_string(r.join("etc/deep/nested/b64")).unwrap(),
        "#!/bin/sh\necho hi\n"
    );
    assert_eq!(mode(&r.join("etc/deep/nested/b64")), 0o755);
    assert_eq!(mode(&r.join("etc/deep")), 0o755);
    assert_eq!(
        fs::read_to_string(r.join("etc/motd")).unwrap(),
        "old\nmore\n"
    );
    assert_eq!(fs::read(r.join("var/empty-file")).unwrap(), b"");
    assert_eq!(mode(&r.join("var/empty-file")), 0o644);
    assert_eq!(fs::read_to_string(r.join("etc/replaced")).unwrap(), "new");
    assert_eq!(mode(&r.join("var/lib/thing")), 0o750);
    assert_eq!(mode(&r.join("etc/existing")), 0o700);
    assert_eq!(
        fs::read_link(r.join("etc/hello-link")).unwrap(),
        Path::new("/etc/hello")
    );
    let a = fs::metadata(r.join("etc/hello")).unwrap();
    let b = fs::metadata(r.join("etc/hello-hard")).unwrap();
    assert_eq!(a.ino(), b.ino());
}

#[test]
fn compression_and_verification() {
    let root = seeded_root();
    let r = root.path();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(b"compressed text\n").unwrap();
    let b64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap())
    };
    // sha256 of "compressed text\n": the hash describes the decompressed file.
    let sha = {
        use sha2::Digest as _;
        sha2::Sha256::digest(b"compressed text\n")
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    apply(
        r,
        json!({"ignition": {"version": "3.1.0"}, "storage": {"files": [
            {"path": "/etc/gz", "contents": {"source": format!("data:;base64,{b64}"),
             "compression": "gzip", "verification": {"hash": format!("sha256-{sha}")}}}
        ]}}),
    )
    .unwrap();
    assert_eq!(
        fs::read_to_string(r.join("etc/gz")).unwrap(),
        "compressed text\n"
    );
    let e = err(
        r,
        json!({"ignition": {"version": "3.1.0"}, "storage": {"files": [
            {"path": "/etc/bad", "contents": {"source": "data:,x",
             "verification": {"hash": "sha512-00"}}}
        ]}}),
    );
    assert!(
        e.contains("storage.files[0].contents.verification.hash"),
        "{e}"
    );
}

#[test]
fn users_and_groups() {
    let root = seeded_root();
    let r = root.path();
    let counts = apply(
        r,
        json!({
            "ignition": {"version": "3.2.0"},
            "passwd": {
                "groups": [{"name": "builders", "gid": 2000}],
                "users": [
                    {"name": "core", "uid": 1000, "passwordHash": "$6$salt$hash",
                     "sshAuthorizedKeys": ["ssh-ed25519 AAAA core@host"],
                     "groups": ["wheel", "builders"], "gecos": "CoreOS Admin"},
                    {"name": "root", "passwordHash": "$6$r$root",
                     "sshAuthorizedKeys": ["ssh-rsa BBBB root@host"]},
                    {"name": "svc", "system": true, "noCreateHome": true,
                     "shell": "/sbin/nologin"}
                ]
            },
            "storage": {"files": [
                {"path": "/home/core/owned", "contents": {"source": "data:,x"},
                 "user": {"name": "core"}, "group": {"name": "builders"}}
            ]}
        }),
    )
    .unwrap();
    assert_eq!(counts.users, 3);
    let passwd = fs::read_to_string(r.join("etc/passwd")).unwrap();
    assert!(
        passwd.contains("core:x:1000:1000:CoreOS Admin:/home/core:/bin/sh\n"),
        "{passwd}"
    );
    assert!(passwd.contains("svc:x:100:"), "{passwd}");
    assert!(passwd.starts_with("root:x:0:0:root:/root:/bin/sh\n"));
    let group = fs::read_to_string(r.join("etc/group")).unwrap();
    assert!(group.contains("wheel:x:10:root,core\n"), "{group}");
    assert!(group.contains("builders:x:2000:core\n"), "{group}");
    assert!(group.contains("core:x:1000:\n"), "{group}");
    let shadow = fs::read_to_string(r.join("etc/shadow")).unwrap();
    assert!(shadow.contains("core:$6$salt$hash:"), "{shadow}");
    assert!(shadow.contains("root:$6$r$root:19000:"), "{shadow}");
    assert!(shadow.contains("svc:!:"), "{shadow}");
    assert_eq!(mode(&r.join("etc/shadow")), 0o600);
    let keys = r.join("home/core/.ssh/authorized_keys");
    assert_eq!(
        fs::read_to_string(&keys).unwrap(),
        "ssh-ed25519 AAAA core@host\n"
    );
    assert_eq!(mode(&keys), 0o600);
    assert_eq!(mode(&r.join("home/core/.ssh")), 0o700);
    assert_eq!(mode(&r.join("home/core")), 0o700);
    assert_eq!(
        fs::read_to_string(r.join("root/.ssh/authorized_keys")).unwrap(),
        "ssh-rsa BBBB root@host\n"
    );
    assert!(!r.join("home/svc").exists());
    if fs::metadata("/proc/self").unwrap().uid() == 0 {
        let m = fs::metadata(&keys).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 1000));
        let m = fs::metadata(r.join("home/core/owned")).unwrap();
        assert_eq!((m.uid(), m.gid()), (1000, 2000));
    }
}

#[test]
fn units() {
    let root = seeded_root();
    let r = root.path();
    let counts = apply(
        r,
        json!({
            "ignition": {"version": "3.0.0"},
            "systemd": {"units": [
                {"name": "hello.service", "enabled": true,
                 "contents": "[Unit]\nDescription=hi\n[Service]\nType=oneshot\nExecStart=/bin/echo hello\n[Install]\nWantedBy=multi-user.target\n"},
                {"name": "prefixed.service", "enabled": true,
                 "contents": "[Service]\nExecStart=-/bin/false\n"},
                {"name": "dropped.service", "enabled": true,
                 "contents": "[Service]\nExecStart=/bin/old\n",
                 "dropins": [{"name": "10-new.conf", "contents": "[Service]\nExecStart=\nExecStart=/bin/new --flag\n"}]},
                {"name": "masked.service", "mask": true}
            ]}
        }),
    )
    .unwrap();
    assert_eq!(counts.units, 4);
    let sys = r.join("etc/systemd/system");
    assert!(fs::read_to_string(sys.join("hello.service"))
        .unwrap()
        .contains("ExecStart=/bin/echo hello"));
    assert_eq!(
        fs::read_to_string(sys.join("dropped.service.d/10-new.conf")).unwrap(),
        "[Service]\nExecStart=\nExecStart=/bin/new --flag\n"
    );
    assert_eq!(
        fs::read_link(sys.join("masked.service")).unwrap(),
        Path::new("/dev/null")
    );
    let units_d = r.join("etc/demo-agent/units.d");
    assert_eq!(
        fs::read_to_string(units_d.join("hello.service")).unwrap(),
        "/bin/echo hello\n"
    );
    assert_eq!(
        fs::read_to_string(units_d.join("dropped.service")).unwrap(),
        "/bin/new --flag\n"
    );
    // A prefixed ExecStart= is written but not started (a warning, not an error).
    assert!(sys.join("prefixed.service").exists());
    assert!(!units_d.join("prefixed.service").exists());
    // Disabling removes the record.
    apply(
        r,
        json!({"ignition": {"version": "3.0.0"},
               "systemd": {"units": [{"name": "hello.service", "enabled": false}]}}),
    )
    .unwrap();
    assert!(!units_d.join("hello.service").exists());
}

#[test]
fn exec_start_parsing() {
    assert_eq!(
        plain_exec_start(["[Service]\nExecStart=/bin/a \\\n  --long\n"]),
        Some("/bin/a    --long".into())
    );
    assert_eq!(plain_exec_start(["[Unit]\nExecStart=/bin/a\n"]), None);
    assert_eq!(
        plain_exec_start(["[Service]\nExecStart=/bin/a\nExecStart=/bin/b\n"]),
        None
    );
    assert_eq!(plain_exec_start(["[Service]\nExecStart=@/bin/a a\n"]), None);
}

#[test]
fn unsupported_version_writes_nothing() {
    let root = seeded_root();
    let r = root.path();
    let files = json!({"files": [{"path": "/etc/x", "contents": {"source": "data:,x"}}]});
    for v in ["2.2.0", "3.5.0", "3.4.0-experimental", "4.0.0"] {
        let e = err(r, json!({"ignition": {"version": v}, "storage": files}));
        assert!(e.contains("unsupported config version"), "{v}: {e}");
        assert!(e.contains(v), "{e}");
    }
    let e = err(r, json!({"storage": files}));
    assert!(e.contains("ignition.version: missing"), "{e}");
    let e = err(r, json!("not an object"));
    assert!(e.contains("ignition.version"), "{e}");
    assert!(err(r, json!({"ignition": {"version": 3}})).contains("not a string"));
}

#[test]
fn unknown_and_unsupported_fields_are_named() {
    let root = seeded_root();
    let r = root.path();
    let cases = [
        (
            json!({"ignition": {"version": "3.4.0"}, "storage": {"files": [{"path": "/a", "contnts": {}}]}}),
            "storage.files[0].contnts: unknown field `contnts`",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "bogus": 1}),
            "unknown field `bogus`",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "kernelArguments": {"shouldExist": ["quiet"]}}),
            "kernelArguments: not supported",
        ),
        (
            json!({"ignition": {"version": "3.2.0"}, "kernelArguments": {}}),
            "kernelArguments: not in spec 3.2.0",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "storage": {"filesystems": [{"device": "/dev/vdb"}]}}),
            "storage.filesystems: not supported",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "storage": {"files": [{"path": "/a", "contents": {"source": "https://example.com/a"}}]}}),
            "storage.files[0].contents.source: unsupported source scheme \"https\"",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "storage": {"files": [{"path": "/a", "contents": {"source": "data:,a", "compression": "xz"}}]}}),
            "storage.files[0].contents.compression: unsupported compression \"xz\"",
        ),
        (
            json!({"ignition": {"version": "3.4.0", "config": {"merge": [{"source": "data:,{}"}]}}}),
            "ignition.config.merge[0] (referenced config): ignition.version: missing",
        ),
        (
            json!({"ignition": {"version": "3.4.0", "config": {"mrge": []}}}),
            "ignition.config.mrge: unknown field `mrge`",
        ),
        (
            json!({"ignition": {"version": "3.0.0", "config": {"merge": [{"source": "data:,{}", "compression": "gzip"}]}}}),
            "ignition.config.merge[0].compression: not in spec 3.0.0",
        ),
        (
            json!({"ignition": {"version": "3.4.0", "security": {"tls": {"certificateAuthorities": [{"source": "data:,x"}]}}}}),
            "ignition.security: TLS settings are not supported",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "storage": {"files": [{"path": "relative"}]}}),
            "storage.files[0].path: path \"relative\" is not absolute",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "storage": {"files": [{"path": "/a"}], "links": [{"path": "/a", "target": "/b"}]}}),
            "path /a is written twice",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "storage": {"files": [{"path": "/a", "mode": 10000}]}}),
            "storage.files[0].mode",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "storage": {"files": [{"path": "/a", "user": {"name": "ghost"}}]}}),
            "storage.files[0].user.name: no user \"ghost\"",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "storage": {"links": [{"path": "/h", "target": "/missing", "hard": true}]}}),
            "hard link target /missing does not exist",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "systemd": {"units": [{"name": "noext"}]}}),
            "systemd.units[0] (noext): name",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "passwd": {"users": [{"name": "root", "uid": 5}]}}),
            "passwd.users[0] (root): uid",
        ),
        (
            json!({"ignition": {"version": "3.4.0"}, "passwd": {"users": [{"name": "x", "groups": ["nope"]}]}}),
            "groups: no group \"nope\"",
        ),
    ];
    for (cfg, want) in cases {
        let e = err(r, cfg.clone());
        assert!(e.contains(want), "config {cfg}\nwant {want:?}\ngot {e}");
    }
}

#[test]
fn late_error_writes_nothing() {
    // Users, files and units that are valid come before an invalid entry:
    // validation covers the whole config before the first write.
    let root = seeded_root();
    let r = root.path();
    fs::write(r.join("etc/keep"), "mine").unwrap();
    let e = err(
        r,
        json!({
            "ignition": {"version": "3.3.0"},
            "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 K"]}]},
            "storage": {"files": [
                {"path": "/etc/fine", "contents": {"source": "data:,ok"}},
                {"path": "/etc/keep", "contents": {"source": "data:,overwritten"}}
            ]},
            "systemd": {"units": [{"name": "a.service", "enabled": true,
                                    "contents": "[Service]\nExecStart=/bin/true\n"}]}
        }),
    );
    assert!(
        e.contains("storage.files[1]: /etc/keep already exists and overwrite is false"),
        "{e}"
    );
    let e = err(
        r,
        json!({"ignition": {"version": "3.3.0"},
               "storage": {"files": [{"path": "/etc/keep/child"}]}}),
    );
    assert!(e.contains("parent /etc/keep of /etc/keep/child"), "{e}");
    let e = err(
        r,
        json!({"ignition": {"version": "3.3.0"},
               "storage": {"files": [{"path": "/etc/keep", "overwrite": true}]}}),
    );
    assert!(e.contains("overwrite is true but contents.source"), "{e}");
}

/// `bytes` gzipped, as a base64 data URL (what `coreos-installer iso customize`
/// writes for a merged config).
fn gzip_data_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(gz.finish().unwrap());
    format!("data:;base64,{b64}")
}

fn sha512_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    sha2::Sha512::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A parent that merges `child` the way `coreos-installer iso customize` does.
fn merging(child: &serde_json::Value, extra: serde_json::Value) -> serde_json::Value {
    let bytes = child.to_string().into_bytes();
    let mut parent = json!({
        "ignition": {"version": "3.3.0", "config": {"merge": [{
            "source": gzip_data_url(&bytes),
            "compression": "gzip",
            "verification": {"hash": format!("sha512-{}", sha512_hex(&bytes))}
        }]}},
    });
    if let (Some(p), serde_json::Value::Object(e)) = (parent.as_object_mut(), extra) {
        p.extend(e);
    }
    parent
}

#[test]
fn merged_config() {
    let root = seeded_root();
    let r = root.path();
    let child = json!({
        "ignition": {"version": "3.4.0"},
        "storage": {
            "files": [
                {"path": "/etc/shared", "mode": 0o600, "contents": {"source": "data:,child"}},
                {"path": "/etc/child-only", "contents": {"source": "data:,c"}}
            ],
            "directories": [{"path": "/etc/was-a-file"}]
        },
        "passwd": {"users": [{"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 CHILD"]}]},
        "systemd": {"units": [{"name": "a.service", "dropins": [
            {"name": "10-x.conf", "contents": "[Unit]\nDescription=child\n"}
        ]}]}
    });
    let parent = merging(
        &child,
        json!({
            "storage": {"files": [
                {"path": "/etc/parent-only", "contents": {"source": "data:,p"}},
                {"path": "/etc/shared", "overwrite": true, "contents": {"source": "data:,parent"}},
                {"path": "/etc/was-a-file", "contents": {"source": "data:,f"}}
            ]},
            "passwd": {"users": [{"name": "core", "uid": 1000,
                                  "sshAuthorizedKeys": ["ssh-ed25519 PARENT"]}]},
            "systemd": {"units": [{"name": "a.service", "dropins": [
                {"name": "10-x.conf", "contents": "[Unit]\nDescription=parent\n"},
                {"name": "20-y.conf", "contents": "[Unit]\nAfter=b.service\n"}
            ]}]}
        }),
    );
    let counts = apply(r, parent).unwrap();
    assert_eq!(
        counts,
        Counts {
            files: 4,
            users: 1,
            units: 1
        }
    );
    // Field by field: the child's contents and mode, the parent's overwrite.
    assert_eq!(fs::read_to_string(r.join("etc/shared")).unwrap(), "child");
    assert_eq!(mode(&r.join("etc/shared")), 0o600);
    assert_eq!(fs::read_to_string(r.join("etc/parent-only")).unwrap(), "p");
    assert_eq!(fs::read_to_string(r.join("etc/child-only")).unwrap(), "c");
    // A child's directory replaces the parent's file at the same path.
    assert!(r.join("etc/was-a-file").is_dir());
    let passwd = fs::read_to_string(r.join("etc/passwd")).unwrap();
    assert!(passwd.contains("core:x:1000:"), "{passwd}");
    assert_eq!(
        fs::read_to_string(r.join("home/core/.ssh/authorized_keys")).unwrap(),
        "ssh-ed25519 PARENT\nssh-ed25519 CHILD\n"
    );
    let d = r.join("etc/systemd/system/a.service.d");
    assert_eq!(
        fs::read_to_string(d.join("10-x.conf")).unwrap(),
        "[Unit]\nDescription=child\n"
    );
    assert!(d.join("20-y.conf").exists());
}

#[test]
fn merged_config_version_is_the_highest() {
    // A 3.1.0 parent may merge a 3.4.0 child that uses `shouldExist` (3.2.0).
    let root = seeded_root();
    let r = root.path();
    let child = json!({"ignition": {"version": "3.4.0"},
                       "passwd": {"users": [{"name": "core", "shouldExist": true}]}});
    let mut parent = merging(&child, json!({}));
    parent["ignition"]["version"] = json!("3.1.0");
    apply(r, parent).unwrap();
    assert!(fs::read_to_string(r.join("etc/passwd"))
        .unwrap()
        .contains("core:"));
}

#[test]
fn replaced_config() {
    let root = seeded_root();
    let r = root.path();
    let child = json!({"ignition": {"version": "3.0.0"},
                       "storage": {"files": [{"path": "/etc/new", "contents": {"source": "data:,n"}}]}});
    let bytes = child.to_string().into_bytes();
    let ignored = json!({"ignition": {"version": "3.0.0"},
                         "storage": {"files": [{"path": "/etc/merged", "contents": {"source": "data:,m"}}]}});
    let counts = apply(
        r,
        json!({
            "ignition": {"version": "3.4.0", "config": {
                "replace": {"source": gzip_data_url(&bytes), "compression": "gzip"},
                "merge": [{"source": gzip_data_url(ignored.to_string().as_bytes()),
                           "compression": "gzip"}]
            }},
            "storage": {"files": [{"path": "/etc/old", "contents": {"source": "data:,o"}}]}
        }),
    )
    .unwrap();
    assert_eq!(counts.files, 1);
    assert_eq!(fs::read_to_string(r.join("etc/new")).unwrap(), "n");
    assert!(!r.join("etc/old").exists());
    assert!(!r.join("etc/merged").exists());
}

#[test]
fn referenced_config_errors() {
    let root = seeded_root();
    let r = root.path();
    let file =
        json!({"storage": {"files": [{"path": "/etc/x", "contents": {"source": "data:,x"}}]}});
    let e = err(
        r,
        json!({"ignition": {"version": "3.4.0", "config": {"merge": [
            {"source": "data:,%7B%22ignition%22:%7B%22version%22:%223.4.0%22%7D%7D"},
            {"source": "https://example.com/child.ign"}
        ]}}}),
    );
    assert!(
        e.contains("ignition.config.merge[1].source: unsupported source scheme \"https\""),
        "{e}"
    );
    let e = err(
        r,
        json!({"ignition": {"version": "3.4.0", "config": {"replace": {"source": "tftp://h/c"}}}}),
    );
    assert!(e.contains("ignition.config.replace.source"), "{e}");

    let mut bad_hash = merging(&json!({"ignition": {"version": "3.4.0"}}), file.clone());
    bad_hash["ignition"]["config"]["merge"][0]["verification"]["hash"] =
        json!(format!("sha512-{}", sha512_hex(b"something else")));
    let e = err(r, bad_hash);
    assert!(
        e.contains("ignition.config.merge[0].verification.hash: sha512 mismatch"),
        "{e}"
    );

    let unknown = json!({"ignition": {"version": "3.4.0"},
                         "storage": {"files": [{"path": "/a", "contnts": {}}]}});
    let e = err(r, merging(&unknown, file.clone()));
    assert!(
        e.contains("ignition.config.merge[0] (referenced config): storage.files[0].contnts: unknown field `contnts`"),
        "{e}"
    );
}

#[test]
fn nesting_limit() {
    // `levels` configs, each merging the next; the innermost writes a file.
    let nested = |levels: usize| {
        let mut cfg = json!({"ignition": {"version": "3.4.0"},
                             "storage": {"files": [{"path": "/etc/deep", "contents": {"source": "data:,d"}}]}});
        for _ in 0..levels {
            cfg = json!({"ignition": {"version": "3.4.0", "config": {"merge": [
                {"source": gzip_data_url(cfg.to_string().as_bytes()), "compression": "gzip"}
            ]}}});
        }
        cfg
    };
    let root = seeded_root();
    let r = root.path();
    let e = err(r, nested(super::merge::MAX_DEPTH + 1));
    assert!(e.contains("nest more than 10 levels deep"), "{e}");
    apply(r, nested(super::merge::MAX_DEPTH)).unwrap();
    assert_eq!(fs::read_to_string(r.join("etc/deep")).unwrap(), "d");
}
