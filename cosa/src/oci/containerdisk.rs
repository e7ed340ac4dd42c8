//! KubeVirt containerDisks: an OCI image whose one layer holds a VM's disk in
//! `/disk/`, readable by the qemu user (107) KubeVirt's launcher runs as. KubeVirt
//! takes the first file in `/disk/`; it reads raw or qcow2.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result};
use oci_spec::image::{
    ConfigBuilder, Descriptor, HistoryBuilder, ImageConfigurationBuilder, MediaType, Os,
    RootFsBuilder,
};

use super::compress::{self, Compression};
use super::encapsulate::write_image;
use super::layout;
use crate::arch::Arch;

/// The uid and gid KubeVirt's virt-launcher runs QEMU as.
pub const QEMU_ID: u32 = 107;

/// What the image says about itself.
pub struct ContainerDisk<'a> {
    /// The qcow2 to wrap, and its name under `/disk/`.
    pub disk: &'a Path,
    pub file_name: &'a str,
    pub arch: Arch,
    /// RFC 3339, the build's time (the image is reproducible from the build).
    pub created: &'a str,
    /// Annotations on the manifest (the build's name, version, commit).
    pub annotations: HashMap<String, String>,
}

/// Write the containerDisk as an `oci-archive` at `dest`.
pub fn write(c: &ContainerDisk, dest: &Path) -> Result<()> {
    let layer = compress::build_layer(Compression::Gzip, |w| {
        w.dir("disk/", 0o555, QEMU_ID, QEMU_ID)?;
        w.file(
            &format!("disk/{}", c.file_name),
            c.disk,
            0o444,
            QEMU_ID,
            QEMU_ID,
        )
    })
    .with_context(|| format!("writing the containerDisk layer of {}", c.disk.display()))?;
    let rootfs = RootFsBuilder::default()
        .typ("layers")
        .diff_ids(vec![format!("sha256:{}", layer.diff_id)])
        .build()?;
    let config = ImageConfigurationBuilder::default()
        .created(c.created.to_string())
        .architecture(c.arch.oci_name())
        .os(Os::Linux)
        .config(
            ConfigBuilder::default()
                .labels(c.annotations.clone())
                .build()?,
        )
        .rootfs(rootfs)
        .history(vec![HistoryBuilder::default()
            .created(c.created.to_string())
            .created_by(format!("cosa: containerDisk of {}", c.file_name))
            .build()?])
        .build()?;
    let desc = Descriptor::new(
        MediaType::ImageLayerGzip,
        layer.data.len() as u64,
        layout::sha256_digest(&layer.digest)?,
    );
    write_image(
        dest,
        vec![layer],
        &config,
        vec![desc],
        c.annotations.clone(),
    )
    .with_context(|| format!("writing the containerDisk {}", dest.display()))?;
    Ok(())
}
