//! OVA packages (the vmware and virtualbox platforms): an OVF 1.0 descriptor, a
//! SHA256 manifest and the disk as a streamOptimized VMDK, in a ustar archive in
//! that order (the order OVF requires: descriptor first, then the manifest, then
//! the files the descriptor references).

use std::path::Path;

use anyhow::{Context, Result};
use cmdext::{command, CommandRunExt};
use fs_err as fs;
use serde::Serialize;

use crate::builds::artifact::sha256_file;
use crate::config::image::ImageConfig;
use crate::platform::OvaFlavor;

/// The disk's name inside the OVA.
const DISK_FILE: &str = "disk.vmdk";

/// The build an OVA describes.
pub struct OvaBuild<'a> {
    /// The stream's name (the product) and the build's version.
    pub name: &'a str,
    pub version: &'a str,
    pub image: &'a ImageConfig,
    /// The archive members' mtime: the build's timestamp.
    pub mtime: u64,
}

/// What the descriptor template is rendered from.
#[derive(Debug, Serialize)]
struct Descriptor<'a> {
    platform: &'a str,
    vmware: bool,
    product: &'a str,
    version: &'a str,
    vm_name: String,
    disk_file: &'a str,
    disk_file_size: u64,
    capacity: u64,
    network: &'a str,
    os_type: String,
    system_type: String,
    secure_boot: bool,
    cpus: u32,
    memory_mib: u32,
    controller: &'a str,
    controller_type: u32,
    controller_subtype: &'a str,
    nic: &'a str,
}

fn descriptor(
    flavor: OvaFlavor,
    b: &OvaBuild,
    capacity: u64,
    disk_file_size: u64,
) -> Result<String> {
    let vmware = flavor == OvaFlavor::Vmware;
    let d = Descriptor {
        platform: if vmware { "vmware" } else { "virtualbox" },
        vmware,
        product: b.name,
        version: b.version,
        vm_name: format!("{}-{}", b.name, b.version),
        disk_file: DISK_FILE,
        disk_file_size,
        capacity,
        network: if vmware { "VM Network" } else { "NAT" },
        os_type: match flavor {
            OvaFlavor::Vmware => b
                .image
                .vmware_os_type
                .clone()
                .unwrap_or_else(|| "other5xLinux64Guest".into()),
            OvaFlavor::Virtualbox => "Linux26_64".into(),
        },
        system_type: match flavor {
            OvaFlavor::Vmware => format!("vmx-{}", b.image.vmware_hw_version.unwrap_or(13)),
            OvaFlavor::Virtualbox => "virtualbox-2.2".into(),
        },
        secure_boot: b.image.vmware_secure_boot.unwrap_or(false),
        cpus: 2,
        memory_mib: 4096,
        // VMware's paravirtual SCSI and vmxnet3; VirtualBox's AHCI (CIM type 20,
        // "other storage") and its Intel PRO/1000 MT.
        controller: if vmware { "SCSI" } else { "SATA" },
        controller_type: if vmware { 6 } else { 20 },
        controller_subtype: if vmware { "VirtualSCSI" } else { "AHCI" },
        nic: if vmware { "VmxNet3" } else { "E1000" },
    };
    let mut t = tera::Tera::new();
    t.autoescape_on(vec!["ovf.xml"]);
    t.add_raw_template("ovf.xml", include_str!("templates/ovf.xml"))
        .context("parsing the OVF template")?;
    let ctx = tera::Context::from_serialize(&d).context("OVF context")?;
    t.render("ovf.xml", &ctx)
        .context("rendering the OVF descriptor")
}

/// A member's header: plain ustar, root-owned, the build's time.
fn header(size: u64, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_size(size);
    h.set_mtime(mtime);
    h
}

/// Package the raw disk `raw` as an OVA at `out` (scratch files beside `out`).
pub fn write(flavor: OvaFlavor, b: &OvaBuild, raw: &Path, out: &Path) -> Result<()> {
    let capacity = fs::metadata(raw)?.len();
    let vmdk = out.with_extension("vmdk.tmp");
    command("qemu-img")
        .args(["convert", "-f", "raw", "-O", "vmdk", "-o"])
        .arg("adapter_type=lsilogic,subformat=streamOptimized,compat6")
        .arg(raw)
        .arg(&vmdk)
        .run()
        .with_context(|| format!("converting {} to a streamOptimized VMDK", raw.display()))?;
    let result = (|| -> Result<()> {
        let (disk_sha, disk_size) = sha256_file(&vmdk)?;
        let ovf = descriptor(flavor, b, capacity, disk_size)?;
        let ovf_name = format!("{}.ovf", b.name);
        let mf_name = format!("{}.mf", b.name);
        let ovf_sha = {
            use sha2::Digest;
            hex::encode(sha2::Sha256::digest(ovf.as_bytes()))
        };
        let mf = format!("SHA256({ovf_name})= {ovf_sha}\nSHA256({DISK_FILE})= {disk_sha}\n");
        let mut tar = tar::Builder::new(fs::File::create(out)?);
        for (name, data) in [(&ovf_name, ovf.as_bytes()), (&mf_name, mf.as_bytes())] {
            let mut h = header(data.len() as u64, b.mtime);
            tar.append_data(&mut h, name, data)?;
        }
        let mut h = header(disk_size, b.mtime);
        tar.append_data(&mut h, DISK_FILE, fs::File::open(&vmdk)?)?;
        tar.into_inner()?.sync_all()?;
        Ok(())
    })()
    .with_context(|| format!("writing the OVA {}", out.display()));
    let _ = fs::remove_file(&vmdk);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(img: &ImageConfig) -> OvaBuild<'_> {
        OvaBuild {
            name: "demo",
            version: "1.2<3>",
            image: img,
            mtime: 0,
        }
    }

    #[test]
    fn descriptors_parse_and_carry_the_settings() {
        let mut img = ImageConfig::default();
        let v = descriptor(OvaFlavor::Vmware, &build(&img), 1 << 30, 1234).unwrap();
        // Well-formed XML, the version escaped.
        let mut r = quick_xml::Reader::from_str(&v);
        loop {
            match r.read_event().unwrap() {
                quick_xml::events::Event::Eof => break,
                _ => continue,
            }
        }
        assert!(v.contains("<Version>1.2&lt;3&gt;</Version>"), "{v}");
        assert!(v.contains(r#"ovf:capacity="1073741824""#));
        assert!(v.contains(r#"ovf:size="1234""#));
        assert!(v.contains(r#"vmw:osType="other5xLinux64Guest""#));
        assert!(v.contains("<vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>"));
        assert!(v.contains(r#"vmw:key="bootOptions.efiSecureBootEnabled" vmw:value="false""#));
        assert!(!v.contains("vbox:OSType"));

        img.vmware_os_type = Some("fedora64Guest".into());
        img.vmware_hw_version = Some(17);
        img.vmware_secure_boot = Some(true);
        let v = descriptor(OvaFlavor::Vmware, &build(&img), 1 << 30, 1).unwrap();
        assert!(v.contains(r#"vmw:osType="fedora64Guest""#));
        assert!(v.contains(">vmx-17<"));
        assert!(v.contains(r#"vmw:value="true""#));

        let vb = descriptor(OvaFlavor::Virtualbox, &build(&img), 1 << 30, 1).unwrap();
        assert!(vb.contains(">virtualbox-2.2<"));
        assert!(vb.contains(r#"<vbox:OSType ovf:required="false">Linux26_64</vbox:OSType>"#));
        assert!(vb.contains("<rasd:ResourceSubType>AHCI</rasd:ResourceSubType>"));
        assert!(
            !vb.contains("vmw:Config") && !vb.contains("vmw:osType"),
            "{vb}"
        );
    }
}
