//! What the compose needs from RPM headers (scriptlets, dependencies, file owners,
//! doc flags), read with one `rpm -qp --queryformat` run for many packages.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use cmdext::CommandRunExt;

/// Separates fields of one package.
const FS: char = '\u{1e}';
/// Separates elements of an array tag.
const AS: char = '\u{1d}';
/// Ends a package's record.
const RS: char = '\u{1c}';

/// A package's identity in an rpmdb ([`RpmHeader::dbkey`]): NEVRA and header digest.
pub const DBKEY_FORMAT: &str = "%{NEVRA} %|SHA256HEADER?{%{SHA256HEADER}}:{%{SHA1HEADER}}|";

/// `RPMFILE_DOC` in FILEFLAGS.
const RPMFILE_DOC: u32 = 1 << 1;

/// A scriptlet: interpreter argv and body.
#[derive(Debug, Clone, PartialEq)]
pub struct Script {
    pub prog: Vec<String>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpmFile {
    pub path: String,
    pub doc: bool,
    pub user: String,
    pub group: String,
    pub caps: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RpmHeader {
    pub path: PathBuf,
    pub name: String,
    pub requires: Vec<String>,
    pub provides: Vec<String>,
    pub pre: Option<Script>,
    pub post: Option<Script>,
    pub posttrans: Option<Script>,
    pub files: Vec<RpmFile>,
    /// The package's identity in an rpmdb: NEVRA and header digest.
    pub dbkey: String,
    /// What the SBOM says of the package besides its dependencies and files
    /// (version, vendor, license, …); see [`RpmHeader::sbom_package`].
    pub sbom: crate::sbom::RpmPackage,
}

impl RpmHeader {
    /// The package as the SBOM describes it, with the header's dependencies and files.
    pub fn sbom_package(&self) -> crate::sbom::RpmPackage {
        crate::sbom::RpmPackage {
            provides: self.provides.clone(),
            requires: self.requires.clone(),
            files: self.files.iter().map(|f| f.path.clone()).collect(),
            ..self.sbom.clone()
        }
    }

    /// Files not owned by root:root (their ownership is set after assembly, from the tree's passwd).
    pub fn nonroot_files(&self) -> impl Iterator<Item = &RpmFile> {
        self.files
            .iter()
            .filter(|f| f.user != "root" || f.group != "root")
    }
}

fn query_format() -> String {
    let arr = |tag: &str| format!("[%{{{tag}}}{AS}]");
    [
        "%{NAME}".to_string(),
        arr("REQUIRENAME"),
        arr("PROVIDENAME"),
        arr("PREINPROG"),
        "%{PREIN}".into(),
        arr("POSTINPROG"),
        "%{POSTIN}".into(),
        arr("POSTTRANSPROG"),
        "%{POSTTRANS}".into(),
        arr("FILENAMES"),
        arr("FILEFLAGS"),
        arr("FILEUSERNAME"),
        arr("FILEGROUPNAME"),
        arr("FILECAPS"),
        DBKEY_FORMAT.into(),
        "%{EPOCH}".into(),
        "%{VERSION}".into(),
        "%{RELEASE}".into(),
        "%{ARCH}".into(),
        "%{SHA256HEADER}".into(),
        "%{VENDOR}".into(),
        "%{URL}".into(),
        "%{SOURCERPM}".into(),
        "%{LICENSE}".into(),
    ]
    .join(&FS.to_string())
        + &RS.to_string()
}

fn array(s: &str) -> Vec<String> {
    s.split(AS)
        .filter(|x| !x.is_empty())
        .map(str::to_string)
        .collect()
}

fn script(pkg: &str, what: &str, prog: &str, body: &str) -> Result<Option<Script>> {
    let prog = array(prog);
    let body = if body == "(none)" { "" } else { body };
    if prog.is_empty() && body.is_empty() {
        return Ok(None);
    }
    if prog.first().is_some_and(|p| p == "<lua>") {
        bail!("package {pkg}: {what} scriptlet is written in Lua, which cosa does not run");
    }
    let prog = if prog.is_empty() {
        vec!["/bin/sh".to_string()]
    } else {
        prog
    };
    Ok(Some(Script {
        prog,
        body: body.to_string(),
    }))
}

fn parse_one(path: &Path, rec: &str) -> Result<RpmHeader> {
    let f: Vec<&str> = rec.split(FS).collect();
    if f.len() != 24 {
        bail!(
            "unexpected header query output for {} ({} fields)",
            path.display(),
            f.len()
        );
    }
    let name = f[0].to_string();
    let names = array(f[9]);
    let flags = array(f[10]);
    let users = array(f[11]);
    let groups = array(f[12]);
    // FILECAPS has one (possibly empty) entry per file: split without dropping empties.
    let caps: Vec<&str> = f[13].split(AS).collect();
    let files = names
        .into_iter()
        .enumerate()
        .map(|(i, path)| RpmFile {
            path,
            doc: flags
                .get(i)
                .and_then(|x| x.parse::<u32>().ok())
                .is_some_and(|x| x & RPMFILE_DOC != 0),
            user: users.get(i).cloned().unwrap_or_else(|| "root".into()),
            group: groups.get(i).cloned().unwrap_or_else(|| "root".into()),
            caps: caps.get(i).unwrap_or(&"").to_string(),
        })
        .collect();
    let none = crate::sbom::tag;
    let sbom = crate::sbom::RpmPackage {
        name: name.clone(),
        epoch: none(f[15]).and_then(|e| e.parse().ok()),
        version: f[16].to_string(),
        release: f[17].to_string(),
        arch: f[18].to_string(),
        sha256header: none(f[19]),
        vendor: none(f[20]),
        url: none(f[21]),
        sourcerpm: none(f[22]),
        license: none(f[23]),
        ..Default::default()
    };
    Ok(RpmHeader {
        path: path.to_path_buf(),
        sbom,
        requires: array(f[1]),
        provides: array(f[2]),
        pre: script(&name, "%pre", f[3], f[4])?,
        post: script(&name, "%post", f[5], f[6])?,
        posttrans: script(&name, "%posttrans", f[7], f[8])?,
        files,
        dbkey: f[14].to_string(),
        name,
    })
}

/// Read the headers of `paths`, in order.
pub fn query(paths: &[PathBuf]) -> Result<Vec<RpmHeader>> {
    let qf = query_format();
    let mut out = Vec::with_capacity(paths.len());
    for chunk in paths.chunks(256) {
        let s = cmdext::command("rpm")
            .args(["-qp", "--nosignature", "--nodigest", "--queryformat", &qf])
            .args(chunk)
            .run_get_string()
            .context("reading RPM headers")?;
        let recs: Vec<&str> = s.split(RS).filter(|r| !r.trim().is_empty()).collect();
        if recs.len() != chunk.len() {
            bail!(
                "rpm returned {} headers for {} packages",
                recs.len(),
                chunk.len()
            );
        }
        for (p, r) in chunk.iter().zip(recs) {
            out.push(
                parse_one(p, r).with_context(|| format!("reading header of {}", p.display()))?,
            );
        }
    }
    Ok(out)
}

/// Order packages so that each comes after the packages providing what it requires
/// (a stable topological sort; dependency cycles are broken by name order), as rpm
/// orders a transaction's scriptlets.
pub fn install_order(hdrs: &[RpmHeader]) -> Vec<usize> {
    use std::collections::{BTreeMap, BTreeSet};
    let mut provider: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, h) in hdrs.iter().enumerate() {
        provider.entry(h.name.as_str()).or_insert(i);
        for p in &h.provides {
            provider.entry(p.as_str()).or_insert(i);
        }
        for f in &h.files {
            provider.entry(f.path.as_str()).or_insert(i);
        }
    }
    let deps: Vec<BTreeSet<usize>> = hdrs
        .iter()
        .enumerate()
        .map(|(i, h)| {
            h.requires
                .iter()
                .filter_map(|r| provider.get(r.as_str()).copied())
                .filter(|&j| j != i)
                .collect()
        })
        .collect();
    let mut order = Vec::with_capacity(hdrs.len());
    let mut state = vec![0u8; hdrs.len()]; // 0 new, 1 visiting, 2 done
    fn visit(i: usize, deps: &[BTreeSet<usize>], state: &mut [u8], order: &mut Vec<usize>) {
        if state[i] != 0 {
            return; // done, or a cycle: break it here
        }
        state[i] = 1;
        for &d in &deps[i] {
            visit(d, deps, state, order);
        }
        state[i] = 2;
        order.push(i);
    }
    let mut by_name: Vec<usize> = (0..hdrs.len()).collect();
    by_name.sort_by(|&a, &b| hdrs[a].name.cmp(&hdrs[b].name));
    for i in by_name {
        visit(i, &deps, &mut state, &mut order);
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(name: &str, requires: &[&str], provides: &[&str]) -> RpmHeader {
        RpmHeader {
            path: PathBuf::new(),
            name: name.into(),
            requires: requires.iter().map(|s| s.to_string()).collect(),
            provides: provides.iter().map(|s| s.to_string()).collect(),
            pre: None,
            post: None,
            posttrans: None,
            files: vec![],
            dbkey: String::new(),
            sbom: Default::default(),
        }
    }

    #[test]
    fn dependencies_come_first() {
        let h = vec![
            hdr("app", &["libfoo", "/bin/sh"], &[]),
            hdr("foo", &[], &["libfoo"]),
            hdr("sh", &[], &["/bin/sh"]),
        ];
        let o = install_order(&h);
        let pos = |n: &str| o.iter().position(|&i| h[i].name == n).unwrap();
        assert!(pos("foo") < pos("app"));
        assert!(pos("sh") < pos("app"));
    }

    #[test]
    fn cycles_do_not_hang() {
        let h = vec![hdr("a", &["b"], &[]), hdr("b", &["a"], &[])];
        assert_eq!(install_order(&h).len(), 2);
    }

    #[test]
    fn parses_a_record() {
        let rec = [
            "p",
            "q\u{1d}",
            "p\u{1d}",
            "",
            "(none)",
            "/bin/sh\u{1d}",
            "echo hi",
            "<lua>\u{1d}",
            "x",
            "/a\u{1d}/b\u{1d}",
            "0\u{1d}2\u{1d}",
            "root\u{1d}nobody\u{1d}",
            "root\u{1d}root\u{1d}",
            "\u{1d}cap_net_raw=ep",
            "p-1-1.noarch abc",
            "(none)",
            "1",
            "1",
            "noarch",
            "abc",
            "Debian",
            "(none)",
            "p-1-1.src.rpm",
            "MIT",
        ]
        .join("\u{1e}");
        let e = parse_one(Path::new("p.rpm"), &rec).unwrap_err();
        assert!(format!("{e}").contains("Lua"), "{e}");
        let rec = rec.replace("<lua>", "/bin/sh");
        let h = parse_one(Path::new("p.rpm"), &rec).unwrap();
        assert_eq!(h.pre, None);
        assert_eq!(h.post.as_ref().unwrap().body, "echo hi");
        assert!(h.files[1].doc && !h.files[0].doc);
        assert_eq!(h.nonroot_files().count(), 1);
        assert_eq!(h.files[1].caps, "cap_net_raw=ep");
        assert_eq!(h.dbkey, "p-1-1.noarch abc");
        // What the SBOM says of it.
        let p = h.sbom_package();
        assert_eq!(p.evr(), "1-1");
        assert_eq!(p.vendor.as_deref(), Some("Debian"));
        assert_eq!(p.url, None);
        assert_eq!(p.license.as_deref(), Some("MIT"));
        assert_eq!(p.files, ["/a", "/b"]);
        assert_eq!(p.requires, ["q"]);
    }
}
