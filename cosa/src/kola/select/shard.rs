//! `--shard M/N`: split one run across N CI workers by a stable hash of the
//! test name. The hash is kola's (FNV-1 64 mod N), so a test lands in the same
//! shard as with `kola run --sharding hash:M/N`.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Context, Result};

/// Shard `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Shard {
    /// `M/N` (kola's `hash:M/N` is accepted too), with 1 ≤ M ≤ N.
    pub fn parse(s: &str) -> Result<Shard> {
        let spec = s.strip_prefix("hash:").unwrap_or(s);
        let parsed = spec.split_once('/').and_then(|(m, n)| {
            Some(Shard {
                index: m.trim().parse().ok()?,
                count: n.trim().parse().ok()?,
            })
        });
        let shard = parsed.with_context(|| format!("--shard `{s}`: expected M/N, e.g. 2/4"))?;
        if shard.count == 0 || shard.index == 0 || shard.index > shard.count {
            bail!("--shard `{s}`: need 1 <= M <= N");
        }
        Ok(shard)
    }

    /// The shard (1-based) a test belongs to when a run is split in `count`.
    pub fn of(name: &str, count: u32) -> u32 {
        (fnv1_64(name.as_bytes()) % u64::from(count.max(1))) as u32 + 1
    }

    pub fn contains(&self, name: &str) -> bool {
        Shard::of(name, self.count) == self.index
    }
}

impl FromStr for Shard {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        Shard::parse(s)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

/// FNV-1 (not 1a), 64-bit: Go's `hash/fnv.New64`.
fn fnv1_64(data: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    data.iter()
        .fold(OFFSET, |h, &b| h.wrapping_mul(PRIME) ^ u64::from(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn parse() {
        assert_eq!(Shard::parse("2/4").unwrap(), Shard { index: 2, count: 4 });
        assert_eq!(
            Shard::parse("hash:1/1").unwrap(),
            Shard { index: 1, count: 1 }
        );
        for bad in ["0/4", "5/4", "1/0", "4", "a/b", "", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Shard::parse("3/8").unwrap().to_string(), "3/8");
    }

    #[test]
    fn fnv1_matches_go() {
        // Go: fnv.New64() over "" and "a".
        assert_eq!(fnv1_64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1_64(b"a"), 0xaf63bd4c8601b7be);
    }

    #[test]
    fn shards_partition_a_run() {
        let names: Vec<String> = (0..500)
            .map(|i| format!("ext.config.group{}.test{i}", i % 17))
            .chain(["basic", "firstboot", "reboot", "kernel-override"].map(String::from))
            .collect();
        for n in 1..=8u32 {
            let mut seen = BTreeSet::new();
            for m in 1..=n {
                let shard = Shard { index: m, count: n };
                let part: Vec<&String> = names.iter().filter(|t| shard.contains(t)).collect();
                // Roughly even: no shard is empty or holds more than twice its share.
                assert!(!part.is_empty() && part.len() < 2 * names.len() / n as usize + 2);
                for t in part {
                    assert!(seen.insert(t.clone()), "{t} in two shards of {n}");
                }
            }
            assert_eq!(seen.len(), names.len(), "a test in no shard of {n}");
        }
    }
}
