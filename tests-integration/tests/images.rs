//! `cosa osbuild`/`buildextend-*` on the demo stream: formats checked by qemu-img,
//! sgdisk and tar; images booted under QEMU (TCG) with SeaBIOS and OVMF until the
//! guest agent reports ready.

use tests_integration as common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cmdext::CommandRunExt;
use common::vm::{self, Vm};
use common::{DemoBuild, Fixture};
use cosa::kola::protocol::ReadyInfo;
use cosa::kola::qemu::Drive;

fn qemu_img_info(p: &Path, format: Option<&str>) -> serde_json::Value {
    let mut cmd = cmdext::command("qemu-img");
    cmd.args(["info", "--output=json"]);
    if let Some(f) = format {
        cmd.args(["-f", f]);
    }
    let out = cmd.arg(p).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img info {}: {}",
        p.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn sgdisk_ok(dev: &Path) {
    let out = cmdext::command("sgdisk")
        .arg("-v")
        .arg(dev)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && s.contains("No problems found"),
        "sgdisk -v {}: {s}",
        dev.display()
    );
}

/// Boot `disk` (its own qcow2 overlay, so the image is not touched) until
/// the guest agent says `ready`.
fn boot_to_agent(disk: &Path, format: &str, uefi: bool, sector4k: bool) -> ReadyInfo {
    let dir = tempfile::tempdir().unwrap();
    let overlay = vm::overlay(disk, format, dir.path());
    let mut spec = Vm::spec(dir.path(), uefi);
    let drive = Drive::disk(overlay, "qcow2").bootindex(1);
    spec.drives = vec![if sector4k { drive.sector_4k() } else { drive }];
    spec.exit_on_reboot = true;
    let mut vm = Vm::start(dir.path(), &spec);
    vm.wait_ready(Duration::from_secs(300), "the agent's ready", |_| true)
}

#[test]
fn all_platforms_from_one_run_are_valid_and_boot() {
    let b = DemoBuild::new();
    let out = b
        .cosa(&[
            "osbuild", "qemu", "metal", "metal4k", "aws", "azure", "gcp", "--json",
        ])
        .ok();
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(summary["images"].as_array().unwrap().len(), 6, "{out}");
    let meta = b.meta();
    let id = meta["buildid"].as_str().unwrap();
    // The images need the OCI archive first (images.ostree): made on the way.
    assert!(meta["images"]["ostree"]["path"]
        .as_str()
        .unwrap()
        .ends_with(".ociarchive"));
    common::assert_meta_schema_valid(&b.build_dir().join("meta.json"));
    for (p, ext) in [
        ("qemu", "qcow2"),
        ("metal", "raw"),
        ("metal4k", "raw"),
        ("aws", "vmdk"),
        ("azure", "vhd"),
        ("gcp", "tar.gz"),
    ] {
        let path = b.image(p);
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            format!("demo-{id}-{p}.x86_64.{ext}")
        );
        let (sha, size) = cosa::builds::artifact::sha256_file(&path).unwrap();
        assert_eq!(meta["images"][p]["sha256"], sha.as_str());
        assert_eq!(meta["images"][p]["size"], size);
    }

    // Formats, as an independent reader sees them.
    let q = qemu_img_info(&b.image("qemu"), None);
    assert_eq!(q["format"], "qcow2");
    assert_eq!(q["format-specific"]["data"]["compat"], "1.1");
    let st = cmdext::command("qemu-img")
        .arg("check")
        .arg(b.image("qemu"))
        .status()
        .unwrap();
    assert!(st.success(), "qemu-img check");
    let v = qemu_img_info(&b.image("aws"), None);
    assert_eq!(v["format"], "vmdk");
    assert_eq!(
        v["format-specific"]["data"]["create-type"],
        "streamOptimized"
    );
    let head = std::fs::read(b.image("aws")).unwrap();
    assert!(String::from_utf8_lossy(&head[..head.len().min(65536)])
        .contains("ddb.adapterType = \"lsilogic\""));
    // A fixed VHD probes as raw (it is raw data plus a footer): read it as vpc.
    let a = qemu_img_info(&b.image("azure"), Some("vpc"));
    assert_eq!(a["format"], "vpc");
    let vsize = a["virtual-size"].as_u64().unwrap();
    assert_eq!(
        vsize % (1024 * 1024),
        0,
        "Azure virtual size must be a whole MiB"
    );
    assert_eq!(
        std::fs::metadata(b.image("azure")).unwrap().len(),
        vsize + 512,
        "a fixed VHD is the disk plus a footer"
    );
    let list = cmdext::command("tar")
        .arg("-tzf")
        .arg(b.image("gcp"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&list.stdout), "disk.raw\n");
    let hdr = cmdext::command("sh")
        .arg("-c")
        .arg(format!(
            "gzip -dc '{}' | head -c 512",
            b.image("gcp").display()
        ))
        .output()
        .unwrap();
    assert_eq!(
        &hdr.stdout[257..265],
        b"ustar  \0",
        "GCP tarball must be oldgnu format"
    );
    sgdisk_ok(&b.image("metal"));
    // metal4k's table is laid out for 4096-byte sectors: read it through such a loop device.
    let dev = cmdext::command("losetup")
        .args(["--find", "--show", "--read-only", "--sector-size", "4096"])
        .arg(b.image("metal4k"))
        .output()
        .unwrap();
    assert!(
        dev.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&dev.stderr)
    );
    let dev = String::from_utf8(dev.stdout).unwrap().trim().to_string();
    let r = std::panic::catch_unwind(|| sgdisk_ok(Path::new(&dev)));
    cmdext::command("losetup")
        .args(["-d", &dev])
        .status()
        .unwrap();
    r.unwrap();

    // Already built: skipped unless --force.
    let out = b.cosa(&["buildextend-qemu"]).ok();
    assert!(out.contains("already built"), "{out}");

    // Boots: qemu with SeaBIOS and with OVMF, metal4k from a 4K-sector disk with OVMF.
    // Two at a time: TCG guests on a 2-core machine.
    let boots = [
        ("qemu", false, false),
        ("qemu", true, false),
        ("metal4k", true, true),
    ];
    let mut handles = Vec::new();
    for chunk in boots.chunks(2) {
        let started: Vec<_> = chunk
            .iter()
            .map(|&(p, uefi, k4)| {
                let (img, fmt) = (b.image(p), if p == "qemu" { "qcow2" } else { "raw" });
                std::thread::spawn(move || (p, uefi, boot_to_agent(&img, fmt, uefi, k4)))
            })
            .collect();
        for h in started {
            handles.push(h.join().unwrap());
        }
    }
    for (p, uefi, ready) in handles {
        let cmdline = ready.cmdline.as_str();
        let id = if p == "metal4k" { "metal" } else { p };
        assert!(
            cmdline.contains(&format!("ignition.platform.id={id}")),
            "{p} uefi={uefi}: {cmdline}"
        );
        assert!(cmdline.contains("console=ttyS0,115200n8"), "{p}: {cmdline}");
        assert!(
            cmdline.contains("mitigations=auto"),
            "image.yaml extra-kargs missing: {cmdline}"
        );
        assert!(cmdline.contains("ostree=/ostree/boot."), "{cmdline}");
    }
}

/// The disk of an OVA, extracted into `dir`: the members in OVF's order (descriptor,
/// manifest, disk), the manifest's digests right, the descriptor naming the disk
/// and its size, the disk a streamOptimized VMDK.
fn ova_disk(ova: &Path, dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let list = cmdext::command("tar").arg("-tf").arg(ova).output().unwrap();
    assert!(list.status.success());
    let members: Vec<String> = String::from_utf8(list.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(
        members,
        ["demo.ovf", "demo.mf", "disk.vmdk"],
        "{}",
        ova.display()
    );
    let st = cmdext::command("tar")
        .arg("-xf")
        .arg(ova)
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    // The manifest: `SHA256(FILE)= DIGEST` per file, as ovftool writes and checks it.
    let mf = std::fs::read_to_string(dir.join("demo.mf")).unwrap();
    for name in ["demo.ovf", "disk.vmdk"] {
        let (sha, _) = cosa::builds::artifact::sha256_file(&dir.join(name)).unwrap();
        assert!(mf.contains(&format!("SHA256({name})= {sha}\n")), "{mf}");
    }
    let ovf = std::fs::read_to_string(dir.join("demo.ovf")).unwrap();
    let vmdk = dir.join("disk.vmdk");
    let size = std::fs::metadata(&vmdk).unwrap().len();
    assert!(
        ovf.contains(&format!(r#"ovf:href="disk.vmdk" ovf:size="{size}""#)),
        "{ovf}"
    );
    let info = qemu_img_info(&vmdk, None);
    assert_eq!(
        info["format-specific"]["data"]["create-type"],
        "streamOptimized"
    );
    assert!(
        ovf.contains(&format!(r#"ovf:capacity="{}""#, info["virtual-size"])),
        "{ovf}"
    );
    vmdk
}

/// The disk of a KubeVirt containerDisk, as skopeo reads the archive: one layer
/// holding one qcow2 in `/disk/`, owned by 107:107.
fn containerdisk_disk(archive: &Path, dir: &Path) -> PathBuf {
    let src = format!("oci-archive:{}", archive.display());
    let out = cmdext::command("skopeo")
        .args(["inspect", &src])
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo inspect: {out:?}");
    let inspect: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(inspect["Architecture"], "amd64");
    assert_eq!(inspect["Layers"].as_array().unwrap().len(), 1, "{inspect}");
    let copied = dir.join("image");
    std::fs::create_dir_all(&copied).unwrap();
    let out = cmdext::command("skopeo")
        .args(["copy", "--quiet", &src])
        .arg(format!("dir:{}", copied.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {out:?}");
    let layer = inspect["Layers"][0].as_str().unwrap();
    let blob = copied.join(layer.trim_start_matches("sha256:"));
    let list = cmdext::command("tar")
        .args(["--numeric-owner", "-tvzf"])
        .arg(&blob)
        .output()
        .unwrap();
    assert!(list.status.success());
    let list = String::from_utf8(list.stdout).unwrap();
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    assert!(lines.iter().all(|l| l.contains(" 107/107 ")), "{list}");
    let file = lines[1].split_whitespace().last().unwrap();
    assert!(
        file.starts_with("disk/") && file.ends_with(".qcow2"),
        "{list}"
    );
    let st = cmdext::command("tar")
        .arg("-xzf")
        .arg(&blob)
        .arg("-C")
        .arg(dir)
        .status()
        .unwrap();
    assert!(st.success());
    dir.join(file)
}

/// The platforms that differ from the others only in format and kernel arguments,
/// from one run of the table: each in its cloud's import format as qemu-img reads
/// it, its partition table sound, and its boot entries carrying its Ignition
/// platform id and platforms.yaml's console (read from the image, not booted: a
/// cloud platform id would send Ignition to that cloud's metadata service).
#[test]
fn cloud_platforms_from_the_table() {
    let b = DemoBuild::new();
    let platforms = [
        ("openstack", "qcow2"),
        ("ibmcloud", "qcow2"),
        ("nutanix", "qcow2"),
        ("proxmoxve", "qcow2"),
        ("exoscale", "qcow2"),
        ("oraclecloud", "qcow2"),
        ("digitalocean", "qcow2"),
        ("hetzner", "raw"),
        ("applehv", "raw"),
        ("hyperv", "vhdx"),
        ("vmware", "ova"),
        ("virtualbox", "ova"),
        ("kubevirt", "ociarchive"),
    ];
    let mut args = vec!["osbuild"];
    args.extend(platforms.iter().map(|(p, _)| *p));
    args.push("--json");
    let out = b.cosa(&args).ok();
    let summary: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        summary["images"].as_array().unwrap().len(),
        platforms.len(),
        "{out}"
    );
    common::assert_meta_schema_valid(&b.build_dir().join("meta.json"));
    let id = b.meta()["buildid"].as_str().unwrap().to_string();
    let scratch = tempfile::tempdir().unwrap();
    for (p, format) in platforms {
        let path = b.image(p);
        assert_eq!(
            path.file_name().unwrap().to_str().unwrap(),
            format!("demo-{id}-{p}.x86_64.{format}")
        );
        // The disk inside a package, read by the package format's own reader.
        let path = match format {
            "ova" => ova_disk(&path, &scratch.path().join(format!("{p}-ova"))),
            "ociarchive" => containerdisk_disk(&path, &scratch.path().join(format!("{p}-oci"))),
            _ => path,
        };
        let disk_format = match format {
            "ova" => "vmdk",
            "ociarchive" => "qcow2",
            f => f,
        };
        assert_eq!(qemu_img_info(&path, None)["format"], disk_format, "{p}");
        if format == "raw" {
            sgdisk_ok(&path);
        } else {
            let st = cmdext::command("qemu-img")
                .arg("check")
                .arg(&path)
                .status()
                .unwrap();
            assert!(st.success(), "qemu-img check {}", path.display());
        }
        let boot = cosa::kola::kernelboot::extract(&path, &scratch.path().join(p)).unwrap();
        assert!(
            boot.options.contains(&format!("ignition.platform.id={p}")),
            "{p}: {}",
            boot.options
        );
        let console = if p == "applehv" {
            "console=hvc0"
        } else {
            "console=ttyS0,115200n8"
        };
        assert!(boot.options.contains(console), "{p}: {}", boot.options);
        std::fs::remove_dir_all(scratch.path().join(p)).unwrap();
    }
    // A build's release metadata places them like the first six.
    b.cosa(&[
        "generate-release-meta",
        "--stream",
        "testing",
        "--base-url",
        "https://builds.cosa.invalid/demo",
    ])
    .ok();
    let release: serde_json::Value = serde_json::from_slice(
        &std::fs::read(b.workdir().join(format!("builds/{id}/release.json"))).unwrap(),
    )
    .unwrap();
    let media = &release["architectures"]["x86_64"]["media"];
    for (p, format) in platforms {
        let disk = &media[p]["artifacts"][format]["disk"];
        assert!(
            disk["location"]
                .as_str()
                .unwrap()
                .ends_with(&format!("-{p}.x86_64.{format}")),
            "{p}: {disk}"
        );
    }
}

#[test]
fn compress_and_decompress_round_trip() {
    let b = DemoBuild::new();
    b.cosa(&["osbuild", "qemu", "hyperv", "digitalocean"]).ok();
    let before = b.meta()["images"].clone();
    // --compressor for the build; image.yaml's platform-compressor keeps
    // DigitalOcean's gzip (its import takes no xz) and Hyper-V's zip.
    b.cosa(&["compress", "--compressor", "zstd"]).ok();
    let after = b.meta()["images"].clone();
    for (p, ext) in [
        ("qemu", ".qcow2.zst"),
        ("hyperv", ".vhdx.zip"),
        ("digitalocean", ".qcow2.gz"),
    ] {
        let c = &after[p];
        assert!(c["path"].as_str().unwrap().ends_with(ext), "{c}");
        assert_eq!(c["uncompressed-sha256"], before[p]["sha256"]);
        assert_eq!(c["uncompressed-size"], before[p]["size"]);
        assert!(!b
            .build_dir()
            .join(before[p]["path"].as_str().unwrap())
            .exists());
    }
    // The zip holds the one disk, by its own name, at the top.
    let zip = b
        .build_dir()
        .join(after["hyperv"]["path"].as_str().unwrap());
    let list = cmdext::command("unzip")
        .arg("-Z1")
        .arg(&zip)
        .run_get_string()
        .unwrap();
    assert_eq!(
        list.trim(),
        before["hyperv"]["path"].as_str().unwrap(),
        "{list}"
    );
    b.cosa(&["decompress"]).ok();
    assert_eq!(b.meta()["images"], before);
    for p in ["qemu", "hyperv", "digitalocean"] {
        assert!(b.image(p).exists(), "{p}");
    }
}

#[test]
fn bad_input_is_refused_and_builds_stay_clean() {
    // No build yet.
    let f = Fixture::new();
    let err = f.cosa(&["buildextend-qemu"]).err();
    assert!(err.contains("no builds yet"), "{err}");
    // Unknown platform: refused before any work.
    f.cosa(&["build"]).ok();
    let err = f.cosa(&["osbuild", "qemu", "vsphere"]).err();
    assert!(
        err.contains("invalid value 'vsphere'") && err.contains("metal4k, aws"),
        "{err}"
    );
    // A commit without a kernel.
    std::fs::write(
        f.config().join("manifests/base.yaml"),
        "packages: [filesystem, shell, mkinitramfs]\n",
    )
    .unwrap();
    f.cosa(&["build"]).ok();
    let err = f.cosa(&["buildextend-metal"]).err();
    assert!(err.contains("has no kernel"), "{err}");
    let meta = f.latest_meta();
    assert!(meta.get("images").is_none(), "{meta}");
    let dir = f.workdir().join("builds/latest/x86_64");
    let files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files
            .iter()
            .all(|f| !f.ends_with(".raw") && !f.ends_with(".qcow2")),
        "{files:?}"
    );
}

/// `cosa generate-release-meta` and `cosa stream-metadata`: every location the
/// stream metadata lists, fetched over HTTP from `builds/` served at the base URL,
/// has the sha256 the metadata gives; compressed images carry their uncompressed
/// digest; an untagged stream is a clear error. The real coreos-installer finds
/// and downloads the metal image, the ISO and the PXE files from that metadata.
#[test]
fn stream_metadata_locates_every_image() {
    let b = DemoBuild::new();
    b.cosa(&["osbuild", "qemu", "metal", "metal4k"]).ok();
    b.cosa(&["buildextend-live"]).ok();
    // xz: coreos-installer's `download --decompress` knows xz and gzip, not zstd.
    b.cosa(&["compress", "--compressor", "xz"]).ok();
    let http = common::Http::serve(&b.workdir().join("builds"));
    let base = format!("http://127.0.0.1:{}", http.1);

    let err = b
        .cosa(&["stream-metadata", "--stream", "stable", "--base-url", &base])
        .err();
    assert!(err.contains("no build is tagged stable"), "{err}");

    let id = b.meta()["buildid"].as_str().unwrap().to_string();
    b.cosa(&[
        "generate-release-meta",
        "--stream",
        "stable",
        "--base-url",
        &base,
    ])
    .ok();
    let release: serde_json::Value = serde_json::from_slice(
        &std::fs::read(b.workdir().join(format!("builds/{id}/release.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(release["release"], id.as_str());

    b.cosa(&["tag", "add", "stable"]).ok();
    b.cosa(&["stream-metadata", "--stream", "stable", "--base-url", &base])
        .ok();
    let stream: serde_json::Value = serde_json::from_slice(
        &std::fs::read(b.workdir().join("builds/streams/stable.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(stream["stream"], "stable");
    let artifacts = &stream["architectures"]["x86_64"]["artifacts"];
    let qemu = &artifacts["qemu"];
    assert_eq!(qemu["release"], id.as_str());
    let disk = &qemu["formats"]["qcow2.xz"]["disk"];
    assert!(disk["uncompressed-sha256"].is_string(), "{disk}");
    assert!(artifacts["metal"]["formats"]["4k.raw.xz"]["disk"].is_object());

    let scratch = tempfile::tempdir().unwrap();
    let mut n = 0;
    for (platform, a) in artifacts.as_object().unwrap() {
        for (format, kinds) in a["formats"].as_object().unwrap() {
            for (kind, art) in kinds.as_object().unwrap() {
                let location = art["location"].as_str().unwrap();
                assert!(
                    location.starts_with(&format!("{base}/{id}/x86_64/")),
                    "{location}"
                );
                let got = scratch.path().join(format!("{platform}-{format}-{kind}"));
                cmdext::command("curl")
                    .args(["-sSf", "-o"])
                    .arg(&got)
                    .arg(location)
                    .run()
                    .unwrap_or_else(|e| panic!("fetching {location}: {e}"));
                let (sha, _) = cosa::builds::artifact::sha256_file(&got).unwrap();
                assert_eq!(art["sha256"], sha.as_str(), "{platform} {format} {kind}");
                n += 1;
            }
        }
    }
    // qemu, metal, metal4k, the ISO, and the PXE kernel, initramfs and rootfs.
    assert_eq!(n, 7, "{stream:#}");

    // coreos-installer reads <stream base URL>/<stream>.json, joined as URLs
    // are (the base needs its trailing slash).
    // Unsigned: the signature URLs do not resolve and coreos-installer --insecure
    // downloads, checking each sha256.
    let ci_base = format!("{base}/streams/");
    coreos_installer_downloads(&ci_base, artifacts, scratch.path());

    // Signed: each signature URL resolves to a signature gpgv accepts with the
    // stream's key, and coreos-installer, which trusts only the keys built into
    // it (Fedora's), fetches it and refuses the image, even with --insecure.
    let keys = tempfile::tempdir().unwrap();
    let (home, uid) = common::gpg_home(keys.path(), "stream");
    let h = home.to_str().unwrap();
    let id_ref = "localhost/demo:stable";
    b.cosa(&[
        "sign",
        "--gpg-homedir",
        h,
        "--gpg-key",
        &uid,
        "--container-identity",
        id_ref,
    ])
    .ok();
    b.cosa(&["stream-metadata", "--stream", "stable", "--base-url", &base])
        .ok();
    let pubkey = keys.path().join("stream.gpg");
    common::gpg_export(&home, &pubkey);
    let iso = &artifacts["metal"]["formats"]["iso"]["disk"];
    let sig = scratch.path().join("iso.sig");
    let got = scratch.path().join("metal-iso-disk");
    cmdext::command("curl")
        .args(["-sSf", "-o"])
        .arg(&sig)
        .arg(iso["signature"].as_str().unwrap())
        .run()
        .unwrap();
    cmdext::command("gpgv")
        .arg("--keyring")
        .arg(&pubkey)
        .arg(&sig)
        .arg(&got)
        .env("GNUPGHOME", keys.path())
        .run()
        .unwrap();
    let dir = scratch.path().join("ci-signed");
    std::fs::create_dir(&dir).unwrap();
    let out = cmdext::command(common::coreos_installer())
        .args([
            "download",
            "--stream",
            "stable",
            "--format",
            "iso",
            "--insecure",
        ])
        .args(["--stream-base-url", &ci_base, "-C"])
        .arg(&dir)
        .run_unchecked()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("GPG verification failure"), "{err}");
}

/// `coreos-installer list-stream` and `download` against our stream metadata on
/// loopback, before the build is signed (`--insecure`: no signature).
fn coreos_installer_downloads(base: &str, artifacts: &serde_json::Value, scratch: &Path) {
    let ci = common::coreos_installer();
    let list = cmdext::command(&ci)
        .args([
            "list-stream",
            "--stream",
            "stable",
            "--stream-base-url",
            base,
        ])
        .run_get_string()
        .unwrap();
    assert!(list.contains("metal") && list.contains("iso"), "{list}");
    let metal = &artifacts["metal"]["formats"];
    for (format, decompress) in [
        ("raw.xz", false),
        ("raw.xz", true),
        ("iso", false),
        ("pxe", false),
    ] {
        let dir = scratch.join(format!("ci-{format}-{decompress}"));
        std::fs::create_dir(&dir).unwrap();
        let mut cmd = cmdext::command(&ci);
        cmd.args(["download", "--stream", "stable", "--platform", "metal"])
            .args(["--format", format, "--insecure", "--stream-base-url", base])
            .arg("-C")
            .arg(&dir);
        if decompress {
            cmd.arg("--decompress");
        }
        let out = cmd
            .run_get_string()
            .unwrap_or_else(|e| panic!("coreos-installer download -f {format}: {e}"));
        let files: Vec<&str> = out.lines().filter(|l| l.starts_with('/')).collect();
        let kinds = metal[format].as_object().unwrap();
        assert_eq!(files.len(), kinds.len(), "{out}");
        for (kind, art) in kinds {
            let name = art["location"]
                .as_str()
                .unwrap()
                .rsplit('/')
                .next()
                .unwrap();
            let name = if decompress {
                name.trim_end_matches(".xz")
            } else {
                name
            };
            let path = dir.join(name);
            let (sha, _) = cosa::builds::artifact::sha256_file(&path)
                .unwrap_or_else(|e| panic!("{format} {kind}: {e}\n{out}"));
            let want = if decompress {
                &art["uncompressed-sha256"]
            } else {
                &art["sha256"]
            };
            assert_eq!(want, sha.as_str(), "coreos-installer's {format} {kind}");
        }
    }
}
