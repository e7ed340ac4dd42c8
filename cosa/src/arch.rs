//! The architecture a build is for, passed explicitly through every stage.
//!
//! Architecture-specific facts (GRUB targets, QEMU machine types, firmware paths)
//! live beside the code that uses them as a `match` on [`Arch`], so a new
//! architecture is a new variant the compiler walks you through, not a hunt for
//! `"x86_64"` strings.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    pub const ALL: [Arch; 2] = [Arch::X86_64, Arch::Aarch64];

    /// The architecture of the machine cosa runs on.
    pub fn host() -> Result<Arch> {
        std::env::consts::ARCH.parse()
    }

    /// The RPM basearch (`x86_64`, `aarch64`): the name in builds/, lockfiles and treefiles.
    pub fn name(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    /// The OCI/Go name (`amd64`, `arm64`) for image configs and indexes.
    pub fn oci_name(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Arch {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Arch> {
        match s {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            other => bail!("unknown architecture {other:?} (known: x86_64, aarch64)"),
        }
    }
}

impl serde::Serialize for Arch {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> serde::Deserialize<'de> for Arch {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Arch, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for a in Arch::ALL {
            assert_eq!(a.name().parse::<Arch>().unwrap(), a);
            assert_eq!(a.oci_name().parse::<Arch>().unwrap(), a);
        }
        let e = "s390x".parse::<Arch>().unwrap_err();
        assert!(format!("{e}").contains("s390x"));
    }
}
