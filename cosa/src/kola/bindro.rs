//! `cosa run --bind-ro SRC,DEST`: a host directory the guest sees read-only at
//! DEST. QEMU shares it over 9p (virtio); the first-boot config mounts it for
//! either stream: a mount unit enabled in multi-user.target where systemd runs,
//! a demo-init hook on the demo stream. Both are written; each init ignores the
//! other's.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::kola::qemu::HostShare;
use crate::live::customize::percent_encode;

/// The 9p mount options in the guest.
const OPTIONS: &str = "ro,trans=virtio,version=9p2000.L";
/// The demo-init hook that mounts every share.
const DEMO_HOOK: &str = "/etc/demo-init/rc.d/50-cosa-bind-ro";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindRo {
    /// The host directory, canonical.
    pub src: PathBuf,
    /// Where the guest mounts it.
    pub dest: String,
}

impl BindRo {
    /// Parse and check `SRC,DEST` (upstream's syntax): SRC an existing host
    /// directory, DEST an absolute guest path of plain names.
    pub fn parse(arg: &str) -> Result<Self> {
        let ctx = || format!("--bind-ro {arg:?}");
        let (src, dest) = arg
            .split_once(',')
            .with_context(|| format!("{}: expected SRC,DEST", ctx()))?;
        let plain = |c: &str| {
            !c.is_empty()
                && c != "."
                && c != ".."
                && c.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        };
        if !dest.starts_with('/') || dest == "/" || !dest[1..].split('/').all(plain) {
            bail!(
                "{}: the guest path must be absolute and below /, its names of letters, digits, '.', '_' and '-' (e.g. /var/mnt/src)",
                ctx()
            );
        }
        let src = std::fs::canonicalize(src)
            .with_context(|| format!("{}: the host directory {src}", ctx()))?;
        if !src.is_dir() {
            bail!("{}: {} is not a directory", ctx(), src.display());
        }
        Ok(BindRo {
            src,
            dest: dest.to_string(),
        })
    }
}

/// The 9p tag of the `i`th share.
fn tag(i: usize) -> String {
    format!("cosa-bind-{i}")
}

/// The QEMU shares for `binds`.
pub fn shares(binds: &[BindRo]) -> Vec<HostShare> {
    binds
        .iter()
        .enumerate()
        .map(|(i, b)| HostShare {
            path: b.src.clone(),
            tag: tag(i),
        })
        .collect()
}

/// systemd's unit name for a mount on `path` (`systemd-escape --path --suffix=mount`).
pub fn mount_unit_name(path: &str) -> String {
    let trimmed = path.trim_matches('/');
    let mut s = String::new();
    for (i, b) in trimmed.bytes().enumerate() {
        match b {
            b'/' => s.push('-'),
            b'.' if i == 0 => s.push_str("\\x2e"),
            b if b.is_ascii_alphanumeric() || b":_.".contains(&b) => s.push(b as char),
            b => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    if s.is_empty() {
        s.push('-');
    }
    s + ".mount"
}

fn file(path: &str, mode: u32, text: &str) -> Value {
    json!({
        "path": path,
        "mode": mode,
        "overwrite": true,
        "contents": {"source": format!("data:,{}", percent_encode(text.as_bytes()))},
    })
}

/// What the first-boot config gains: `(files, links)` for `storage`.
pub fn ignition_entries(binds: &[BindRo]) -> (Vec<Value>, Vec<Value>) {
    let mut files = Vec::new();
    let mut links = Vec::new();
    let mut hook = String::from(
        "#!/bin/sh\n# cosa run --bind-ro: the host's directories, shared over 9p, mounted read-only.\nmodprobe -a -q 9pnet_virtio 9p\n",
    );
    for (i, b) in binds.iter().enumerate() {
        let unit = mount_unit_name(&b.dest);
        let path = format!("/etc/systemd/system/{unit}");
        files.push(file(
            &path,
            0o644,
            &format!(
                "[Unit]\nDescription=cosa run --bind-ro: the host's {src} (read-only)\n\n[Mount]\nWhat={tag}\nWhere={dest}\nType=9p\nOptions={OPTIONS}\n\n[Install]\nWantedBy=multi-user.target\n",
                // systemd expands %-specifiers in Description=.
                src = b.src.display().to_string().replace('%', "%%"),
                tag = tag(i),
                dest = b.dest,
            ),
        ));
        links.push(json!({
            "path": format!("/etc/systemd/system/multi-user.target.wants/{unit}"),
            "target": path,
            "overwrite": true,
        }));
        hook.push_str(&format!(
            "mkdir -p {dest} && mount -t 9p -o {OPTIONS} {tag} {dest} || echo \"demo-init: cosa run --bind-ro: cannot mount {tag} on {dest}\"\n",
            dest = b.dest,
            tag = tag(i),
        ));
    }
    if !binds.is_empty() {
        files.push(file(DEMO_HOOK, 0o755, &hook));
    }
    (files, links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_checks_both_sides() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().to_str().unwrap();
        let b = BindRo::parse(&format!("{src},/var/mnt/src")).unwrap();
        assert_eq!(b.src, d.path().canonicalize().unwrap());
        assert_eq!(b.dest, "/var/mnt/src");
        for bad in [
            src.to_string(),
            format!("{src},var/mnt"),
            format!("{src},/"),
            format!("{src},/var/../etc"),
            format!("{src},/var//mnt"),
            format!("{src},/var/mnt x"),
            format!("{src},/var/mnt;reboot"),
            "/nonexistent-cosa-dir,/var/mnt/x".to_string(),
        ] {
            let e = BindRo::parse(&bad).unwrap_err();
            assert!(format!("{e:#}").contains("--bind-ro"), "{bad}: {e:#}");
        }
        let f = d.path().join("file");
        std::fs::write(&f, "").unwrap();
        let e = BindRo::parse(&format!("{},/x", f.display())).unwrap_err();
        assert!(e.to_string().contains("not a directory"), "{e}");
    }

    #[test]
    fn unit_names_escape_like_systemd() {
        assert_eq!(mount_unit_name("/var/mnt/src"), "var-mnt-src.mount");
        assert_eq!(
            mount_unit_name("/var/mnt/my-dir"),
            "var-mnt-my\\x2ddir.mount"
        );
        assert_eq!(mount_unit_name("/.hidden/a.b"), "\\x2ehidden-a.b.mount");
    }

    #[test]
    fn entries_cover_both_inits() {
        let b = BindRo {
            src: "/srv/x".into(),
            dest: "/var/mnt/x".into(),
        };
        let (files, links) = ignition_entries(&[b]);
        assert_eq!(files.len(), 2);
        assert_eq!(files[0]["path"], "/etc/systemd/system/var-mnt-x.mount");
        assert_eq!(files[1]["path"], DEMO_HOOK);
        assert_eq!(files[1]["mode"], 0o755);
        assert_eq!(
            links[0]["path"],
            "/etc/systemd/system/multi-user.target.wants/var-mnt-x.mount"
        );
        assert!(ignition_entries(&[]).0.is_empty());
    }
}
