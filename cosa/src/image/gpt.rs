//! The GUID partition table of a disk image file (with gptman), for 512- or 4096-byte
//! logical sectors, and the GUIDs derived from the build ID that make it reproducible.
//! gptman rather than sgdisk: sgdisk cannot lay out a 4K-sector table on a plain file.

use std::io::Write;

use anyhow::{bail, Context, Result};
use fs_err::File;
use gptman::{GPTPartitionEntry, GPT};
use sha2::{Digest, Sha256};

pub const MIB: u64 = 1024 * 1024;

/// A GUID as 16 bytes in GPT's on-disk (mixed-endian) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Guid([u8; 16]);

impl Guid {
    /// Parse the canonical text form.
    pub fn parse(s: &str) -> Result<Self> {
        let hex: String = s.chars().filter(|c| *c != '-').collect();
        let b = hex::decode(&hex).with_context(|| format!("bad GUID {s}"))?;
        if b.len() != 16 {
            bail!("bad GUID {s}");
        }
        let mut g = [0u8; 16];
        // time_low, time_mid, time_hi little-endian; the rest as written.
        g[0..4].copy_from_slice(&[b[3], b[2], b[1], b[0]]);
        g[4..6].copy_from_slice(&[b[5], b[4]]);
        g[6..8].copy_from_slice(&[b[7], b[6]]);
        g[8..16].copy_from_slice(&b[8..16]);
        Ok(Guid(g))
    }

    /// A version-4-shaped GUID derived from `seed`: reproducible per build.
    pub fn derived(seed: &str) -> Self {
        Self::parse(&derived_uuid(seed)).expect("derived GUID is well-formed")
    }
}

/// A UUID (text form) derived from `seed`, for filesystems and partitions.
pub fn derived_uuid(seed: &str) -> String {
    let d = Sha256::digest(seed.as_bytes());
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

pub const TYPE_BIOS_BOOT: &str = "21686148-6449-6E6F-744E-656564454649";
pub const TYPE_EFI_SYSTEM: &str = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B";
pub const TYPE_LINUX_FS: &str = "0FC63DAF-8483-4772-8E79-3D69D8477DE4";

#[derive(Debug, Clone)]
pub struct Partition {
    pub name: String,
    pub type_guid: &'static str,
    pub guid: Guid,
    /// Byte offset and length (multiples of the sector size).
    pub start: u64,
    pub size: u64,
}

/// Write the GPT for `parts` (and its protective MBR) on `file`, a whole disk with
/// `sector`-byte sectors. The boot code area of the MBR is left as it is.
pub fn write(file: &mut File, sector: u64, disk_guid: Guid, parts: &[Partition]) -> Result<()> {
    let size = file.metadata().context("reading the disk's size")?.len();
    if !size.is_multiple_of(sector) || size < MIB {
        bail!("a disk of {size} bytes cannot hold a GPT with {sector}-byte sectors");
    }
    let mut gpt = GPT::new_from(file, sector, disk_guid.0).context("laying out the GPT")?;
    for (i, p) in (1..).zip(parts) {
        if !p.start.is_multiple_of(sector) || !p.size.is_multiple_of(sector) || p.size == 0 {
            bail!("partition {} is not sector-aligned", p.name);
        }
        gpt[i] = GPTPartitionEntry {
            partition_type_guid: Guid::parse(p.type_guid)?.0,
            unique_partition_guid: p.guid.0,
            starting_lba: p.start / sector,
            ending_lba: (p.start + p.size) / sector - 1,
            attribute_bits: 0,
            partition_name: p.name.as_str().into(),
        };
    }
    gpt.write_into(file)
        .with_context(|| format!("writing the GPT ({} partitions)", parts.len()))?;
    GPT::write_protective_mbr_into(file, sector).context("writing the protective MBR")?;
    file.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmdext::CommandRunExt;

    fn parts() -> Vec<Partition> {
        vec![
            Partition {
                name: "EFI-SYSTEM".into(),
                type_guid: TYPE_EFI_SYSTEM,
                guid: Guid::derived("a"),
                start: MIB,
                size: 8 * MIB,
            },
            Partition {
                name: "root".into(),
                type_guid: TYPE_LINUX_FS,
                guid: Guid::derived("b"),
                start: 9 * MIB,
                size: 20 * MIB,
            },
        ]
    }

    #[test]
    fn guid_mixed_endian() {
        let g = Guid::parse(TYPE_EFI_SYSTEM).unwrap();
        assert_eq!(&g.0[..4], &[0x28, 0x73, 0x2A, 0xC1]);
        assert_eq!(&g.0[8..], &[0xBA, 0x4B, 0x00, 0xA0, 0xC9, 0x3E, 0xC9, 0x3B]);
        assert_eq!(derived_uuid("x"), derived_uuid("x"));
        assert_ne!(derived_uuid("x"), derived_uuid("y"));
    }

    #[test]
    fn sgdisk_accepts_a_512_byte_table() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("disk.img");
        let mut f = File::create(&p).unwrap();
        f.set_len(32 * MIB).unwrap();
        write(&mut f, 512, Guid::derived("disk"), &parts()).unwrap();
        drop(f);
        let s = cmdext::command("sgdisk")
            .arg("-v")
            .arg(&p)
            .run_get_string()
            .unwrap();
        assert!(s.contains("No problems found"), "{s}");
        let s = cmdext::command("sgdisk")
            .arg("-p")
            .arg(&p)
            .run_get_string()
            .unwrap();
        assert!(s.contains("EFI-SYSTEM") && s.contains("EF00"), "{s}");
        assert!(s.contains("Sector size (logical): 512 bytes"), "{s}");
        let mut mbr = [0u8; 512];
        std::os::unix::fs::FileExt::read_exact_at(File::open(&p).unwrap().file(), &mut mbr, 0)
            .unwrap();
        assert_eq!((mbr[450], &mbr[510..]), (0xEE, &[0x55, 0xAA][..]));
    }

    #[test]
    fn misaligned_or_outside_partitions_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut f = File::create(t.path().join("d")).unwrap();
        assert!(write(&mut f, 4096, Guid::derived("d"), &parts()).is_err());
        f.set_len(32 * MIB).unwrap();
        let mut p = parts();
        p[1].size = 40 * MIB;
        assert!(write(&mut f, 4096, Guid::derived("d"), &p).is_err());
        f.set_len(64 * MIB).unwrap();
        p[1].size = 20 * MIB + 512;
        assert!(write(&mut f, 4096, Guid::derived("d"), &p).is_err());
    }
}
