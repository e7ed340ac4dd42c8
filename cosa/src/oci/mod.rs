//! OCI images in the ostree-native container format: `encapsulate` turns a build's
//! commit into a chunked, reproducible OCI archive; `import` turns an image derived
//! from one back into a commit.
//!
//! The layout is the one ostree-ext (bootc) reads: the first layer holds the commit,
//! dirtree and dirmeta objects under `sysroot/ostree/repo/objects/` plus the tree's
//! directories; every further layer holds content objects (`.file`, each preceded by
//! its `.file-xattrs-link`) and the tree's paths as hardlinks to them. The label
//! `ostree.final-diffid` names the last layer that belongs to the commit; layers after
//! it are a derived image's.

pub mod archive;
mod chunking;
mod compress;
pub mod containerdisk;
pub use compress::Compression;
pub mod encapsulate;
pub mod import;
mod layer;
mod layout;
pub use layout::archive_manifest;
pub mod push;
mod tree;

/// Image labels, as ostree-ext and bootc spell them.
pub mod labels {
    pub const COMMIT: &str = "ostree.commit";
    pub const BOOTABLE: &str = "ostree.bootable";
    pub const LINUX: &str = "ostree.linux";
    pub const BOOTC: &str = "containers.bootc";
    pub const FINAL_DIFFID: &str = "ostree.final-diffid";
    pub const VERSION: &str = "org.opencontainers.image.version";
    pub const INPUTHASH: &str = "rpmostree.inputhash";
    /// Layer annotation: the packages whose files a layer holds (comma-separated).
    pub const COMPONENTS: &str = "ostree.components";
}
