//! A deterministic, OS-shaped package set for benchmarks.

use crate::Package;

/// The package that every scriptlet's `/bin/sh` comes from.
pub const BASE_PACKAGE: &str = "bench-filesystem";

/// Applets the base package links to busybox; the synthetic scriptlets use only these.
const APPLETS: &[&str] = &[
    "sh", "cat", "chmod", "cp", "echo", "ln", "ls", "mkdir", "rm", "sed", "sort", "touch",
];

/// `n_packages` packages (the first is [`BASE_PACKAGE`]: merged-/usr skeleton plus a
/// static busybox copied from the host's `/bin/busybox` as `/bin/sh`), the others with
/// about `files_per_package` files each. Same arguments, same packages.
///
/// Shape: a few widely required "library" packages (fan-in), chains where a package
/// requires its predecessor, versioned and virtual (`bench-cap-N`) requirements; file
/// sizes mostly small with a long tail up to 1 MiB, text and binary-like content,
/// some symlinks and executables; about a fifth of the packages have a `%post` that
/// writes under `/etc` or `/var`, a few have `%pre` or `%posttrans`.
pub fn synthetic(n_packages: usize, files_per_package: usize, seed: u64) -> Vec<Package> {
    if n_packages == 0 {
        return Vec::new();
    }
    let mut pkgs = vec![base_package()];
    let n_libs = (n_packages / 20).max(1);
    for i in 1..n_packages {
        let mut rng = Rng::new(seed ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let name = package_name(i);
        let version = format!("{}.{}.{}", 1 + rng.below(3), rng.below(20), rng.below(10));
        let mut pkg = Package::new(&name, version, "1")
            .arch(if rng.below(3) == 0 {
                "noarch"
            } else {
                "x86_64"
            })
            .summary(format!("Synthetic benchmark package {i}"))
            .provides(format!("bench-cap-{i}"))
            .dir(format!("/usr/share/bench/{name}"))
            .dir(format!("/usr/lib/bench/{name}"));
        if i <= n_libs {
            pkg = pkg.requires(BASE_PACKAGE);
        } else {
            // Fan-in on the libraries, chains on the predecessor, and a random earlier one.
            let lib = 1 + rng.below(n_libs as u64) as usize;
            pkg = pkg.requires(format!("{} >= 1", package_name(lib)));
            if rng.below(2) == 0 {
                pkg = pkg.requires(package_name(i - 1));
            }
            if rng.below(3) == 0 {
                let other = 1 + rng.below(i as u64 - 1) as usize;
                pkg = pkg.requires(format!("bench-cap-{other}"));
            }
        }
        pkg = add_files(pkg, &mut rng, files_per_package);
        pkg = add_scripts(pkg, &mut rng);
        pkgs.push(pkg);
    }
    pkgs
}

fn package_name(i: usize) -> String {
    format!("bench-{i:03}")
}

fn base_package() -> Package {
    let mut pkg = Package::new(BASE_PACKAGE, "1.0", "1")
        .arch("x86_64")
        .summary("Directory skeleton and /bin/sh for the synthetic package set")
        .provides("/bin/sh")
        .copy("/usr/bin/busybox", "/bin/busybox", 0o755)
        .symlink("/bin", "usr/bin")
        .symlink("/sbin", "usr/sbin")
        .symlink("/lib", "usr/lib");
    for dir in [
        "/etc",
        "/etc/bench.d",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib",
        "/usr/lib/bench",
        "/usr/share",
        "/usr/share/bench",
        "/var",
        "/var/lib",
        "/var/lib/bench",
    ] {
        pkg = pkg.dir(dir);
    }
    for applet in APPLETS {
        pkg = pkg.symlink(format!("/usr/bin/{applet}"), "busybox");
    }
    pkg
}

fn add_files(mut pkg: Package, rng: &mut Rng, count: usize) -> Package {
    let name = pkg.name.clone();
    let tools = 1 + rng.below(2) as usize;
    let mut made = 0;
    for t in 0..tools.min(count) {
        pkg = pkg.exec(
            format!("/usr/bin/{name}-tool{t}"),
            format!("#!/bin/sh\n# {name} tool {t}\necho {name}-tool{t} \"$@\"\n"),
        );
        made += 1;
    }
    if made < count {
        pkg = pkg.file(
            format!("/etc/bench.d/{name}.conf"),
            format!(
                "# {name} configuration\nenabled=true\nlevel={}\n",
                rng.below(10)
            ),
        );
        made += 1;
    }
    let mut n = 0;
    let mut texts: Vec<String> = Vec::new();
    while made < count {
        let subdir = n / 10;
        // About one entry in thirty is a symlink to an earlier text file of the package.
        if !texts.is_empty() && rng.below(30) == 0 {
            let target = &texts[rng.below(texts.len() as u64) as usize];
            pkg = pkg.symlink(
                format!("/usr/share/bench/{name}/d{subdir}/link-{n:04}"),
                format!("../{target}"),
            );
        } else if rng.below(5) == 0 {
            let size = file_size(rng);
            pkg = pkg.file(
                format!("/usr/lib/bench/{name}/d{subdir}/obj-{n:04}.so"),
                binary_content(rng, size),
            );
        } else {
            let size = file_size(rng);
            let rel = format!("d{subdir}/data-{n:04}.txt");
            pkg = pkg.file(
                format!("/usr/share/bench/{name}/{rel}"),
                text_content(rng, &format!("{name} file {n}"), size),
            );
            texts.push(rel);
        }
        n += 1;
        made += 1;
    }
    pkg
}

fn add_scripts(mut pkg: Package, rng: &mut Rng) -> Package {
    let name = pkg.name.clone();
    let version = pkg.version.clone();
    match rng.below(20) {
        0 | 1 => {
            pkg = pkg.post(format!(
                "mkdir -p /etc/bench.d\necho \"{name} {version}\" > /etc/bench.d/{name}.installed"
            ))
        }
        2 => {
            pkg = pkg.post(format!(
                "mkdir -p /var/lib/bench\necho {name} > /var/lib/bench/{name}.stamp"
            ))
        }
        3 => pkg = pkg.post(format!("echo {name} >> /etc/bench-registry")),
        _ => {}
    }
    if rng.below(30) == 0 {
        pkg = pkg.pre(format!("mkdir -p /var/lib/bench/{name}.d"));
    }
    if rng.below(30) == 0 {
        pkg = pkg.posttrans(format!(
            "ls /etc/bench.d | sort > /etc/bench.d/.index-{name}\nchmod 0644 /etc/bench.d/.index-{name}"
        ));
    }
    pkg
}

/// Mostly small files with a long tail: 70% < 2 KiB, 25% < 16 KiB, 4.5% < 128 KiB,
/// 0.5% up to 1 MiB (about 9 KiB on average).
fn file_size(rng: &mut Rng) -> usize {
    let (lo, hi) = match rng.below(1000) {
        0..=699 => (64, 2 << 10),
        700..=949 => (2 << 10, 16 << 10),
        950..=994 => (16 << 10, 128 << 10),
        _ => (256 << 10, 1 << 20),
    };
    lo + rng.below((hi - lo) as u64) as usize
}

/// Compressible text: a header line, then lines of hex words.
fn text_content(rng: &mut Rng, header: &str, size: usize) -> Vec<u8> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = Vec::with_capacity(size + 80);
    out.extend_from_slice(header.as_bytes());
    out.push(b'\n');
    while out.len() < size {
        let mut word = rng.next();
        for k in 0..16 {
            out.push(HEX[(word & 0xf) as usize]);
            word >>= 4;
            if k % 8 == 7 {
                out.push(if rng.below(8) == 0 { b'\n' } else { b' ' });
            }
        }
    }
    out.truncate(size.max(header.len() + 1));
    out
}

/// Incompressible bytes, like stripped machine code.
fn binary_content(rng: &mut Rng, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size + 8);
    out.extend_from_slice(b"\x7fELF");
    while out.len() < size {
        out.extend_from_slice(&rng.next().to_le_bytes());
    }
    out.truncate(size.max(4));
    out
}

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FileEntry;

    #[test]
    fn deterministic_and_shaped() {
        let a = synthetic(40, 50, 7);
        assert_eq!(a, synthetic(40, 50, 7));
        assert_ne!(a, synthetic(40, 50, 8));
        assert_eq!(a.len(), 40);
        assert_eq!(a[0].name, BASE_PACKAGE);
        for pkg in &a[1..] {
            assert_eq!(pkg.files.len(), 50, "{}", pkg.name);
            assert!(!pkg.requires.is_empty());
        }
        assert!(a.iter().any(|p| p.post.is_some()));
        let symlinks = a
            .iter()
            .flat_map(|p| &p.files)
            .filter(|f| matches!(f, FileEntry::Symlink { .. }))
            .count();
        assert!(symlinks > a.len());
    }
}
