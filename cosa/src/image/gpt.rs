//! Writing a GUID partition table (with its protective MBR and backup) into a disk
//! image file, for 512- or 4096-byte logical sectors. Written here rather than with
//! sgdisk because sgdisk cannot lay out a 4K-sector table on a plain file.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

pub const MIB: u64 = 1024 * 1024;
const ENTRIES: u64 = 128;
const ENTRY_SIZE: u64 = 128;

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

fn crc32(b: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(b);
    h.finalize()
}

/// Write the GPT for `parts` on a disk of `disk_size` bytes with `sector`-byte sectors.
pub fn write(
    file: &mut File,
    disk_size: u64,
    sector: u64,
    disk_guid: Guid,
    parts: &[Partition],
) -> Result<()> {
    if !disk_size.is_multiple_of(sector) {
        bail!("disk size {disk_size} is not a multiple of the sector size {sector}");
    }
    let last_lba = disk_size / sector - 1;
    let entry_sectors = (ENTRIES * ENTRY_SIZE).div_ceil(sector);
    let first_usable = 2 + entry_sectors;
    let last_usable = last_lba - entry_sectors - 1;

    let mut entries = vec![0u8; (ENTRIES * ENTRY_SIZE) as usize];
    for (i, p) in parts.iter().enumerate() {
        if !p.start.is_multiple_of(sector) || !p.size.is_multiple_of(sector) || p.size == 0 {
            bail!("partition {} is not sector-aligned", p.name);
        }
        let (first, last) = (p.start / sector, (p.start + p.size) / sector - 1);
        if first < first_usable || last > last_usable {
            bail!("partition {} (sectors {first}..{last}) is outside the usable area {first_usable}..{last_usable}", p.name);
        }
        let e = &mut entries[i * ENTRY_SIZE as usize..(i + 1) * ENTRY_SIZE as usize];
        e[0..16].copy_from_slice(&Guid::parse(p.type_guid)?.0);
        e[16..32].copy_from_slice(&p.guid.0);
        e[32..40].copy_from_slice(&first.to_le_bytes());
        e[40..48].copy_from_slice(&last.to_le_bytes());
        for (j, u) in p.name.encode_utf16().take(36).enumerate() {
            e[56 + 2 * j..58 + 2 * j].copy_from_slice(&u.to_le_bytes());
        }
    }
    let entries_crc = crc32(&entries);

    let header = |current: u64, backup: u64, entries_lba: u64| {
        let mut h = vec![0u8; 92];
        h[0..8].copy_from_slice(b"EFI PART");
        h[8..12].copy_from_slice(&0x0001_0000u32.to_le_bytes());
        h[12..16].copy_from_slice(&92u32.to_le_bytes());
        h[24..32].copy_from_slice(&current.to_le_bytes());
        h[32..40].copy_from_slice(&backup.to_le_bytes());
        h[40..48].copy_from_slice(&first_usable.to_le_bytes());
        h[48..56].copy_from_slice(&last_usable.to_le_bytes());
        h[56..72].copy_from_slice(&disk_guid.0);
        h[72..80].copy_from_slice(&entries_lba.to_le_bytes());
        h[80..84].copy_from_slice(&(ENTRIES as u32).to_le_bytes());
        h[84..88].copy_from_slice(&(ENTRY_SIZE as u32).to_le_bytes());
        h[88..92].copy_from_slice(&entries_crc.to_le_bytes());
        let c = crc32(&h);
        h[16..20].copy_from_slice(&c.to_le_bytes());
        h
    };

    // Protective MBR: one 0xEE partition covering the disk (capped at 2^32-1 sectors).
    let mut mbr = vec![0u8; 512];
    let pe = &mut mbr[446..462];
    pe[1..4].copy_from_slice(&[0x00, 0x02, 0x00]);
    pe[4] = 0xEE;
    pe[5..8].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    pe[8..12].copy_from_slice(&1u32.to_le_bytes());
    pe[12..16].copy_from_slice(&(last_lba.min(u32::MAX as u64) as u32).to_le_bytes());
    mbr[510] = 0x55;
    mbr[511] = 0xAA;

    let at = |lba: u64| lba * sector;
    file.write_all_at(&mbr, 0)
        .context("writing the protective MBR")?;
    file.write_all_at(&header(1, last_lba, 2), at(1))?;
    file.write_all_at(&entries, at(2))?;
    let backup_entries = last_lba - entry_sectors;
    file.write_all_at(&entries, at(backup_entries))?;
    file.write_all_at(&header(last_lba, 1, backup_entries), at(last_lba))?;
    file.seek(SeekFrom::Start(0))?;
    file.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
        write(&mut f, 32 * MIB, 512, Guid::derived("disk"), &parts()).unwrap();
        drop(f);
        let out = std::process::Command::new("sgdisk")
            .arg("-v")
            .arg(&p)
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && s.contains("No problems found"),
            "{s}"
        );
        let out = std::process::Command::new("sgdisk")
            .arg("-p")
            .arg(&p)
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout);
        assert!(s.contains("EFI-SYSTEM") && s.contains("EF00"), "{s}");
    }

    #[test]
    fn misaligned_or_outside_partitions_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let mut f = File::create(t.path().join("d")).unwrap();
        let mut p = parts();
        p[1].size = 40 * MIB;
        assert!(write(&mut f, 32 * MIB, 4096, Guid::derived("d"), &p).is_err());
        p[1].size = 20 * MIB + 512;
        assert!(write(&mut f, 64 * MIB, 4096, Guid::derived("d"), &p).is_err());
    }
}
