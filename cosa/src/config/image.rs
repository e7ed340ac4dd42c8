//! `image.yaml` (disk and live image settings) and `platforms.yaml` (per-platform
//! kernel arguments and GRUB commands), in coreos-assembler's formats.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use fs_err as fs;
use serde::{Deserialize, Serialize};

use crate::arch::Arch;
use crate::platform::Platform;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RootFs {
    #[default]
    Ext4,
    Xfs,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveRootFs {
    #[default]
    Squashfs,
    Erofs,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Compressor {
    #[default]
    Xz,
    Zstd,
    Gzip,
    /// A zip archive holding the one file (what Windows opens by itself).
    Zip,
}

impl Compressor {
    /// The name in image.yaml and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Compressor::Xz => "xz",
            Compressor::Zstd => "zstd",
            Compressor::Gzip => "gzip",
            Compressor::Zip => "zip",
        }
    }
}

/// `image.yaml`. Keys coreos-assembler knows that cosa does not act on are accepted
/// and listed by [`ImageConfig::unsupported_keys`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageConfig {
    /// Disk size in GB (GiB, as coreos-assembler reads it); unset: content plus headroom.
    pub size: Option<u64>,
    #[serde(default)]
    pub rootfs: RootFs,
    /// Extra options for mkfs of the root filesystem.
    #[serde(default)]
    pub rootfs_args: Option<String>,
    /// Kernel arguments for every image, before the platform's.
    #[serde(default)]
    pub extra_kargs: Vec<String>,
    #[serde(default)]
    pub live_rootfs_fstype: LiveRootFs,
    #[serde(default)]
    pub compressor: Compressor,
    /// Per platform, the compressor `cosa compress` uses instead of `compressor`
    /// (what the platform's import or its users' tools take: DigitalOcean no xz,
    /// Hyper-V users zip).
    #[serde(default)]
    pub platform_compressor: BTreeMap<String, Compressor>,
    /// The ostree remote the deployment's origin names.
    pub ostree_remote: Option<String>,
    /// The vmware OVA's guest OS type (`vmw:osType`; default `other5xLinux64Guest`).
    pub vmware_os_type: Option<String>,
    /// The vmware OVA's virtual hardware version (`vmx-N`; default 13).
    pub vmware_hw_version: Option<u32>,
    /// Whether the vmware OVA asks for UEFI Secure Boot (default false: it needs a
    /// signed boot chain, which the demo stream does not have).
    pub vmware_secure_boot: Option<bool>,
    // Known to coreos-assembler, not acted on here.
    pub bootfs: Option<serde_yaml::Value>,
    pub grub_script: Option<serde_yaml::Value>,
    pub deploy_via_container: Option<serde_yaml::Value>,
    pub container_imgref: Option<serde_yaml::Value>,
    pub ignition_network_kcmdline: Option<serde_yaml::Value>,
    pub squashfs_compression: Option<serde_yaml::Value>,
    pub ostree_format: Option<serde_yaml::Value>,
}

impl ImageConfig {
    /// Load `image.yaml` (or a variant's `image-VARIANT.yaml`); absent: defaults.
    pub fn load(p: &Path) -> Result<Self> {
        if !p.exists() {
            return Ok(Self::default());
        }
        let s = fs::read_to_string(p)?;
        serde_yaml::from_str(&s).with_context(|| format!("parsing {}", p.display()))
    }

    pub fn unsupported_keys(&self) -> Vec<&'static str> {
        [
            ("bootfs", self.bootfs.is_some()),
            ("grub-script", self.grub_script.is_some()),
            ("deploy-via-container", self.deploy_via_container.is_some()),
            ("container-imgref", self.container_imgref.is_some()),
            (
                "ignition-network-kcmdline",
                self.ignition_network_kcmdline.is_some(),
            ),
            ("squashfs-compression", self.squashfs_compression.is_some()),
            ("ostree-format", self.ostree_format.is_some()),
        ]
        .into_iter()
        .filter_map(|(k, set)| set.then_some(k))
        .collect()
    }
}

/// One platform's entry in `platforms.yaml`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlatformConfig {
    #[serde(default)]
    pub grub_commands: Vec<String>,
    #[serde(default)]
    pub kernel_arguments: Vec<String>,
}

/// `platforms.yaml`: arch → platform → settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Platforms(pub BTreeMap<String, BTreeMap<String, PlatformConfig>>);

impl Platforms {
    /// Load `platforms.yaml` (or `platforms/platforms.yaml`) from the config dir.
    pub fn load(config_dir: &Path) -> Result<Self> {
        for p in [
            config_dir.join("platforms.yaml"),
            config_dir.join("platforms/platforms.yaml"),
        ] {
            if p.exists() {
                let s = fs::read_to_string(&p)?;
                return serde_yaml::from_str(&s)
                    .with_context(|| format!("parsing {}", p.display()));
            }
        }
        Ok(Self::default())
    }

    /// A platform's settings; platforms not listed get none. metal4k is metal on a
    /// 4K-sector disk: without an entry of its own it takes metal's.
    pub fn get(&self, arch: Arch, platform: Platform) -> PlatformConfig {
        let a = self.0.get(arch.name());
        let lookup = |p: Platform| a.and_then(|a| a.get(p.name())).cloned();
        lookup(platform)
            .or_else(|| {
                (platform == Platform::Metal4k)
                    .then(|| lookup(Platform::Metal))
                    .flatten()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_yaml_unknown_key_is_an_error() {
        let e = serde_yaml::from_str::<ImageConfig>("size: 3\nbogus: 1\n").unwrap_err();
        assert!(e.to_string().contains("bogus"), "{e}");
        let c: ImageConfig =
            serde_yaml::from_str("size: 3\nrootfs: xfs\nextra-kargs: [a=b]\nbootfs: ext4\n")
                .unwrap();
        assert_eq!(c.rootfs, RootFs::Xfs);
        assert_eq!(c.unsupported_keys(), ["bootfs"]);
    }

    #[test]
    fn platform_compressor_overrides_by_name() {
        let c: ImageConfig = serde_yaml::from_str(
            "compressor: zstd\nplatform-compressor:\n  hyperv: zip\n  digitalocean: gzip\n",
        )
        .unwrap();
        assert_eq!(c.compressor, Compressor::Zstd);
        assert_eq!(c.platform_compressor["hyperv"], Compressor::Zip);
        assert_eq!(c.platform_compressor["digitalocean"].name(), "gzip");
        let e =
            serde_yaml::from_str::<ImageConfig>("platform-compressor: {qemu: lz4}\n").unwrap_err();
        assert!(e.to_string().contains("lz4"), "{e}");
        // The repository's own config parses, with its overrides.
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for f in ["image.yaml", "image-systemd.yaml"] {
            let c = ImageConfig::load(&root.join(f)).unwrap();
            assert_eq!(
                c.platform_compressor["digitalocean"],
                Compressor::Gzip,
                "{f}"
            );
        }
    }

    #[test]
    fn platforms_lookup() {
        let p: Platforms =
            serde_yaml::from_str("x86_64:\n  qemu:\n    kernel_arguments: [console=ttyS0]\n")
                .unwrap();
        let x86 = Arch::X86_64;
        assert_eq!(
            p.get(x86, Platform::Qemu).kernel_arguments,
            ["console=ttyS0"]
        );
        assert_eq!(p.get(x86, Platform::Aws), PlatformConfig::default());
        assert_eq!(
            p.get(Arch::Aarch64, Platform::Qemu),
            PlatformConfig::default()
        );
        let p: Platforms =
            serde_yaml::from_str("x86_64:\n  metal:\n    kernel_arguments: [console=ttyS1]\n")
                .unwrap();
        assert_eq!(
            p.get(x86, Platform::Metal4k).kernel_arguments,
            ["console=ttyS1"]
        );
    }
}
