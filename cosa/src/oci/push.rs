//! `cosa push-container`: a build's OCI archive to any destination skopeo accepts,
//! recorded in meta.json as `base-oscontainer` (as coreos-assembler does).

use anyhow::{bail, Context, Result};
use fs_err as fs;

use crate::arch::Arch;
use crate::builds::meta::ContainerImage;
use crate::builds::{History, Workdir};
use cmdext::CommandRunExt;

/// What `cosa push-container` is asked for.
pub struct PushOptions {
    /// Build ID (default: the latest).
    pub build: Option<String>,
    /// Destination, as skopeo's `transport:reference`.
    pub dest: String,
}

/// What was pushed.
pub struct Pushed {
    /// The archive's file name in the build directory.
    pub archive: String,
    /// The manifest digest skopeo reports (empty if it reported none).
    pub digest: String,
}

/// Copy the build's archive to `o.dest` and record where it went.
pub fn push(wd: &Workdir, o: &PushOptions) -> Result<Pushed> {
    let history = History::new(wd.builds_dir());
    let id = history.resolve_id(o.build.as_deref())?;
    let arch = Arch::host()?.name();
    let meta = history.load_meta(&id, arch)?;
    let Some(archive) = meta.images.get("ostree").map(|a| a.path.clone()) else {
        bail!("build {id} has no container image; run `cosa build-container` first");
    };
    let src = history.build_dir(&id, arch).join(&archive);
    let digest = skopeo_copy(wd, &src, &o.dest)
        .with_context(|| format!("pushing build {id} to {}", o.dest))?;
    record_push(wd, &history, &id, arch, &o.dest, &digest)?;
    Ok(Pushed { archive, digest })
}

/// `skopeo copy` the archive `src` to `dest`; returns the digest it wrote.
fn skopeo_copy(wd: &Workdir, src: &std::path::Path, dest: &str) -> Result<String> {
    let digestfile = tempfile::NamedTempFile::new_in(wd.tmp_dir())?;
    cmdext::command("skopeo")
        .arg("copy")
        .arg("--digestfile")
        .arg(digestfile.path())
        .arg(format!("oci-archive:{}", src.display()))
        .arg(dest)
        .run()?;
    Ok(fs::read_to_string(digestfile.path())
        .unwrap_or_default()
        .trim()
        .to_string())
}

/// Record the pushed image as the build's `base-oscontainer`.
fn record_push(
    wd: &Workdir,
    history: &History,
    id: &str,
    arch: &str,
    dest: &str,
    digest: &str,
) -> Result<()> {
    // Only the meta.json update needs the lock: a push can take long.
    let _lock = wd.lock("push-container", true)?;
    let mut meta = history.load_meta(id, arch)?;
    let image = dest.strip_prefix("docker://").unwrap_or(dest);
    meta.base_oscontainer = Some(ContainerImage {
        image: image.to_string(),
        digest: (!digest.is_empty()).then(|| digest.to_string()),
    });
    meta.save(&history.build_dir(id, arch).join("meta.json"))
}
