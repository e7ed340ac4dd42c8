//! Packing a tree's content objects into layers by the package that owns them, so
//! that a one-package update changes few layers.
//!
//! Ownership comes from the tree's own rpmdb (exact, and right for imported builds
//! too). Every package gets a layer of its own while there is room; past that, the
//! heaviest packages (size × how often they changed in this workdir's history) keep
//! their own layers and the rest share buckets chosen by a hash of the package name,
//! which stays put when versions, sizes or the set of other packages change. Files no
//! package owns go in an "unpackaged" layer, the rpmdb (which changes with any
//! package) in a layer of its own.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};
use fs_err as fs;
use sha2::{Digest, Sha256};

use super::tree::{CommitTree, Object};
use cmdext::CommandRunExt;

/// Where rpm-ostree style trees keep the rpmdb.
const RPMDB_DIRS: &[&str] = &["usr/lib/sysimage/rpm", "usr/share/rpm"];

/// Layers besides package layers: the commit, unpackaged files, the rpmdb.
pub const RESERVED_LAYERS: usize = 3;

/// A package of the tree and the paths (relative, ostree layout) it owns.
#[derive(Debug, Clone)]
pub struct PackageFiles {
    pub name: String,
    pub nevra: String,
    pub paths: Vec<String>,
}

/// One content layer: what it is called, which packages it holds, which objects.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    pub name: String,
    pub packages: Vec<String>,
    pub objects: Vec<String>,
}

/// The rpmdb directory of the tree, if it has one.
pub fn rpmdb_dir(tree: &CommitTree) -> Option<&'static str> {
    RPMDB_DIRS
        .iter()
        .copied()
        .find(|d| tree.dirs.iter().any(|x| x.path == *d))
}

/// Read the tree's rpmdb: each package and its files. Copies the rpmdb out of the
/// repo into `scratch` first (rpm may write beside an sqlite database it opens).
pub fn rpmdb_packages(
    repo: &ostree::Repo,
    tree: &CommitTree,
    scratch: &Path,
) -> Result<Vec<PackageFiles>> {
    let Some(dbdir) = rpmdb_dir(tree) else {
        return Ok(Vec::new());
    };
    let dest = scratch.join("rpmdb");
    let opts = ostree::RepoCheckoutAtOptions {
        mode: ostree::RepoCheckoutMode::User,
        force_copy: true,
        subpath: Some(format!("/{dbdir}").into()),
        ..Default::default()
    };
    repo.checkout_at(
        Some(&opts),
        libc::AT_FDCWD,
        &dest,
        &tree.commit,
        gio::Cancellable::NONE,
    )
    .with_context(|| format!("checking out {dbdir} of {}", tree.commit))?;
    let out = cmdext::command("rpm")
        .arg("--dbpath")
        .arg(&dest)
        .args(["-qa", "--qf", "[%{=NAME}\t%{=NEVRA}\t%{FILENAMES}\n]"])
        .run_get_string()
        .context("listing the files of the tree's packages")?;
    let root_links = root_symlinks(tree)?;
    let mut by_name: BTreeMap<String, PackageFiles> = BTreeMap::new();
    for line in out.lines() {
        let mut it = line.splitn(3, '\t');
        let (Some(name), Some(nevra), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let p = by_name
            .entry(name.to_string())
            .or_insert_with(|| PackageFiles {
                name: name.to_string(),
                nevra: nevra.to_string(),
                paths: Vec::new(),
            });
        p.paths.push(tree_path(path, &root_links));
    }
    Ok(by_name.into_values().collect())
}

/// Root-level symlinks of the tree into /usr (`bin` → `usr/bin`), to resolve rpm's paths.
fn root_symlinks(tree: &CommitTree) -> Result<HashMap<String, String>> {
    let mut m = HashMap::new();
    for o in tree.objects.values() {
        for p in o.paths.iter().filter(|p| !p.contains('/')) {
            let f = tree.object_file(&o.checksum);
            if fs::symlink_metadata(&f)?.file_type().is_symlink() {
                let target = fs::read_link(&f)?;
                let target = target.to_string_lossy();
                let target = target.trim_start_matches('/').trim_end_matches('/');
                if target.starts_with("usr/") && !target.contains("..") {
                    m.insert(p.clone(), target.to_string());
                }
            }
        }
    }
    Ok(m)
}

/// An rpm file name as a path of the ostree tree (`/etc/x` → `usr/etc/x`, `/bin/x` → `usr/bin/x`).
fn tree_path(rpm_path: &str, root_links: &HashMap<String, String>) -> String {
    let p = rpm_path.trim_start_matches('/');
    let (first, rest) = p.split_once('/').unwrap_or((p, ""));
    let first = match first {
        "etc" => "usr/etc",
        f => root_links.get(f).map_or(f, String::as_str),
    };
    if rest.is_empty() {
        first.to_string()
    } else {
        format!("{first}/{rest}")
    }
}

fn bucket_of(name: &str, buckets: usize) -> usize {
    let h = Sha256::digest(name.as_bytes());
    let n = u64::from_be_bytes(h[..8].try_into().expect("8 bytes"));
    (n % buckets as u64) as usize
}

/// Split the content objects into at most `max_layers - 1` layers (the commit layer
/// is the remaining one). `changes` counts, per package name, the builds that changed it.
pub fn plan(
    objects: &BTreeMap<String, Object>,
    pkgs: &[PackageFiles],
    rpmdb: Option<&str>,
    max_layers: usize,
    changes: &HashMap<String, u32>,
) -> Result<Vec<LayerPlan>> {
    if max_layers < RESERVED_LAYERS + 1 {
        bail!(
            "--max-layers {max_layers} is too few: at least {} (the commit, unpackaged files, the rpmdb and one package layer)",
            RESERVED_LAYERS + 1
        );
    }
    let mut pkgs: Vec<&PackageFiles> = pkgs.iter().collect();
    pkgs.sort_by(|a, b| a.name.cmp(&b.name));
    let mut owner: HashMap<&str, usize> = HashMap::new();
    for (i, p) in pkgs.iter().enumerate() {
        for path in &p.paths {
            owner.entry(path.as_str()).or_insert(i);
        }
    }
    let in_rpmdb =
        |p: &str| rpmdb.is_some_and(|d| p.strip_prefix(d).is_some_and(|r| r.starts_with('/')));

    // Each object goes to exactly one owner (hardlinks must stay in one layer).
    let mut pkg_objects: Vec<Vec<&Object>> = vec![Vec::new(); pkgs.len()];
    let mut unpackaged = Vec::new();
    let mut rpmdb_objs = Vec::new();
    for o in objects.values() {
        if o.paths.iter().all(|p| in_rpmdb(p)) {
            rpmdb_objs.push(o);
        } else if let Some(i) = o
            .paths
            .iter()
            .filter_map(|p| owner.get(p.as_str()).copied())
            .min()
        {
            pkg_objects[i].push(o);
        } else {
            unpackaged.push(o);
        }
    }

    let avail = max_layers - RESERVED_LAYERS;
    let present: Vec<usize> = (0..pkgs.len())
        .filter(|&i| !pkg_objects[i].is_empty())
        .collect();
    let mut layers: Vec<(String, Vec<usize>)> = Vec::new();
    if present.len() <= avail {
        layers.extend(present.iter().map(|&i| (pkgs[i].name.clone(), vec![i])));
    } else {
        let weight = |i: usize| -> u128 {
            let size: u64 = pkg_objects[i].iter().map(|o| o.size).sum();
            size as u128 * (1 + *changes.get(&pkgs[i].name).unwrap_or(&0) as u128)
        };
        let mut ranked = present.clone();
        ranked.sort_by(|&a, &b| weight(b).cmp(&weight(a)).then(a.cmp(&b)));
        // Half the layers for the heaviest packages, half shared (at least one).
        let own = avail / 2;
        let buckets = avail - own;
        let mut own_set: Vec<usize> = ranked[..own].to_vec();
        own_set.sort();
        layers.extend(own_set.iter().map(|&i| (pkgs[i].name.clone(), vec![i])));
        let mut shared: Vec<Vec<usize>> = vec![Vec::new(); buckets];
        for &i in &ranked[own..] {
            shared[bucket_of(&pkgs[i].name, buckets)].push(i);
        }
        for (b, mut members) in shared.into_iter().enumerate() {
            members.sort();
            if !members.is_empty() {
                layers.push((format!("packages {}/{buckets}", b + 1), members));
            }
        }
    }

    let sorted = |mut v: Vec<&Object>| -> Vec<String> {
        v.sort_by(|a, b| a.paths[0].cmp(&b.paths[0]));
        v.into_iter().map(|o| o.checksum.clone()).collect()
    };
    let mut out: Vec<LayerPlan> = layers
        .into_iter()
        .map(|(name, members)| LayerPlan {
            name,
            packages: members.iter().map(|&i| pkgs[i].nevra.clone()).collect(),
            objects: sorted(
                members
                    .iter()
                    .flat_map(|&i| pkg_objects[i].clone())
                    .collect(),
            ),
        })
        .collect();
    if !unpackaged.is_empty() {
        out.push(LayerPlan {
            name: "unpackaged files".into(),
            packages: Vec::new(),
            objects: sorted(unpackaged),
        });
    }
    if !rpmdb_objs.is_empty() {
        out.push(LayerPlan {
            name: "rpmdb".into(),
            packages: Vec::new(),
            objects: sorted(rpmdb_objs),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(c: &str, size: u64, paths: &[&str]) -> (String, Object) {
        (
            c.to_string(),
            Object {
                checksum: c.to_string(),
                size,
                paths: paths.iter().map(|s| s.to_string()).collect(),
                xattrs: None,
            },
        )
    }

    fn pkg(name: &str, paths: &[&str]) -> PackageFiles {
        PackageFiles {
            name: name.into(),
            nevra: format!("{name}-1-1.x86_64"),
            paths: paths.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn paths_follow_ostree_layout() {
        let links: HashMap<String, String> = [("bin".to_string(), "usr/bin".to_string())].into();
        assert_eq!(tree_path("/etc/passwd", &links), "usr/etc/passwd");
        assert_eq!(tree_path("/bin/sh", &links), "usr/bin/sh");
        assert_eq!(tree_path("/usr/lib/x", &links), "usr/lib/x");
        assert_eq!(tree_path("/opt", &links), "opt");
    }

    #[test]
    fn one_layer_per_package_when_there_is_room() {
        let objects: BTreeMap<_, _> = [
            obj("aa", 10, &["usr/bin/a"]),
            obj("bb", 20, &["usr/bin/b", "usr/bin/b2"]),
            obj("cc", 5, &["usr/lib/sysimage/rpm/rpmdb.sqlite"]),
            obj("dd", 1, &["usr/share/generated"]),
            obj("ee", 1, &["usr/bin/shared", "usr/bin/a2"]),
        ]
        .into();
        let pkgs = vec![
            pkg("b", &["usr/bin/b", "usr/bin/b2", "usr/bin/shared"]),
            pkg("a", &["usr/bin/a", "usr/bin/a2"]),
        ];
        let p = plan(
            &objects,
            &pkgs,
            Some("usr/lib/sysimage/rpm"),
            64,
            &HashMap::new(),
        )
        .unwrap();
        let names: Vec<_> = p.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "unpackaged files", "rpmdb"]);
        // A shared object goes to the first owner by name.
        assert_eq!(p[0].objects, ["aa", "ee"]);
        assert_eq!(p[1].objects, ["bb"]);
        assert_eq!(p[2].objects, ["dd"]);
        assert!(plan(&objects, &pkgs, None, 3, &HashMap::new()).is_err());
    }

    #[test]
    fn buckets_are_stable_when_one_package_changes() {
        let mk = |bump: u64| {
            let mut objects = BTreeMap::new();
            let mut pkgs = Vec::new();
            for i in 0..100u64 {
                let c = format!("{i:02}{}", if i == 50 { bump } else { 0 });
                let path = format!("usr/lib/p{i}/f");
                objects.insert(
                    c.clone(),
                    Object {
                        checksum: c,
                        size: 1000 + i * 10 + if i == 50 { bump } else { 0 },
                        paths: vec![path.clone()],
                        xattrs: None,
                    },
                );
                pkgs.push(pkg(&format!("p{i:03}"), &[&path]));
            }
            plan(&objects, &pkgs, None, 20, &HashMap::new()).unwrap()
        };
        let (a, b) = (mk(0), mk(3));
        assert!(a.len() < 20);
        let changed = a.iter().zip(&b).filter(|(x, y)| x != y).count();
        assert_eq!(a.len(), b.len());
        assert_eq!(changed, 1, "{a:#?}\n{b:#?}");
    }
}
