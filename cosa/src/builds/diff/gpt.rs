//! `--metal-part-table`: the primary GPT of a disk image, plain or compressed, read
//! from the image's first bytes (a compressed image is decompressed only that far).

use std::collections::BTreeMap;
use std::io::{BufReader, Cursor, Read};
use std::path::Path;

use anyhow::{bail, Context, Result};
use gptman::GPTHeader;
use serde::{Deserialize, Serialize};

use super::{Change, Changes, Lines};

/// A used entry of a partition table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Partition {
    /// 1-based, as sgdisk and the kernel number them.
    pub number: u32,
    pub label: String,
    /// Canonical text form, upper case.
    pub type_guid: String,
    /// Offset and length, in bytes.
    pub start: u64,
    pub size: u64,
}

impl Partition {
    fn describe(&self) -> String {
        format!(
            "{} {} {} start {} size {}",
            self.number, self.label, self.type_guid, self.start, self.size
        )
    }
}

/// A partition table: its sector size and its used entries by number.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    pub sector_size: u64,
    pub partitions: BTreeMap<u32, Partition>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct TableDiff {
    pub sector_size: Change<u64>,
    /// Both tables, every used entry.
    pub partitions: Change<Vec<Partition>>,
    #[serde(flatten)]
    pub changes: Changes<Partition>,
}

impl TableDiff {
    pub fn of(from: &Table, to: &Table) -> Self {
        TableDiff {
            sector_size: Change {
                from: from.sector_size,
                to: to.sector_size,
            },
            partitions: Change {
                from: from.partitions.values().cloned().collect(),
                to: to.partitions.values().cloned().collect(),
            },
            changes: Changes::of(&from.partitions, &to.partitions),
        }
    }

    pub(super) fn lines(&self) -> Lines {
        let mut l = Lines::new();
        let s = &self.sector_size;
        if s.from != s.to {
            // Sorts first: partition keys are zero-padded numbers.
            l.push((
                String::new(),
                format!("~ sector size {} -> {}", s.from, s.to),
            ));
        }
        let key = |p: &Partition| format!("{:05}", p.number);
        for p in &self.changes.removed {
            l.push((key(p), format!("- {}", p.describe())));
        }
        for p in &self.changes.added {
            l.push((key(p), format!("+ {}", p.describe())));
        }
        for Change { from: a, to: b } in &self.changes.modified {
            let mut what = Vec::new();
            if a.label != b.label {
                what.push(format!("label {} -> {}", a.label, b.label));
            }
            if a.type_guid != b.type_guid {
                what.push(format!("type {} -> {}", a.type_guid, b.type_guid));
            }
            if a.start != b.start {
                what.push(format!("start {} -> {}", a.start, b.start));
            }
            if a.size != b.size {
                what.push(format!("size {} -> {}", a.size, b.size));
            }
            let line = format!("~ {} {}: {}", b.number, b.label, what.join(", "));
            l.push((key(b), line));
        }
        l
    }
}

/// A GUID in GPT's on-disk order (the first three fields little-endian), as text.
fn guid_text(g: &[u8; 16]) -> String {
    let h = |b: &[u8]| -> String { b.iter().map(|x| format!("{x:02X}")).collect() };
    let rev = |b: &[u8]| -> String { h(&b.iter().rev().copied().collect::<Vec<u8>>()) };
    format!(
        "{}-{}-{}-{}-{}",
        rev(&g[0..4]),
        rev(&g[4..6]),
        rev(&g[6..8]),
        h(&g[8..10]),
        h(&g[10..16])
    )
}

/// How far into a disk the entry array may end before it is not a sane GPT.
const MAX_TABLE_END: u64 = 64 << 20;

/// Append bytes of `r` to `buf` until it holds `len` bytes or `r` ends.
fn fill(r: &mut impl Read, buf: &mut Vec<u8>, len: u64) -> Result<()> {
    let want = len.saturating_sub(buf.len() as u64);
    r.take(want)
        .read_to_end(buf)
        .context("reading the start of the disk image")?;
    Ok(())
}

/// The primary GPT of the disk image whose bytes `r` yields from the start, with
/// 512- or 4096-byte sectors.
pub fn read_table(mut r: impl Read) -> Result<Table> {
    let mut buf = Vec::new();
    // The header is at LBA 1: byte 512 or 4096.
    fill(&mut r, &mut buf, 2 * 4096)?;
    for sector in [512u64, 4096] {
        if (buf.len() as u64) < sector + 512 {
            continue;
        }
        let mut c = Cursor::new(&buf[..]);
        c.set_position(sector);
        let h = match GPTHeader::read_from(&mut c) {
            Ok(h) => h,
            Err(gptman::Error::InvalidSignature) => continue,
            Err(e) => {
                return Err(e).with_context(|| format!("bad GPT header ({sector}-byte sectors)"))
            }
        };
        let end = h.partition_entry_lba.saturating_mul(sector).saturating_add(
            u64::from(h.number_of_partition_entries) * u64::from(h.size_of_partition_entry),
        );
        if end > MAX_TABLE_END {
            bail!("the GPT's entry array would end at byte {end}: not a sane table");
        }
        fill(&mut r, &mut buf, end)?;
        if (buf.len() as u64) < end {
            bail!(
                "the image ends at byte {} inside the GPT's entry array",
                buf.len()
            );
        }
        // gptman reads each entry as many bytes as its in-memory size (more than
        // the entry's 128): room after the last, whatever the image holds there.
        buf.resize(buf.len().max(end as usize + 4096), 0);
        let entries = h
            .read_partitions(&mut Cursor::new(&buf[..]), sector)
            .with_context(|| format!("bad GPT entry array ({sector}-byte sectors)"))?;
        let partitions = (1u32..)
            .zip(entries)
            .filter(|(_, e)| e.is_used())
            .map(|(number, e)| {
                let p = Partition {
                    number,
                    label: e.partition_name.as_str().to_string(),
                    type_guid: guid_text(&e.partition_type_guid),
                    start: e.starting_lba * sector,
                    size: (e.ending_lba + 1).saturating_sub(e.starting_lba) * sector,
                };
                (number, p)
            })
            .collect();
        return Ok(Table {
            sector_size: sector,
            partitions,
        });
    }
    bail!("no GPT (none with 512- or 4096-byte sectors)")
}

/// The GPT of a disk image file; `.xz`, `.gz` and `.zst` ones are decompressed as far
/// as the table goes.
pub fn image_table(path: &Path) -> Result<Table> {
    let f = fs_err::File::open(path)?;
    let name = path.to_string_lossy();
    if name.ends_with(".xz") {
        read_table(xz2::read::XzDecoder::new_multi_decoder(BufReader::new(f)))
    } else if name.ends_with(".gz") {
        read_table(flate2::read::MultiGzDecoder::new(BufReader::new(f)))
    } else if name.ends_with(".zst") {
        read_table(zstd::stream::read::Decoder::new(f)?)
    } else {
        read_table(f)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::io::Write;
    use std::path::PathBuf;

    use super::*;
    use crate::image::gpt::{self as imggpt, Guid, MIB, TYPE_BIOS_BOOT, TYPE_EFI_SYSTEM};

    /// Label, type, size in MiB: laid out from 1 MiB on.
    pub type Layout = [(&'static str, &'static str, u64); 3];

    pub const LAYOUT: Layout = [
        ("BIOS-BOOT", TYPE_BIOS_BOOT, 1),
        ("EFI-SYSTEM", TYPE_EFI_SYSTEM, 2),
        ("root", imggpt::TYPE_LINUX_FS, 4),
    ];

    /// A 16 MiB disk image with a GPT of `layout`, written by cosa's image code.
    pub fn disk(dir: &Path, name: &str, sector: u64, layout: &Layout) -> PathBuf {
        let p = dir.join(name);
        let mut f = fs_err::File::create(&p).unwrap();
        f.set_len(16 * MIB).unwrap();
        let mut start = MIB;
        let parts: Vec<imggpt::Partition> = layout
            .iter()
            .map(|(label, ty, mib)| {
                let part = imggpt::Partition {
                    name: label.to_string(),
                    type_guid: ty,
                    // Different per image, as the build ID makes them.
                    guid: Guid::derived(&format!("{name}{label}")),
                    start,
                    size: mib * MIB,
                };
                start += mib * MIB;
                part
            })
            .collect();
        imggpt::write(&mut f, sector, Guid::derived(name), &parts).unwrap();
        p
    }

    /// `path` compressed to `path.<ext>` (xz, gz or zst).
    pub fn compress(path: &Path, ext: &str) -> PathBuf {
        let data = fs_err::read(path).unwrap();
        let out = PathBuf::from(format!("{}.{ext}", path.display()));
        let f = fs_err::File::create(&out).unwrap();
        match ext {
            "xz" => {
                let mut w = xz2::write::XzEncoder::new(f, 1);
                w.write_all(&data).unwrap();
                w.finish().unwrap();
            }
            "gz" => {
                let mut w = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
                w.write_all(&data).unwrap();
                w.finish().unwrap();
            }
            "zst" => zstd::stream::copy_encode(&data[..], f, 1).unwrap(),
            other => panic!("no compressor for .{other}"),
        }
        out
    }

    #[test]
    fn reads_512_and_4k_tables_plain_and_compressed() {
        let t = tempfile::tempdir().unwrap();
        for sector in [512, 4096] {
            let d = disk(t.path(), &format!("d{sector}.raw"), sector, &LAYOUT);
            let want = image_table(&d).unwrap();
            assert_eq!(want.sector_size, sector);
            let parts: Vec<_> = want.partitions.values().cloned().collect();
            assert_eq!(
                parts,
                [
                    Partition {
                        number: 1,
                        label: "BIOS-BOOT".into(),
                        type_guid: TYPE_BIOS_BOOT.into(),
                        start: MIB,
                        size: MIB,
                    },
                    Partition {
                        number: 2,
                        label: "EFI-SYSTEM".into(),
                        type_guid: TYPE_EFI_SYSTEM.into(),
                        start: 2 * MIB,
                        size: 2 * MIB,
                    },
                    Partition {
                        number: 3,
                        label: "root".into(),
                        type_guid: imggpt::TYPE_LINUX_FS.into(),
                        start: 4 * MIB,
                        size: 4 * MIB,
                    },
                ]
            );
            for ext in ["xz", "gz", "zst"] {
                let c = compress(&d, ext);
                assert_eq!(image_table(&c).unwrap(), want, "{}", c.display());
            }
        }
    }

    #[test]
    fn diff_of_two_tables() {
        let t = tempfile::tempdir().unwrap();
        let a = image_table(&disk(t.path(), "a", 512, &LAYOUT)).unwrap();
        let mut layout = LAYOUT;
        layout[1].0 = "EFI";
        layout[2].2 = 8;
        let b = image_table(&disk(t.path(), "b", 4096, &layout)).unwrap();
        let d = TableDiff::of(&a, &b);
        let json = serde_json::to_value(&d).unwrap();
        assert_eq!(
            json["sector-size"],
            serde_json::json!({"from": 512, "to": 4096})
        );
        assert_eq!(json["partitions"]["from"].as_array().unwrap().len(), 3);
        assert_eq!(json["partitions"]["to"][1]["label"], "EFI");
        assert_eq!(json["added"], serde_json::json!([]));
        assert_eq!(json["modified"].as_array().unwrap().len(), 2);
        assert_eq!(
            json["modified"][1]["to"],
            serde_json::json!({
                "number": 3, "label": "root", "type-guid": imggpt::TYPE_LINUX_FS,
                "start": 4 * MIB, "size": 8 * MIB,
            })
        );
        let mut lines = d.lines();
        lines.sort();
        let lines: Vec<String> = lines.into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            lines,
            [
                "~ sector size 512 -> 4096",
                "~ 2 EFI: label EFI-SYSTEM -> EFI",
                "~ 3 root: size 4194304 -> 8388608",
            ]
        );
        // Unique GUIDs differ between the images; they do not count.
        assert!(TableDiff::of(&a, &a).changes.is_empty());
        let c = image_table(&disk(t.path(), "c", 512, &LAYOUT)).unwrap();
        assert!(TableDiff::of(&a, &c).changes.is_empty());

        let mut fewer = a.clone();
        fewer.partitions.remove(&1);
        let d = TableDiff::of(&fewer, &a);
        assert_eq!(
            d.lines()[0].1,
            format!("+ 1 BIOS-BOOT {TYPE_BIOS_BOOT} start 1048576 size 1048576")
        );
    }

    #[test]
    fn not_a_gpt() {
        let e = read_table(&[0u8; 16384][..]).unwrap_err();
        assert!(format!("{e:#}").contains("no GPT"), "{e:#}");
        let t = tempfile::tempdir().unwrap();
        let d = disk(t.path(), "d", 512, &LAYOUT);
        let mut data = fs_err::read(&d).unwrap();
        data[1024 + 40] ^= 0xff; // inside the first entry: the array's CRC breaks
        let e = read_table(&data[..]).unwrap_err();
        assert!(format!("{e:#}").contains("bad GPT entry array"), "{e:#}");
        let e = read_table(&data[..1024]).unwrap_err();
        assert!(format!("{e:#}").contains("ends at byte 1024"), "{e:#}");
    }
}
