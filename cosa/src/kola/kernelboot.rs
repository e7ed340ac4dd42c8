//! The image's kernel, initramfs and boot-entry options, read from its `boot`
//! partition without mounting anything (debugfs on the raw image at the
//! partition's offset), for direct kernel boot with extra kernel arguments.

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use fs_err as fs;

use crate::kola::machine::KernelBoot;
use cmdext::CommandRunExt;

/// One BLS entry's fields that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
struct BlsEntry {
    version: String,
    linux: String,
    initrd: String,
    options: String,
}

fn parse_bls(text: &str) -> Result<BlsEntry> {
    let field = |k: &str| {
        text.lines().find_map(|l| {
            let l = l.trim();
            l.strip_prefix(k)
                .filter(|r| r.starts_with(char::is_whitespace))
                .map(|r| r.trim().to_string())
        })
    };
    Ok(BlsEntry {
        version: field("version").unwrap_or_default(),
        linux: field("linux").ok_or_else(|| anyhow!("no `linux` line"))?,
        initrd: field("initrd").ok_or_else(|| anyhow!("no `initrd` line"))?,
        options: field("options").unwrap_or_default(),
    })
}

/// Extracts into `dir` (made if missing) the kernel and initramfs of the
/// image's newest boot entry, with its options.
pub fn extract(image: &Path, dir: &Path) -> Result<KernelBoot> {
    fs::create_dir_all(dir)?;
    let raw = dir.join("disk.raw");
    cmdext::command("qemu-img")
        .args(["convert", "-O", "raw"])
        .arg(image)
        .arg(&raw)
        .run()
        .with_context(|| format!("reading {}", image.display()))?;
    let table: serde_json::Value = cmdext::command("sfdisk")
        .arg("--json")
        .arg(&raw)
        .run_get_json()
        .with_context(|| format!("reading the partition table of {}", image.display()))?;
    let table = &table["partitiontable"];
    let sector = table["sectorsize"].as_u64().unwrap_or(512);
    let start = table["partitions"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "boot"))
        .and_then(|p| p["start"].as_u64())
        .ok_or_else(|| anyhow!("{}: no partition named `boot`", image.display()))?;
    let bootfs = format!("{}?offset={}", raw.display(), start * sector);
    let debugfs = |req: String| -> Result<Vec<u8>> {
        let out = cmdext::command("debugfs")
            .args(["-R", &req, &bootfs])
            .run_get_output()
            .context("reading the boot partition with debugfs (e2fsprogs)")?;
        Ok(out.stdout)
    };
    let listing = String::from_utf8_lossy(&debugfs("ls -p /loader/entries".into())?).into_owned();
    let mut entries = Vec::new();
    // `ls -p` lines: /inode/mode/uid/gid/name/size/
    for l in listing.lines() {
        let parts: Vec<&str> = l.split('/').collect();
        if let Some(name) = parts.get(5).filter(|n| n.ends_with(".conf")) {
            let text = debugfs(format!("cat /loader/entries/{name}"))?;
            let e = parse_bls(&String::from_utf8_lossy(&text))
                .with_context(|| format!("boot entry /loader/entries/{name}"))?;
            entries.push(e);
        }
    }
    entries.sort_by(|a, b| a.version.cmp(&b.version));
    let e = entries
        .pop()
        .ok_or_else(|| anyhow!("{}: no boot entries in /loader/entries", image.display()))?;
    let kernel = dir.join("vmlinuz");
    let initrd = dir.join("initramfs.img");
    fs::write(&kernel, debugfs(format!("cat {}", e.linux))?)?;
    fs::write(&initrd, debugfs(format!("cat {}", e.initrd))?)?;
    fs::remove_file(&raw)?;
    for (p, what) in [(&kernel, &e.linux), (&initrd, &e.initrd)] {
        if fs::metadata(p)?.len() == 0 {
            bail!(
                "{}: {what} is empty or missing on the boot partition",
                image.display()
            );
        }
    }
    Ok(KernelBoot {
        kernel,
        initrd,
        options: without_grub_variables(&e.options),
    })
}

/// The options without GRUB's variables (`$ignition_firstboot`, which the image's
/// grub.cfg sets): a direct boot adds what they would stand for itself.
fn without_grub_variables(options: &str) -> String {
    options
        .split_whitespace()
        .filter(|t| !t.starts_with('$'))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bls_fields() {
        let e = parse_bls(
            "title Demo 1\nversion 2\noptions root=LABEL=root rw console=ttyS0\nlinux /ostree/x/vmlinuz-6.1\ninitrd /ostree/x/initramfs-6.1.img\n",
        )
        .unwrap();
        assert_eq!(e.version, "2");
        assert_eq!(e.linux, "/ostree/x/vmlinuz-6.1");
        assert_eq!(e.initrd, "/ostree/x/initramfs-6.1.img");
        assert_eq!(e.options, "root=LABEL=root rw console=ttyS0");
        assert_eq!(
            without_grub_variables("root=LABEL=root rw $ignition_firstboot console=ttyS0"),
            "root=LABEL=root rw console=ttyS0"
        );
        assert!(parse_bls("title x\n").is_err());
    }
}
