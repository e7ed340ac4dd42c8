//! Running code from packages and configs against the tree being composed:
//! bubblewrap rooted at the tree (no network, no host filesystem, no capabilities),
//! through a `rofiles-fuse --copyup` view so that an in-place write to a file
//! hardlinked from the package cache copies it first instead of corrupting the cache.
//! A step that only reads the tree (the initramfs generator) gets it bound
//! read-only instead, without FUSE in the way of its reads.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use cmdext::CommandRunExt;

const PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// A host path bound into the sandbox at a path inside it.
pub enum Bind<'a> {
    Ro(&'a Path, &'a str),
    Rw(&'a Path, &'a str),
}

/// The tree, mounted through rofiles-fuse for as long as this lives.
pub struct ProtectedTree {
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl ProtectedTree {
    pub fn mount(tree: &Path, scratch: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rofiles-")
            .tempdir_in(scratch)
            .with_context(|| format!("creating a mountpoint in {}", scratch.display()))?;
        let mountpoint = dir.path().join("root");
        fs_err::create_dir(&mountpoint)?;
        cmdext::command("rofiles-fuse")
            .arg("--copyup")
            .arg(tree)
            .arg(&mountpoint)
            .run()
            .with_context(|| format!("mounting {} through rofiles-fuse", tree.display()))?;
        // rofiles-fuse daemonizes before FUSE is opened, so a missing /dev/fuse
        // (a container run without `--device /dev/fuse`) still exits 0 and leaves
        // an empty directory: check that a filesystem is mounted there.
        if !is_mountpoint(&mountpoint)? {
            anyhow::bail!(
                "mounting {} through rofiles-fuse: nothing is mounted at {} \
                 (is /dev/fuse available? in a container, pass --device /dev/fuse)",
                tree.display(),
                mountpoint.display()
            );
        }
        Ok(ProtectedTree {
            mountpoint,
            _dir: dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// Run `argv` inside the sandbox, with host paths bound in (below /run or /tmp).
    pub fn run(&self, argv: &[String], binds: &[Bind], env: &[(&str, &str)]) -> Result<()> {
        bwrap(Bind::Rw(&self.mountpoint, "/"), argv, binds, env)
    }
}

/// Whether `path` is the root of a filesystem other than its parent's.
fn is_mountpoint(path: &Path) -> Result<bool> {
    use std::os::unix::fs::MetadataExt;
    let parent = path.parent().unwrap_or(path);
    let dev = |p: &Path| -> Result<u64> { Ok(fs_err::metadata(p)?.dev()) };
    // The daemon may still be setting up the mount when the parent returns.
    for _ in 0..50 {
        if dev(path)? != dev(parent)? {
            return Ok(true);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    Ok(false)
}

/// Run `argv` in the same sandbox as [`ProtectedTree::run`], but with `tree` bound
/// read-only at `/` (a bind mount, not FUSE): for steps that only read the tree and
/// write their output to a bound directory.
pub fn run_read_only(
    tree: &Path,
    argv: &[String],
    binds: &[Bind],
    env: &[(&str, &str)],
) -> Result<()> {
    bwrap(Bind::Ro(tree, "/"), argv, binds, env)
}

/// bwrap with `root` at `/`, fresh /proc, /dev, /tmp and /run over it, then `binds`.
fn bwrap(root: Bind, argv: &[String], binds: &[Bind], env: &[(&str, &str)]) -> Result<()> {
    let mut cmd = cmdext::command("bwrap");
    let bind = |cmd: &mut std::process::Command, b: &Bind| {
        let (opt, host, inside) = match b {
            Bind::Ro(h, i) => ("--ro-bind", h, i),
            Bind::Rw(h, i) => ("--bind", h, i),
        };
        cmd.arg(opt).arg(host).arg(inside);
    };
    bind(&mut cmd, &root);
    cmd.args([
        "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/run",
    ]);
    for b in binds {
        bind(&mut cmd, b);
    }
    // Everything but the user namespace: the FUSE view is only reachable as the real root.
    cmd.args([
        "--unshare-net",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-uts",
        "--unshare-cgroup-try",
    ]);
    cmd.args([
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--chdir",
        "/",
    ]);
    cmd.args([
        "--clearenv",
        "--setenv",
        "PATH",
        PATH,
        "--setenv",
        "HOME",
        "/root",
        "--setenv",
        "LANG",
        "C.UTF-8",
    ]);
    for (k, v) in env {
        cmd.args(["--setenv", k, v]);
    }
    cmd.arg("--").args(argv);
    cmd.run()
}

impl Drop for ProtectedTree {
    fn drop(&mut self) {
        // Lazy unmount: a straggling process in the tree must not keep the mount alive.
        let r = cmdext::command("umount")
            .arg("-l")
            .arg(&self.mountpoint)
            .run();
        if let Err(e) = r {
            tracing::warn!("unmounting {}: {e:#}", self.mountpoint.display());
        }
    }
}

/// Unmount what an interrupted compose left mounted below `dir` (deepest first).
pub fn unmount_leftovers(dir: &Path) -> Result<()> {
    let info =
        fs_err::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|m| m.starts_with(dir))
        .collect();
    mounts.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for m in mounts {
        tracing::info!("unmounting leftover {}", m.display());
        cmdext::command("umount").arg("-l").arg(&m).run()?;
    }
    Ok(())
}

/// Run a script body with interpreter `prog` in the sandbox, as rpm runs scriptlets
/// (`prog… SCRIPT ARG`). `what` names the script in errors.
pub fn run_script(
    tree: &ProtectedTree,
    what: &str,
    prog: &[String],
    body: &str,
    arg: Option<&str>,
    env: &[(&str, &str)],
) -> Result<()> {
    let mut f = tempfile::NamedTempFile::new()?;
    std::io::Write::write_all(&mut f, body.as_bytes())?;
    let mut argv: Vec<String> = prog.to_vec();
    argv.push("/run/cosa-script".into());
    if let Some(a) = arg {
        argv.push(a.into());
    }
    tree.run(&argv, &[Bind::Ro(f.path(), "/run/cosa-script")], env)
        .with_context(|| format!("{what} failed"))
}
