//! The platforms cosa makes disk images for, and every fact about each in one table:
//! format, Ignition platform id, sector size, conversion, compression, cost, naming.

use std::fmt;
use std::str::FromStr;

use anyhow::{bail, Result};

use crate::arch::Arch;

/// The names are the lowercase variants (`clap::ValueEnum` derives them, and
/// [`Platform::name`] is checked against them in the tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, clap::ValueEnum)]
pub enum Platform {
    Qemu,
    Metal,
    Metal4k,
    Aws,
    Azure,
    Gcp,
    Openstack,
    Ibmcloud,
    Nutanix,
    Proxmoxve,
    Exoscale,
    Oraclecloud,
    Digitalocean,
    Hetzner,
    Applehv,
    Hyperv,
    Vmware,
    Virtualbox,
    Kubevirt,
}

/// Which hypervisor an OVA's descriptor is written for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OvaFlavor {
    Vmware,
    Virtualbox,
}

/// How a platform's raw disk becomes its published artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// The raw disk as it is.
    Raw,
    /// `qemu-img convert -O FORMAT -o OPTIONS`.
    QemuImg {
        format: &'static str,
        options: &'static str,
    },
    /// `disk.raw` in an oldgnu-format sparse tar, gzipped (what GCP imports).
    GzipTarDiskRaw,
    /// An OVA: a tar of the OVF descriptor, a streamOptimized VMDK and a manifest.
    Ova(OvaFlavor),
    /// A KubeVirt containerDisk: an OCI archive whose one layer holds the qcow2 in
    /// `/disk/`, owned by the qemu user KubeVirt runs as (107).
    ContainerDisk,
}

impl Platform {
    pub const ALL: [Platform; 19] = [
        Platform::Qemu,
        Platform::Metal,
        Platform::Metal4k,
        Platform::Aws,
        Platform::Azure,
        Platform::Gcp,
        Platform::Openstack,
        Platform::Ibmcloud,
        Platform::Nutanix,
        Platform::Proxmoxve,
        Platform::Exoscale,
        Platform::Oraclecloud,
        Platform::Digitalocean,
        Platform::Hetzner,
        Platform::Applehv,
        Platform::Hyperv,
        Platform::Vmware,
        Platform::Virtualbox,
        Platform::Kubevirt,
    ];

    /// The name on the command line, in meta.json's `images` and in artifact names.
    pub fn name(self) -> &'static str {
        match self {
            Platform::Qemu => "qemu",
            Platform::Metal => "metal",
            Platform::Metal4k => "metal4k",
            Platform::Aws => "aws",
            Platform::Azure => "azure",
            Platform::Gcp => "gcp",
            Platform::Openstack => "openstack",
            Platform::Ibmcloud => "ibmcloud",
            Platform::Nutanix => "nutanix",
            Platform::Proxmoxve => "proxmoxve",
            Platform::Exoscale => "exoscale",
            Platform::Oraclecloud => "oraclecloud",
            Platform::Digitalocean => "digitalocean",
            Platform::Hetzner => "hetzner",
            Platform::Applehv => "applehv",
            Platform::Hyperv => "hyperv",
            Platform::Vmware => "vmware",
            Platform::Virtualbox => "virtualbox",
            Platform::Kubevirt => "kubevirt",
        }
    }

    /// The artifact's file extension.
    pub fn extension(self) -> &'static str {
        match self.conversion() {
            Conversion::Raw => "raw",
            Conversion::QemuImg { format: "vpc", .. } => "vhd",
            Conversion::QemuImg { format, .. } => format,
            Conversion::GzipTarDiskRaw => "tar.gz",
            Conversion::Ova(_) => "ova",
            Conversion::ContainerDisk => "ociarchive",
        }
    }

    /// `ignition.platform.id`: metal4k is metal on a 4K disk, and Ignition knows it as metal.
    pub fn ignition_id(self) -> &'static str {
        match self {
            Platform::Metal4k => "metal",
            p => p.name(),
        }
    }

    /// The logical sector size of the platform's disk.
    pub fn sector_size(self) -> u64 {
        match self {
            Platform::Metal4k => 4096,
            _ => 512,
        }
    }

    /// The formats are the ones each cloud's import takes, as Fedora CoreOS
    /// publishes them (before `cosa compress`, which gzips or xzs them for upload).
    pub fn conversion(self) -> Conversion {
        const QCOW2: Conversion = Conversion::QemuImg {
            format: "qcow2",
            options: "compat=1.1",
        };
        match self {
            Platform::Qemu
            | Platform::Openstack
            | Platform::Ibmcloud
            | Platform::Nutanix
            | Platform::Proxmoxve
            | Platform::Exoscale
            | Platform::Oraclecloud
            | Platform::Digitalocean => QCOW2,
            Platform::Metal | Platform::Metal4k | Platform::Hetzner | Platform::Applehv => {
                Conversion::Raw
            }
            // Dynamic VHDX, what Hyper-V's own tools make.
            Platform::Hyperv => Conversion::QemuImg {
                format: "vhdx",
                options: "subformat=dynamic",
            },
            Platform::Aws => Conversion::QemuImg {
                format: "vmdk",
                options: "adapter_type=lsilogic,subformat=streamOptimized,compat6",
            },
            // Fixed VHD; force_size keeps the virtual size exactly the (whole-MiB) raw size.
            Platform::Azure => Conversion::QemuImg {
                format: "vpc",
                options: "subformat=fixed,force_size=on",
            },
            Platform::Gcp => Conversion::GzipTarDiskRaw,
            Platform::Vmware => Conversion::Ova(OvaFlavor::Vmware),
            Platform::Virtualbox => Conversion::Ova(OvaFlavor::Virtualbox),
            Platform::Kubevirt => Conversion::ContainerDisk,
        }
    }

    /// Whether `cosa compress` leaves the artifact as it is: already compressed
    /// (gcp's tarball, aws's streamOptimized vmdk, the OVAs' vmdk, the containerDisk's
    /// gzipped layer), and imported as it is.
    pub fn skips_compress(self) -> bool {
        matches!(
            self.conversion(),
            Conversion::GzipTarDiskRaw
                | Conversion::QemuImg { format: "vmdk", .. }
                | Conversion::Ova(_)
                | Conversion::ContainerDisk
        )
    }

    /// Relative cost of the platform's own work (its conversion, and the sha256 of what
    /// it publishes: a raw disk is hashed whole), for scheduling longest first.
    pub fn cost(self) -> u32 {
        match self.conversion() {
            // compression of the disk's data
            Conversion::GzipTarDiskRaw
            | Conversion::QemuImg { format: "vmdk", .. }
            | Conversion::Ova(_)
            | Conversion::ContainerDisk => 3,
            // sha256 of the whole virtual size
            Conversion::Raw | Conversion::QemuImg { format: "vpc", .. } => 2,
            Conversion::QemuImg { .. } => 1,
        }
    }

    /// The artifact's file name: `<name>-<id>-<platform>.<arch>.<ext>`.
    pub fn artifact_name(self, name: &str, build_id: &str, arch: Arch) -> String {
        format!(
            "{name}-{build_id}-{}.{arch}.{}",
            self.name(),
            self.extension()
        )
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Platform {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> Result<Platform> {
        match Platform::ALL.into_iter().find(|p| p.name() == s) {
            Some(p) => Ok(p),
            None => bail!(
                "unknown platform {s} (known: {})",
                Platform::ALL.map(Platform::name).join(", ")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_lists_the_known() {
        for p in Platform::ALL {
            assert_eq!(p.name().parse::<Platform>().unwrap(), p);
        }
        let e = "vsphere".parse::<Platform>().unwrap_err().to_string();
        assert_eq!(
            e,
            "unknown platform vsphere (known: qemu, metal, metal4k, aws, azure, gcp, openstack, \
             ibmcloud, nutanix, proxmoxve, exoscale, oraclecloud, digitalocean, hetzner, \
             applehv, hyperv, vmware, virtualbox, kubevirt)"
        );
        // The command line's names (clap) are the same.
        use clap::ValueEnum;
        for p in Platform::ALL {
            assert_eq!(p.to_possible_value().unwrap().get_name(), p.name());
        }
        assert_eq!(Platform::value_variants(), Platform::ALL);
    }

    #[test]
    fn the_table_gives_each_cloud_its_import_format() {
        let ext = |p: Platform| p.extension();
        assert_eq!(ext(Platform::Qemu), "qcow2");
        assert_eq!(ext(Platform::Aws), "vmdk");
        assert_eq!(ext(Platform::Azure), "vhd");
        assert_eq!(ext(Platform::Gcp), "tar.gz");
        assert_eq!(ext(Platform::Openstack), "qcow2");
        assert_eq!(ext(Platform::Digitalocean), "qcow2");
        assert_eq!(ext(Platform::Hetzner), "raw");
        assert_eq!(ext(Platform::Applehv), "raw");
        assert_eq!(ext(Platform::Hyperv), "vhdx");
        assert_eq!(ext(Platform::Vmware), "ova");
        assert_eq!(ext(Platform::Virtualbox), "ova");
        assert_eq!(ext(Platform::Kubevirt), "ociarchive");
        assert!(Platform::Vmware.skips_compress() && Platform::Kubevirt.skips_compress());
        assert!(!Platform::Qemu.skips_compress());
        assert_eq!(Platform::Oraclecloud.ignition_id(), "oraclecloud");
        assert_eq!(Platform::Hyperv.ignition_id(), "hyperv");
    }

    #[test]
    fn metal4k_is_metal_on_4k_sectors() {
        assert_eq!(Platform::Metal4k.ignition_id(), "metal");
        assert_eq!(Platform::Metal4k.sector_size(), 4096);
        assert_eq!(Platform::Metal.sector_size(), 512);
        assert_eq!(Platform::Metal4k.extension(), "raw");
    }
}
