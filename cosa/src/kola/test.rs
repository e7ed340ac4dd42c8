//! The kola test registry: built-in tests, external tests discovered on disk,
//! and their metadata as typed fields.
//!
//! External tests follow coreos-assembler's conventions (mantle/kola/harness.go):
//! every executable under a config's `tests/kola/` (ours also `kola-tests/`) is
//! a test named `ext.<config>.<dir>[.<exe>]`, with metadata in an inline
//! `## kola:` YAML block or a `# kola: {json}` line.

mod discover;
mod meta;

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use chrono::NaiveDate;

use super::testiso::{self, Scenario};

pub use discover::{all_tests, discover, discover_dir};
pub use meta::parse_metadata;

/// kola's default per-test timeout (`timeoutMin` when absent).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10 * 60);

/// The tag kola gives every external test.
pub const EXTERNAL_TAG: &str = "external";

/// Tests with this tag run only on qemu (kola's `platform-independent`).
pub const PLATFORM_INDEPENDENT_TAG: &str = "platform-independent";

/// One test: a name, what to run, and when/how to run it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KolaTest {
    pub name: String,
    pub body: TestBody,
    pub meta: TestMeta,
}

/// What a test runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestBody {
    /// An executable shipped into the guest and run there.
    External {
        exe: PathBuf,
        /// The test's directory (holds `exe`, maybe `config.ign` and `data/`).
        dir: PathBuf,
        /// The tests directory it was found in (`tests/kola/`, `kola-tests/`,
        /// or a `-E` directory): symlinks in `data/` may point anywhere in it.
        root: PathBuf,
        /// `data/` beside the test: shipped, exposed as `$KOLA_EXT_DATA`.
        data_dir: Option<PathBuf>,
        /// `config.ign` beside the test: the VM's first-boot config.
        config: Option<PathBuf>,
    },
    /// A test implemented by the harness itself.
    Builtin(Builtin),
}

/// The harness's own tests; the scheduler implements what they do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// Boots, agent ready, no failed services, clean console.
    Basic,
    /// The first-boot (Ignition) config is applied, once.
    Firstboot,
    /// A reboot keeps state and comes back clean.
    Reboot,
    /// The overridden kernel package is the one booted.
    KernelOverride,
    /// The booted deployment is the build's commit and version.
    OstreeStatus,
    /// The previous build's image upgrades to this build, keeps /etc, rolls back.
    Upgrade,
    /// An install-media scenario (kola's `testiso`): the build's live media boot
    /// or install in a VM of their own.
    Testiso(Scenario),
}

impl Builtin {
    pub const ALL: [Builtin; 6] = [
        Builtin::Basic,
        Builtin::Firstboot,
        Builtin::Reboot,
        Builtin::KernelOverride,
        Builtin::OstreeStatus,
        Builtin::Upgrade,
    ];

    /// Every built-in test: the VM tests, the upgrade, the install-media scenarios.
    pub fn all() -> impl Iterator<Item = Builtin> {
        Builtin::ALL
            .into_iter()
            .chain(testiso::ALL.into_iter().map(Builtin::Testiso))
    }

    pub fn name(self) -> &'static str {
        match self {
            Builtin::Testiso(s) => s.name,
            Builtin::Basic => "basic",
            Builtin::Firstboot => "firstboot",
            Builtin::Reboot => "reboot",
            Builtin::KernelOverride => "kernel-override",
            Builtin::OstreeStatus => "ostree-status",
            Builtin::Upgrade => crate::kola::upgrade::TEST_NAME,
        }
    }

    fn description(self) -> &'static str {
        match self {
            Builtin::Testiso(s) => s.description(),
            Builtin::Basic => "Boots and is ready (agent or SSH), no failed units, clean console.",
            Builtin::Firstboot => "The first-boot config is applied on the first boot only.",
            Builtin::Reboot => "A reboot keeps /etc and /var and comes back clean.",
            Builtin::KernelOverride => "The overridden kernel package is the one booted.",
            Builtin::OstreeStatus => {
                "The booted deployment is the build's commit and version (ostree admin status)."
            }
            Builtin::Upgrade => {
                "The previous build's image upgrades to this build over HTTP (its remote's \
                 signature policy), keeps an /etc change, and rolls back."
            }
        }
    }

    fn tags(self) -> &'static [&'static str] {
        match self {
            Builtin::Testiso(s) => s.tags(),
            Builtin::Basic => &["basic"],
            Builtin::Firstboot => &["basic", "ignition"],
            Builtin::Reboot => &["basic", "reboot"],
            Builtin::KernelOverride => &["kernel"],
            Builtin::OstreeStatus => &["basic", "ostree"],
            Builtin::Upgrade => &["upgrade", "ostree"],
        }
    }
}

/// When and how a test runs: kola's external test metadata, typed.
///
/// Include/exclude lists come from kola's `"!a b"` string form, split at load
/// time; an empty include list means "all".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestMeta {
    /// Empty: all architectures.
    pub architectures: Vec<String>,
    pub exclude_architectures: Vec<String>,
    /// Empty: all platforms.
    pub platforms: Vec<String>,
    pub exclude_platforms: Vec<String>,
    /// Empty: all distros.
    pub distros: Vec<String>,
    pub exclude_distros: Vec<String>,
    pub tags: Vec<String>,
    /// The test runs only when this tag is explicitly selected.
    pub required_tag: Option<String>,
    /// Selected only by a name pattern or a tag, never by a bare `kola run`
    /// (the install-media scenarios, as upstream keeps them to `kola testiso`).
    pub explicit_only: bool,
    /// `timeoutMin` (default 10 minutes).
    pub timeout: Duration,
    /// Needs a VM of its own; non-exclusive tests may share one (kola's default: true).
    pub exclusive: bool,
    /// Tests that must not share a VM with this one.
    pub conflicts: Vec<String>,
    /// kola's `--add-disk` syntax, e.g. `5G`, `5G:channel=nvme`, `1G:serial=disk1`.
    pub additional_disks: Vec<String>,
    /// `minMemory` in MiB.
    pub min_memory_mib: Option<u64>,
    /// `minDisk` in GiB.
    pub min_disk_gib: Option<u64>,
    pub append_kernel_args: Vec<String>,
    pub append_firstboot_kernel_args: Vec<String>,
    /// Ignition config warnings do not fail the test.
    pub allow_config_warnings: bool,
    pub description: Option<String>,
    /// `additionalNics`: extra NICs beyond the first (0 = none).
    pub additional_nics: u32,
    /// `primaryDisk`: the boot disk in `--add-disk` syntax; the size may be omitted (`:mpath`).
    pub primary_disk: Option<String>,
    /// `injectContainer`: ship the build's ostree container as `$KOLA_EXT_OSTREE_OCIARCHIVE`.
    pub inject_container: bool,
    /// `numaNodes`: boot with NUMA nodes.
    pub numa_nodes: bool,
    /// `noInstanceCreds`: cloud platforms without instance credentials.
    pub no_instance_creds: bool,
    /// `instanceType`: cloud instance type.
    pub instance_type: Option<String>,
    /// `bindMountHostRO`: `SRC,DEST` host directories mounted read-only in the guest.
    pub bind_mount_host_ro: Vec<String>,
    /// `bootFrom`: boot from the live ISO instead of the disk image.
    pub boot_from: Option<BootFrom>,
    /// `requiredHostPorts`: host ports the test needs free.
    pub required_host_ports: Vec<u16>,
    /// `creationDate`: failures count as WARN for 30 days after it (kola's grace period).
    pub creation_date: Option<NaiveDate>,
    /// `config.bu` beside the test: Butane cannot be translated here, so
    /// selection skips the test with this reason instead of running it without its config.
    pub butane_config: Option<PathBuf>,
}

impl Default for TestMeta {
    fn default() -> Self {
        TestMeta {
            architectures: Vec::new(),
            exclude_architectures: Vec::new(),
            platforms: Vec::new(),
            exclude_platforms: Vec::new(),
            distros: Vec::new(),
            exclude_distros: Vec::new(),
            tags: Vec::new(),
            required_tag: None,
            explicit_only: false,
            timeout: DEFAULT_TIMEOUT,
            exclusive: true,
            conflicts: Vec::new(),
            additional_disks: Vec::new(),
            min_memory_mib: None,
            min_disk_gib: None,
            append_kernel_args: Vec::new(),
            append_firstboot_kernel_args: Vec::new(),
            allow_config_warnings: false,
            description: None,
            additional_nics: 0,
            primary_disk: None,
            inject_container: false,
            numa_nodes: false,
            no_instance_creds: false,
            instance_type: None,
            bind_mount_host_ro: Vec::new(),
            boot_from: None,
            required_host_ports: Vec::new(),
            creation_date: None,
            butane_config: None,
        }
    }
}

/// `bootFrom` values kola knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BootFrom {
    /// The live ISO as a CD-ROM.
    Iso,
    /// The live ISO written to a disk, like a USB stick.
    IsoAsDisk,
}

/// A VM or platform feature a test asks for beyond a plain VM with one disk and
/// one NIC. The scheduler matches on these and refuses, with the Display text,
/// the ones it cannot provide.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Feature {
    AdditionalDisks(Vec<String>),
    AdditionalNics(u32),
    PrimaryDisk(String),
    InjectContainer,
    NumaNodes,
    NoInstanceCreds,
    InstanceType(String),
    BindMountHostRo(Vec<String>),
    BootFrom(BootFrom),
    RequiredHostPorts(Vec<u16>),
}

impl fmt::Display for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Feature::AdditionalDisks(d) => write!(f, "additionalDisks {}", d.join(" ")),
            Feature::AdditionalNics(n) => write!(f, "additionalNics {n}"),
            Feature::PrimaryDisk(d) => write!(f, "primaryDisk {d}"),
            Feature::InjectContainer => f.write_str("injectContainer"),
            Feature::NumaNodes => f.write_str("numaNodes"),
            Feature::NoInstanceCreds => f.write_str("noInstanceCreds"),
            Feature::InstanceType(t) => write!(f, "instanceType {t}"),
            Feature::BindMountHostRo(m) => write!(f, "bindMountHostRO {}", m.join(" ")),
            Feature::BootFrom(BootFrom::Iso) => f.write_str("bootFrom iso"),
            Feature::BootFrom(BootFrom::IsoAsDisk) => f.write_str("bootFrom iso-as-disk"),
            Feature::RequiredHostPorts(p) => {
                let p: Vec<String> = p.iter().map(|p| p.to_string()).collect();
                write!(f, "requiredHostPorts {}", p.join(" "))
            }
        }
    }
}

impl TestMeta {
    /// The features this test needs from the VM or platform, for the
    /// scheduler to provide or refuse.
    pub fn features(&self) -> Vec<Feature> {
        let mut v = Vec::new();
        if !self.additional_disks.is_empty() {
            v.push(Feature::AdditionalDisks(self.additional_disks.clone()));
        }
        if self.additional_nics > 0 {
            v.push(Feature::AdditionalNics(self.additional_nics));
        }
        if let Some(d) = &self.primary_disk {
            v.push(Feature::PrimaryDisk(d.clone()));
        }
        if self.inject_container {
            v.push(Feature::InjectContainer);
        }
        if self.numa_nodes {
            v.push(Feature::NumaNodes);
        }
        if self.no_instance_creds {
            v.push(Feature::NoInstanceCreds);
        }
        if let Some(t) = &self.instance_type {
            v.push(Feature::InstanceType(t.clone()));
        }
        if !self.bind_mount_host_ro.is_empty() {
            v.push(Feature::BindMountHostRo(self.bind_mount_host_ro.clone()));
        }
        if let Some(b) = self.boot_from {
            v.push(Feature::BootFrom(b));
        }
        if !self.required_host_ports.is_empty() {
            v.push(Feature::RequiredHostPorts(self.required_host_ports.clone()));
        }
        v
    }
}

impl KolaTest {
    /// Whether the test's VM needs kernel arguments the image does not have
    /// (it then boots the image's kernel directly).
    pub fn needs_kernel_args(&self) -> bool {
        !self.meta.append_kernel_args.is_empty()
            || !self.meta.append_firstboot_kernel_args.is_empty()
    }

    /// The Ignition config the test's VM boots with, if the test has one (an
    /// external test's `config.ign`, a built-in test's own).
    pub fn ignition_config(&self) -> anyhow::Result<Option<serde_json::Value>> {
        use anyhow::Context;
        Ok(match &self.body {
            TestBody::External {
                config: Some(p), ..
            } => Some(
                serde_json::from_slice(
                    &std::fs::read(p).with_context(|| format!("reading {}", p.display()))?,
                )
                .with_context(|| format!("{}: not a JSON Ignition config", p.display()))?,
            ),
            TestBody::External { config: None, .. } => None,
            TestBody::Builtin(b) => super::builtin::ignition_config(*b),
        })
    }

    pub fn is_external(&self) -> bool {
        matches!(self.body, TestBody::External { .. })
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.meta.tags.iter().any(|t| t == tag)
    }
}

/// The harness's own tests.
pub fn builtin_tests() -> Vec<KolaTest> {
    Builtin::all()
        .map(|b| KolaTest {
            name: b.name().to_string(),
            body: TestBody::Builtin(b),
            meta: TestMeta {
                // They drive the VM through QMP and the agent or SSH: qemu only.
                platforms: vec!["qemu".into()],
                tags: b.tags().iter().map(|t| t.to_string()).collect(),
                description: Some(b.description().to_string()),
                explicit_only: matches!(b, Builtin::Testiso(_)),
                timeout: match b {
                    Builtin::Testiso(s) => s.timeout(),
                    _ => DEFAULT_TIMEOUT,
                },
                ..TestMeta::default()
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_names() {
        let names: Vec<String> = builtin_tests().into_iter().map(|t| t.name).collect();
        assert_eq!(
            names[..6],
            [
                "basic",
                "firstboot",
                "reboot",
                "kernel-override",
                "ostree-status",
                "ostree.upgrade"
            ]
        );
        assert_eq!(names.len(), 6 + testiso::ALL.len());
        for t in builtin_tests() {
            assert!(t.meta.exclusive);
            assert!(!t.is_external());
            let testiso = t.has_tag(testiso::TAG);
            assert_eq!(t.meta.explicit_only, testiso, "{}", t.name);
            let installs = testiso::Scenario::by_name(&t.name).is_some_and(|s| s.installs());
            assert_eq!(t.meta.timeout == DEFAULT_TIMEOUT, !installs, "{}", t.name);
        }
    }

    #[test]
    fn features_listed() {
        let m = TestMeta {
            additional_nics: 2,
            primary_disk: Some(":512e".into()),
            ..TestMeta::default()
        };
        let f = m.features();
        assert_eq!(
            f,
            [
                Feature::AdditionalNics(2),
                Feature::PrimaryDisk(":512e".into())
            ]
        );
        assert_eq!(f[0].to_string(), "additionalNics 2");
        assert!(TestMeta::default().features().is_empty());
    }
}
