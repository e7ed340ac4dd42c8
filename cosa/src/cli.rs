//! The command line: one `Cmd` enum, one options struct per command.
//!
//! `--help` is the reference for every command; keep the doc comments exact.

pub use crate::kola::machine::{Firmware, TransportKind};
pub use crate::oci::Compression;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cosa",
    version,
    about = "Build and test image-based Linux operating systems",
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub cmd: Cmd,
}

/// Options every workdir command takes.
#[derive(Debug, Args, Clone)]
pub struct GlobalOpts {
    /// The working directory (made by `cosa init`).
    #[arg(
        long,
        short = 'C',
        global = true,
        default_value = ".",
        env = "COSA_DIR"
    )]
    pub workdir: PathBuf,
}

// Parsed once per process: the size of the largest options struct does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Make a working directory: builds/ cache/ tmp/ overrides/ src/config.
    Init(InitOpts),
    /// Print the fully resolved treefile (includes, variables, conditionals applied).
    Manifest(ManifestOpts),
    /// Resolve the package set with libdnf, download it, write the generated lockfile.
    Fetch(FetchOpts),
    /// Compose the packages into an ostree commit and record a new build.
    Build(BuildOpts),
    /// List the builds, newest first.
    List(ListOpts),
    /// Print a build's meta.json, or one key of it.
    Meta(MetaOpts),
    /// Compare two builds.
    Diff(DiffOpts),
    /// Delete old builds, keeping the newest N and every tagged build.
    Prune(PruneOpts),
    /// Add, remove or list tags on builds.
    Tag(TagOpts),
    /// Sign a build: each artifact (detached GPG `.sig`), the OCI image (containers
    /// simple signing) and the ostree commit, with one GPG key.
    Sign(SignOpts),
    /// Write a build's release metadata (builds/<id>/release.json).
    GenerateReleaseMeta(ReleaseMetaOpts),
    /// Write a stream's metadata (Fedora CoreOS's format) from the build tagged
    /// with the stream's name.
    StreamMetadata(StreamMetadataOpts),
    /// Wrap a build's commit as an ostree-native OCI image archive.
    BuildContainer(BuildContainerOpts),
    /// Copy a build's OCI archive to any destination skopeo accepts.
    PushContainer(PushContainerOpts),
    /// Turn a derived container image (FROM a build's image) into a new build.
    Import(ImportOpts),
    /// `buildextend-<platform>`: one per platform of the table.
    #[command(flatten)]
    PlatformImage(PlatformImageCmd),
    /// Make several platforms' images in one run (the base disk is made once).
    Osbuild(OsbuildOpts),
    /// Compress a build's images in place (meta.json keeps the uncompressed digests).
    Compress(CompressOpts),
    /// Decompress a build's images.
    Decompress(CompressOpts),
    /// Make the live media: PXE kernel, initramfs and rootfs, and a hybrid ISO.
    BuildextendLive(ImageOpts),
    /// Customize a copy of the live ISO (Day-0 install media).
    Iso(LiveMediaOpts),
    /// Customize a copy of the PXE artifacts (Day-0 install media).
    Pxe(LiveMediaOpts),
    /// Integration tests in QEMU: `kola run`, `kola list`.
    Kola(KolaOpts),
    /// Boot a build interactively on the serial console, with the agent available.
    Run(RunOpts),
    /// Become QEMU with cosa's command line for this host (for scripts such as
    /// packages/smoke-boot): TCG, the serial console on stdin/stdout.
    #[command(hide = true)]
    Qemu(QemuOpts),
}

#[derive(Debug, Args)]
pub struct LiveMediaOpts {
    #[command(subcommand)]
    pub action: LiveMediaAction,
}

#[derive(Debug, Subcommand)]
pub enum LiveMediaAction {
    /// Write a customized copy of the media; the original is never modified.
    Customize(CustomizeOpts),
}

/// coreos-installer's `iso customize` / `pxe customize` options, with the same names.
#[derive(Debug, Args)]
pub struct CustomizeOpts {
    /// The media to customize: the ISO, or for `pxe` the live initramfs.
    pub input: std::path::PathBuf,
    /// Where to write the customized copy (for `pxe`: the customized initramfs).
    #[arg(long, short = 'o')]
    pub output: std::path::PathBuf,
    /// Ignition config for the installed system's first boot. Repeatable (merged).
    #[arg(long)]
    pub dest_ignition: Vec<std::path::PathBuf>,
    /// Install to this device (e.g. /dev/vda): makes the media install unattended.
    #[arg(long)]
    pub dest_device: Option<String>,
    /// Kernel console for the installed system, e.g. ttyS0,115200n8. Repeatable.
    #[arg(long, value_name = "SPEC")]
    pub dest_console: Vec<String>,
    /// Kernel argument to add to the installed system. Repeatable.
    #[arg(long, value_name = "ARG")]
    pub dest_karg_append: Vec<String>,
    /// Kernel argument to remove from the installed system. Repeatable.
    #[arg(long, value_name = "ARG")]
    pub dest_karg_delete: Vec<String>,
    /// A file for the installed system, LOCAL:/PATH (added to its Ignition config). Repeatable.
    #[arg(long, value_name = "LOCAL:PATH")]
    pub dest_file: Vec<String>,
    /// NetworkManager keyfile for the live and installed systems (where the OS
    /// supports it: coreos/features.json `live-initrd-network`). Repeatable.
    #[arg(long, value_name = "PATH")]
    pub network_keyfile: Vec<std::path::PathBuf>,
    /// CA certificate (PEM) Ignition trusts, live and installed. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub ignition_ca: Vec<std::path::PathBuf>,
    /// Script the live system runs before installing. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub pre_install: Vec<std::path::PathBuf>,
    /// Script the live system runs after installing. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub post_install: Vec<std::path::PathBuf>,
    /// coreos-installer config (YAML) for the live installer. Repeatable.
    #[arg(long, value_name = "PATH")]
    pub installer_config: Vec<std::path::PathBuf>,
    /// Ignition config for the live system itself. Repeatable (merged).
    #[arg(long, value_name = "PATH")]
    pub live_ignition: Vec<std::path::PathBuf>,
    /// Kernel argument to add to the live system. Repeatable.
    #[arg(long, value_name = "ARG")]
    pub live_karg_append: Vec<String>,
    /// Replace a live kernel argument, KEY=OLD=NEW. Repeatable.
    #[arg(long, value_name = "KEY=OLD=NEW")]
    pub live_karg_replace: Vec<String>,
    /// Kernel argument to remove from the live system. Repeatable.
    #[arg(long, value_name = "ARG")]
    pub live_karg_delete: Vec<String>,
    /// Replace an existing customization, and overwrite the output if it exists.
    #[arg(long, short = 'f')]
    pub force: bool,
}

#[derive(Debug, Args)]
pub struct KolaOpts {
    #[command(subcommand)]
    pub action: KolaAction,
}

#[derive(Debug, Subcommand)]
pub enum KolaAction {
    /// Run tests (all selected tests when no pattern is given).
    Run(KolaRunOpts),
    /// List the tests that would run.
    List(KolaListOpts),
    /// Boot an older build, upgrade it in the guest to a newer one served from
    /// the host, reboot, check, roll back (guests with ostree and SSH).
    RunUpgrade(KolaUpgradeOpts),
}

#[derive(Debug, Args)]
pub struct KolaUpgradeOpts {
    /// The build booted first (default: the one before --to in builds.json).
    #[arg(long)]
    pub from: Option<String>,
    /// The build upgraded to (default: latest).
    #[arg(long)]
    pub to: Option<String>,
    /// The stream's public GPG key: the guest's remote verifies the commit with it.
    #[arg(long, value_name = "FILE")]
    pub gpg_key: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub vm: KolaVmOpts,
    /// Where the served repo, console log and reports go (default: tmp/kola-upgrade).
    #[arg(long)]
    pub output_dir: Option<std::path::PathBuf>,
    /// Machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
}

/// How kola's VMs run: shared by `kola run` and `kola run-upgrade`.
#[derive(Debug, Args, Clone)]
pub struct KolaVmOpts {
    /// Firmware the VMs boot with.
    #[arg(long, value_enum, default_value_t = Firmware::Bios)]
    pub qemu_firmware: Firmware,
    /// Accelerator: `auto` tries KVM (a VM must reach its guest) and falls back to TCG.
    #[arg(long, default_value = "auto", value_parser = ["auto", "kvm", "tcg"])]
    pub qemu_accel: String,
    /// Memory of each VM in MiB (a test's `minMemory` can ask for more).
    #[arg(long, default_value_t = 1024)]
    pub qemu_memory: u64,
    /// Seconds a VM gets to boot (to its agent, or to SSH and a started
    /// system) before it counts as never booted.
    #[arg(long, default_value_t = 300)]
    pub boot_timeout: u64,
}

/// Which tests: shared by `kola run` and `kola list`.
#[derive(Debug, Args, Clone, Default)]
pub struct KolaSelectOpts {
    /// Test name globs (e.g. 'basic*', 'ext.config.*').
    pub patterns: Vec<String>,
    /// Only tests with this tag; `!TAG` excludes it. Repeatable.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    /// Extra directories of external tests (like the config's kola-tests/). Repeatable.
    #[arg(short = 'E', long = "exttest")]
    pub exttests: Vec<std::path::PathBuf>,
    /// kola-denylist.yaml to apply (default: the config's, if it has one).
    #[arg(long)]
    pub denylist: Option<std::path::PathBuf>,
    /// Ignore the config's denylist.
    #[arg(long)]
    pub no_denylist: bool,
    /// Run shard M of N (1-based, `M/N`): stable hash sharding across CI workers.
    #[arg(long)]
    pub shard: Option<String>,
    /// Platform to select tests for (default: qemu).
    #[arg(long, default_value = "qemu")]
    pub platform: String,
    /// Build ID (default: latest).
    #[arg(long)]
    pub build: Option<String>,
}

#[derive(Debug, Args)]
pub struct KolaRunOpts {
    #[command(flatten)]
    pub select: KolaSelectOpts,
    /// Parallel VMs: a number or `auto` (by cores and free memory).
    #[arg(short = 'j', long, default_value = "auto")]
    pub parallel: String,
    #[command(flatten)]
    pub vm: KolaVmOpts,
    /// Where console logs, agent logs and reports go (default: tmp/kola).
    #[arg(long)]
    pub output_dir: Option<std::path::PathBuf>,
    /// Re-run failed tests once in fresh VMs, recording both outcomes.
    #[arg(long)]
    pub rerun: bool,
    /// Machine-readable summary on stdout.
    #[arg(long)]
    pub json: bool,
    /// Boot this qcow2 instead of the build's qemu image.
    #[arg(long)]
    pub qemu_image: Option<std::path::PathBuf>,
    /// How to reach the guests; default: the agent if the build carries it
    /// (its lockfile lists demo-agent), else SSH.
    #[arg(long, value_enum)]
    pub transport: Option<TransportKind>,
}

#[derive(Debug, Args)]
pub struct KolaListOpts {
    #[command(flatten)]
    pub select: KolaSelectOpts,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RunOpts {
    /// Build ID (default: latest).
    #[arg(long)]
    pub build: Option<String>,
    /// Firmware to boot with.
    #[arg(long, value_enum, default_value_t = Firmware::Bios)]
    pub qemu_firmware: Firmware,
    /// First-boot Ignition config for the VM.
    #[arg(long, short = 'i')]
    pub ignition: Option<std::path::PathBuf>,
    /// Memory in MiB.
    #[arg(long, short = 'm', default_value_t = 1024)]
    pub memory: u64,
    /// Attach the console to this terminal (otherwise print the ready report and exit).
    #[arg(long, short = 'c')]
    pub console: bool,
    /// How to reach the guest (default: as `kola run` chooses).
    #[arg(long, value_enum)]
    pub transport: Option<TransportKind>,
    /// Show the real login prompt on the console instead of a root shell.
    #[arg(long)]
    pub no_autologin: bool,
    /// Log in over SSH (streams with sshd) once the guest is up, instead of the
    /// serial console; the guest powers off when the session ends.
    #[arg(long, conflicts_with = "console")]
    pub ssh: bool,
    /// Extra kernel arguments (the image's kernel is then booted directly).
    #[arg(long, value_name = "ARGS", allow_hyphen_values = true)]
    pub kargs: Option<String>,
    /// An extra blank disk of this size (qemu-img syntax: 5G, 512M). Repeatable.
    #[arg(long, value_name = "SIZE")]
    pub add_disk: Vec<String>,
    /// Mount the host directory SRC read-only at DEST in the guest (9p over
    /// virtio; e.g. --bind-ro .,/var/mnt/src). Repeatable.
    #[arg(long, value_name = "SRC,DEST")]
    pub bind_ro: Vec<String>,
}

#[derive(Debug, Args)]
pub struct QemuOpts {
    /// The VM's name.
    #[arg(long, default_value = "cosa")]
    pub name: String,
    /// Memory in MiB.
    #[arg(long, short = 'm', default_value_t = 1024)]
    pub memory: u64,
    /// A disk (qcow2 if the name ends in .qcow2, else raw); the first is the boot disk. Repeatable.
    #[arg(long)]
    pub disk: Vec<PathBuf>,
    /// An ISO image on a CD-ROM drive.
    #[arg(long)]
    pub cdrom: Option<PathBuf>,
    /// Boot this kernel directly.
    #[arg(long)]
    pub kernel: Option<PathBuf>,
    /// The directly booted kernel's initramfs.
    #[arg(long, requires = "kernel")]
    pub initrd: Option<PathBuf>,
    /// The directly booted kernel's command line.
    #[arg(long, requires = "kernel")]
    pub append: Option<String>,
    /// Ignition config for fw_cfg.
    #[arg(long)]
    pub ignition: Option<PathBuf>,
    /// A virtio NIC on QEMU's user network (restricted: the guest reaches nothing outside).
    #[arg(long)]
    pub network: bool,
    /// A host port on 127.0.0.1 the guest reaches at 10.0.2.100:PORT. Repeatable.
    #[arg(long, value_name = "PORT", requires = "network")]
    pub forward: Vec<u16>,
    /// QMP socket to listen on.
    #[arg(long)]
    pub qmp: Option<PathBuf>,
    /// The guest agent's channel: a Unix socket QEMU listens on.
    #[arg(long)]
    pub agent_socket: PathBuf,
}

#[derive(Debug, Args, Clone)]
pub struct ImageOpts {
    /// Build ID (default: latest).
    #[arg(long)]
    pub build: Option<String>,
    /// Rebuild images the build already has.
    #[arg(long)]
    pub force: bool,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

/// The `buildextend-<platform>` commands, one per [`Platform`](crate::platform::Platform).
#[derive(Debug, Subcommand)]
pub enum PlatformImageCmd {
    /// Make the QEMU image (qcow2).
    BuildextendQemu(ImageOpts),
    /// Make the bare-metal raw image.
    BuildextendMetal(ImageOpts),
    /// Make the bare-metal raw image for disks with 4096-byte sectors.
    BuildextendMetal4k(ImageOpts),
    /// Make the AWS image (streamOptimized vmdk).
    BuildextendAws(ImageOpts),
    /// Make the Azure image (fixed VHD).
    BuildextendAzure(ImageOpts),
    /// Make the GCP image (disk.raw in a gzipped tarball).
    BuildextendGcp(ImageOpts),
    /// Make the OpenStack image (qcow2).
    BuildextendOpenstack(ImageOpts),
    /// Make the IBM Cloud image (qcow2).
    BuildextendIbmcloud(ImageOpts),
    /// Make the Nutanix image (qcow2).
    BuildextendNutanix(ImageOpts),
    /// Make the Proxmox VE image (qcow2).
    BuildextendProxmoxve(ImageOpts),
    /// Make the Exoscale image (qcow2).
    BuildextendExoscale(ImageOpts),
    /// Make the Oracle Cloud image (qcow2).
    BuildextendOraclecloud(ImageOpts),
    /// Make the DigitalOcean image (qcow2).
    BuildextendDigitalocean(ImageOpts),
    /// Make the Hetzner image (raw).
    BuildextendHetzner(ImageOpts),
    /// Make the Apple Hypervisor image (raw).
    BuildextendApplehv(ImageOpts),
    /// Make the Hyper-V image (dynamic VHDX).
    BuildextendHyperv(ImageOpts),
    /// Make the VMware image (OVA: the OVF descriptor and a streamOptimized VMDK).
    BuildextendVmware(ImageOpts),
    /// Make the VirtualBox image (OVA: the OVF descriptor and a streamOptimized VMDK).
    BuildextendVirtualbox(ImageOpts),
    /// Make the KubeVirt image (a containerDisk: an OCI archive holding the qcow2).
    BuildextendKubevirt(ImageOpts),
}

impl PlatformImageCmd {
    /// The platform the command makes, and its options.
    pub fn platform(&self) -> (crate::platform::Platform, &ImageOpts) {
        use crate::platform::Platform;
        match self {
            Self::BuildextendQemu(o) => (Platform::Qemu, o),
            Self::BuildextendMetal(o) => (Platform::Metal, o),
            Self::BuildextendMetal4k(o) => (Platform::Metal4k, o),
            Self::BuildextendAws(o) => (Platform::Aws, o),
            Self::BuildextendAzure(o) => (Platform::Azure, o),
            Self::BuildextendGcp(o) => (Platform::Gcp, o),
            Self::BuildextendOpenstack(o) => (Platform::Openstack, o),
            Self::BuildextendIbmcloud(o) => (Platform::Ibmcloud, o),
            Self::BuildextendNutanix(o) => (Platform::Nutanix, o),
            Self::BuildextendProxmoxve(o) => (Platform::Proxmoxve, o),
            Self::BuildextendExoscale(o) => (Platform::Exoscale, o),
            Self::BuildextendOraclecloud(o) => (Platform::Oraclecloud, o),
            Self::BuildextendDigitalocean(o) => (Platform::Digitalocean, o),
            Self::BuildextendHetzner(o) => (Platform::Hetzner, o),
            Self::BuildextendApplehv(o) => (Platform::Applehv, o),
            Self::BuildextendHyperv(o) => (Platform::Hyperv, o),
            Self::BuildextendVmware(o) => (Platform::Vmware, o),
            Self::BuildextendVirtualbox(o) => (Platform::Virtualbox, o),
            Self::BuildextendKubevirt(o) => (Platform::Kubevirt, o),
        }
    }
}

#[derive(Debug, Args)]
pub struct OsbuildOpts {
    /// The platforms to make images for.
    #[arg(required = true, value_enum)]
    pub platforms: Vec<crate::platform::Platform>,
    #[command(flatten)]
    pub image: ImageOpts,
}

#[derive(Debug, Args)]
pub struct CompressOpts {
    /// Build ID (default: latest).
    #[arg(long)]
    pub build: Option<String>,
    /// Compressor (default: image.yaml `compressor`, else xz). The platforms
    /// image.yaml's `platform-compressor` names keep theirs.
    #[arg(long, value_enum)]
    pub compressor: Option<crate::config::image::Compressor>,
}

#[derive(Debug, Args)]
pub struct BuildContainerOpts {
    /// Build ID (default: latest).
    #[arg(long)]
    pub build: Option<String>,
    /// The most layers to split the image into (packages are packed into them).
    #[arg(long, default_value_t = 64)]
    pub max_layers: usize,
    /// Layer compression.
    #[arg(long, value_enum, default_value_t = Compression::Gzip)]
    pub compression: Compression,
    /// Rebuild the archive even if the build has one.
    #[arg(long)]
    pub force: bool,
    /// Wait for another command in this workdir to finish instead of failing.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct PushContainerOpts {
    /// Destination, in skopeo's transport:reference form (e.g. docker://registry/repo:tag).
    pub dest: String,
    /// Build ID (default: latest).
    #[arg(long)]
    pub build: Option<String>,
}

#[derive(Debug, Args)]
pub struct ImportOpts {
    /// The image: oci-archive:PATH, oci:DIR[:TAG], containers-storage:REF or dir:PATH.
    pub image: String,
    /// Wait for another build in this workdir to finish instead of failing.
    #[arg(long)]
    pub wait: bool,
    /// Version (build ID) of the new build (default: the base build's ID plus `.N`).
    #[arg(long)]
    pub version: Option<String>,
}

#[derive(Debug, Args)]
pub struct InitOpts {
    /// Stream config: a directory or a git URL (default: this project's root, the demo stream's config).
    pub config: Option<String>,
    /// Directory to initialize.
    #[arg(long, short = 'C', default_value = ".", env = "COSA_DIR")]
    pub workdir: PathBuf,
    /// Git branch to check out when CONFIG is a URL.
    #[arg(long)]
    pub branch: Option<String>,
    /// Config variant: its manifest-VARIANT.yaml, image-VARIANT.yaml and
    /// kola-denylist-VARIANT.yaml replace the plain ones (recorded in src/config.json).
    #[arg(long)]
    pub variant: Option<String>,
}

#[derive(Debug, Args)]
pub struct ManifestOpts {
    /// Treefile to resolve (default: src/config/manifest.yaml of the workdir).
    #[arg(long)]
    pub path: Option<PathBuf>,
    /// Print JSON (the default is YAML).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FetchOpts {
    /// Refuse any package that the config's lockfile does not pin.
    #[arg(long)]
    pub strict: bool,
    /// Also write the resolved set as the config's manifest-lock.<arch>.json.
    #[arg(long)]
    pub update_lockfile: bool,
}

#[derive(Debug, Args)]
pub struct BuildOpts {
    /// Build even when no input changed.
    #[arg(long)]
    pub force: bool,
    /// Version to give the build (default: derived from automatic-version-prefix).
    #[arg(long)]
    pub version: Option<String>,
    /// Refuse any package that the config's lockfile does not pin.
    #[arg(long)]
    pub strict: bool,
    /// Wait for another build in this workdir to finish instead of failing.
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
pub struct ListOpts {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct MetaOpts {
    /// Build ID (default: latest).
    #[arg(long)]
    pub build: Option<String>,
    /// Print only this key (dotted path, e.g. `images.qemu.path`).
    #[arg(long)]
    pub get: Option<String>,
}

#[derive(Debug, Args)]
pub struct DiffOpts {
    /// Compare the package sets: added, removed, upgraded, downgraded.
    #[arg(long)]
    pub rpms: bool,
    /// The package comparison as JSON: the same as `--rpms --json`.
    #[arg(long)]
    pub rpms_json: bool,
    /// Compare the ostree commits: paths added, removed and modified.
    #[arg(long)]
    pub ostree: bool,
    /// Compare the partition tables of the metal images (`cosa osbuild metal`).
    #[arg(long)]
    pub metal_part_table: bool,
    /// Compare the file listings (path, size) of the live ISOs (`cosa buildextend-live`).
    #[arg(long)]
    pub live_iso_ls: bool,
    /// Compare the initramfs of the commits: paths, modes, sizes and contents.
    #[arg(long)]
    pub initrd: bool,
    /// One JSON object: `from`, `to`, and a key per comparison asked for, each with
    /// lists of what was added, removed and modified.
    #[arg(long)]
    pub json: bool,
    /// Older build (default: the one before TO).
    pub from: Option<String>,
    /// Newer build (default: latest).
    pub to: Option<String>,
}

#[derive(Debug, Args)]
pub struct PruneOpts {
    /// How many of the newest builds to keep (tagged builds are kept too).
    #[arg(long, default_value_t = 3, conflicts_with = "policy")]
    pub keep: usize,
    /// Retention policy (YAML keyed by stream: keep-last-n, keep-tagged,
    /// keep-younger-than); see docs/release.md.
    #[arg(long, value_name = "FILE")]
    pub policy: Option<std::path::PathBuf>,
    /// The stream whose policy applies (default: the config's `stream` variable).
    #[arg(long, requires = "policy")]
    pub stream: Option<String>,
    /// Say what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReleaseMetaOpts {
    /// The stream the build is released to.
    #[arg(long)]
    pub stream: String,
    /// Where `builds/` is served: each location is URL/<build id>/<arch>/<file>.
    #[arg(long, value_name = "URL")]
    pub base_url: String,
    /// The build (default: latest).
    #[arg(long)]
    pub build: Option<String>,
    /// Write here instead of builds/<id>/release.json.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct SignOpts {
    /// The secret key: fingerprint, key ID or user ID.
    #[arg(long, value_name = "KEY")]
    pub gpg_key: String,
    /// The GnuPG home holding the key (default: $GNUPGHOME, else ~/.gnupg).
    #[arg(long, value_name = "DIR")]
    pub gpg_homedir: Option<std::path::PathBuf>,
    /// The image reference clients pull the OCI image by, which its signature
    /// vouches for (default: where `cosa push-container` pushed it).
    #[arg(long, value_name = "REF")]
    pub container_identity: Option<String>,
    /// The build (default: latest).
    #[arg(long)]
    pub build: Option<String>,
    /// Print what was signed as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StreamMetadataOpts {
    /// The stream: its metadata lists the build tagged with this name.
    #[arg(long)]
    pub stream: String,
    /// Where `builds/` is served: each location is URL/<build id>/<arch>/<file>;
    /// the metadata, builds/streams/NAME.json, is then found by coreos-installer
    /// with `--stream-base-url URL/streams/`.
    #[arg(long, value_name = "URL")]
    pub base_url: String,
    /// Write here instead of builds/streams/<stream>.json.
    #[arg(short, long, value_name = "FILE")]
    pub output: Option<std::path::PathBuf>,
}

#[derive(Debug, Args)]
pub struct TagOpts {
    #[command(subcommand)]
    pub action: TagAction,
}

#[derive(Debug, Subcommand)]
pub enum TagAction {
    /// Tag a build (default: latest).
    Add {
        /// The tag (`prune` never removes a tagged build).
        tag: String,
        /// The build to tag (default: latest).
        build: Option<String>,
    },
    /// Remove a tag.
    Delete {
        /// The tag to remove from whichever build has it.
        tag: String,
    },
    /// List tags.
    List,
}
