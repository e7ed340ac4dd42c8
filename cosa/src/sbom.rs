//! A build's software bill of materials: an SPDX 2.3 JSON document made from the
//! rpmdb of the build's ostree commit (so a composed build and an imported one get
//! theirs the same way).
//!
//! Each installed RPM is an SPDX package: name, `[epoch:]version-release`,
//! supplier (the RPM's vendor), declared license (the RPM's License tag when it is
//! an SPDX expression, otherwise a `LicenseRef-` whose extracted text is the tag,
//! as Debian's repackaged RPMs say "Debian: see …/copyright"), the SHA-256 of the
//! RPM header (rpm's `SHA256HEADER`: the rpmdb keeps no digest of the package
//! file), a `pkg:rpm` purl and the source RPM. The operating system is one more
//! package that CONTAINS every RPM; an RPM DEPENDS_ON each installed package that
//! provides one of its requirements (names, files, and each alternative of a rich
//! dependency). The document is a function of its inputs alone: its namespace and
//! creation time come from the build (the compose's input hash and timestamp), so
//! the same inputs give the same bytes.
//!
//! The tree carries its own SBOM at [`TREE_PATH`]: the compose writes it from the
//! package headers before the commit, and `cosa import` rewrites it from the derived
//! tree's rpmdb, so the commit, the OCI image and every disk image hold the document
//! that describes them. `cosa build-container` copies it beside the build's other
//! artifacts (`images.sbom`); a commit without one (made by an older cosa) gets a
//! document made from its rpmdb.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cmdext::CommandRunExt;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::builds::artifact::Artifact;
use crate::builds::meta::Meta;

/// Where rpm-ostree style trees keep the rpmdb.
pub const RPMDB_DIRS: &[&str] = &["usr/lib/sysimage/rpm", "usr/share/rpm"];

/// One installed RPM, as the rpmdb describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RpmPackage {
    pub name: String,
    pub epoch: Option<u64>,
    pub version: String,
    pub release: String,
    pub arch: String,
    pub sha256header: Option<String>,
    pub vendor: Option<String>,
    pub url: Option<String>,
    pub sourcerpm: Option<String>,
    pub license: Option<String>,
    pub provides: Vec<String>,
    pub requires: Vec<String>,
    pub files: Vec<String>,
}

impl RpmPackage {
    /// `[epoch:]version-release`.
    pub fn evr(&self) -> String {
        match self.epoch {
            Some(e) => format!("{e}:{}-{}", self.version, self.release),
            None => format!("{}-{}", self.version, self.release),
        }
    }
}

/// What the document says about the build it describes.
pub struct Subject<'a> {
    /// The OS name (meta.json `name`).
    pub name: &'a str,
    pub version: &'a str,
    pub arch: &'a str,
    /// What makes the document's namespace unique: the compose's input hash, the
    /// imported image's digest, or the commit.
    pub identity: &'a str,
    /// What the OS package's comment says the build is (e.g. "composed from inputs …").
    pub origin: String,
    /// The build's timestamp, Unix seconds (the document's creation time).
    pub timestamp: u64,
}

/// Where the tree carries its SBOM.
pub const TREE_PATH: &str = "usr/share/buildinfo/sbom.spdx.json";

/// rpm's `(none)` for an absent tag, as `None`.
pub(crate) fn tag(s: &str) -> Option<String> {
    (s != "(none)" && !s.is_empty()).then(|| s.to_string())
}

/// Read every package of the rpmdb in `dbpath` (one rpm run).
pub fn query_rpmdb(dbpath: &Path) -> Result<Vec<RpmPackage>> {
    // One header line per package (the license last: it is free text), then one
    // line per provide, require and file.
    let qf = "@PKG\t%{NAME}\t%{EPOCH}\t%{VERSION}\t%{RELEASE}\t%{ARCH}\t%{SHA256HEADER}\t\
              %{VENDOR}\t%{URL}\t%{SOURCERPM}\t%{LICENSE}\n\
              [@P\t%{PROVIDENAME}\n][@R\t%{REQUIRENAME}\n][@F\t%{FILENAMES}\n]";
    let out = cmdext::command("rpm")
        .arg("--dbpath")
        .arg(dbpath)
        .args(["-qa", "--qf", qf])
        .run_get_string()
        .with_context(|| format!("reading the rpmdb in {}", dbpath.display()))?;
    parse_query(&out)
}

fn parse_query(out: &str) -> Result<Vec<RpmPackage>> {
    let mut pkgs: Vec<RpmPackage> = Vec::new();
    for line in out.lines() {
        let Some((kind, rest)) = line.split_once('\t') else {
            continue;
        };
        if kind == "@PKG" {
            let f: Vec<&str> = rest.splitn(10, '\t').collect();
            anyhow::ensure!(f.len() == 10, "unexpected rpm query output: {line}");
            pkgs.push(RpmPackage {
                name: f[0].to_string(),
                epoch: tag(f[1]).and_then(|e| e.parse().ok()),
                version: f[2].to_string(),
                release: f[3].to_string(),
                arch: f[4].to_string(),
                sha256header: tag(f[5]),
                vendor: tag(f[6]),
                url: tag(f[7]),
                sourcerpm: tag(f[8]),
                license: tag(f[9]),
                ..Default::default()
            });
            continue;
        }
        let p = pkgs
            .last_mut()
            .with_context(|| format!("rpm query output before any package: {line}"))?;
        match kind {
            "@P" => p.provides.push(rest.to_string()),
            "@R" => p.requires.push(rest.to_string()),
            "@F" => p.files.push(rest.to_string()),
            _ => anyhow::bail!("unexpected rpm query output: {line}"),
        }
    }
    sort_packages(&mut pkgs);
    Ok(pkgs)
}

/// The order the document lists packages in.
pub fn sort_packages(pkgs: &mut [RpmPackage]) {
    pkgs.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
}

/// The capability names a requirement names: itself, or for a rich dependency
/// (`(a >= 1 or b)`) each package name in it, without operators and versions.
fn required_names(req: &str) -> Vec<&str> {
    if !req.starts_with('(') {
        return vec![req];
    }
    const WORDS: &[&str] = &[
        "and", "or", "if", "else", "with", "without", "unless", "<", "<=", "=", ">=", ">",
    ];
    let mut names = Vec::new();
    let mut after_op = false;
    for tok in req
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter(|t| !t.is_empty())
    {
        if WORDS.contains(&tok) {
            after_op = ["<", "<=", "=", ">=", ">"].contains(&tok);
            continue;
        }
        if !after_op {
            names.push(tok);
        }
        after_op = false;
    }
    names
}

/// An SPDX identifier for a package: its name with what SPDX ids cannot hold
/// replaced, made unique by the caller.
fn spdx_ref(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    format!("SPDXRef-Package-rpm-{s}")
}

/// The declared license: the tag when it is an SPDX expression, else a LicenseRef
/// (recorded in `refs`, id → text).
fn declared_license(tag: Option<&str>, refs: &mut BTreeMap<String, String>) -> String {
    let Some(text) = tag else {
        return "NOASSERTION".into();
    };
    if spdx::Expression::parse(text).is_ok() {
        return text.to_string();
    }
    let id = format!(
        "LicenseRef-rpm-{}",
        &hex::encode(Sha256::digest(text.as_bytes()))[..16]
    );
    refs.insert(id.clone(), text.to_string());
    id
}

/// The `pkg:rpm` purl of a package (the OS name as its namespace, the vendor of
/// the repositories the stream composes from).
fn purl(os: &str, p: &RpmPackage) -> Result<String> {
    let ctx = || format!("making the purl of {}", p.name);
    let mut u = packageurl::PackageUrl::new("rpm", p.name.as_str()).with_context(ctx)?;
    u.with_namespace(os.to_lowercase()).with_context(ctx)?;
    u.with_version(format!("{}-{}", p.version, p.release))
        .with_context(ctx)?;
    u.add_qualifier("arch", p.arch.as_str()).with_context(ctx)?;
    if let Some(e) = p.epoch {
        u.add_qualifier("epoch", e.to_string()).with_context(ctx)?;
    }
    Ok(u.to_string())
}

/// The SPDX 2.3 document of `pkgs`, the contents of the build `s`.
pub fn document(s: &Subject, pkgs: &[RpmPackage]) -> Result<Value> {
    let os_ref = "SPDXRef-OperatingSystem";
    let mut refs: BTreeMap<String, String> = BTreeMap::new();
    let mut ids: Vec<String> = Vec::with_capacity(pkgs.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for p in pkgs {
        let base = spdx_ref(&p.name);
        let n = seen.entry(base.clone()).or_insert(0);
        *n += 1;
        ids.push(if *n == 1 { base } else { format!("{base}-{n}") });
    }

    // Who provides what: capability names and files.
    let mut providers: HashMap<&str, BTreeSet<usize>> = HashMap::new();
    for (i, p) in pkgs.iter().enumerate() {
        for c in p.provides.iter().chain(p.files.iter()) {
            providers.entry(c.as_str()).or_default().insert(i);
        }
    }

    let mut packages = vec![json!({
        "SPDXID": os_ref,
        "name": s.name,
        "versionInfo": s.version,
        "primaryPackagePurpose": "OPERATING-SYSTEM",
        "downloadLocation": "NOASSERTION",
        "filesAnalyzed": false,
        "licenseConcluded": "NOASSERTION",
        "licenseDeclared": "NOASSERTION",
        "copyrightText": "NOASSERTION",
        "comment": format!("{} ({})", s.origin, s.arch),
    })];
    let mut relationships = vec![json!({
        "spdxElementId": "SPDXRef-DOCUMENT",
        "relationshipType": "DESCRIBES",
        "relatedSpdxElement": os_ref,
    })];
    for (i, p) in pkgs.iter().enumerate() {
        let mut pkg = json!({
            "SPDXID": ids[i],
            "name": p.name,
            "versionInfo": p.evr(),
            "supplier": p.vendor.as_ref().map_or("NOASSERTION".to_string(), |v| format!("Organization: {v}")),
            "downloadLocation": "NOASSERTION",
            "filesAnalyzed": false,
            "licenseConcluded": "NOASSERTION",
            "licenseDeclared": declared_license(p.license.as_deref(), &mut refs),
            "copyrightText": "NOASSERTION",
            "externalRefs": [{
                "referenceCategory": "PACKAGE-MANAGER",
                "referenceType": "purl",
                "referenceLocator": purl(s.name, p)?,
            }],
        });
        if let Some(h) = &p.sha256header {
            pkg["checksums"] = json!([{"algorithm": "SHA256", "checksumValue": h}]);
            pkg["comment"] = json!("checksum: SHA-256 of the RPM header (SHA256HEADER)");
        }
        if let Some(u) = &p.url {
            pkg["homepage"] = json!(u);
        }
        if let Some(src) = &p.sourcerpm {
            pkg["sourceInfo"] = json!(format!("built from {src}"));
        }
        packages.push(pkg);
        relationships.push(json!({
            "spdxElementId": os_ref,
            "relationshipType": "CONTAINS",
            "relatedSpdxElement": ids[i],
        }));
        let mut deps = BTreeSet::new();
        for r in p.requires.iter().filter(|r| !r.starts_with("rpmlib(")) {
            for name in required_names(r) {
                if let Some(set) = providers.get(name) {
                    deps.extend(set.iter().copied().filter(|&j| j != i));
                }
            }
        }
        for j in deps {
            relationships.push(json!({
                "spdxElementId": ids[i],
                "relationshipType": "DEPENDS_ON",
                "relatedSpdxElement": ids[j],
            }));
        }
    }
    let created = chrono::DateTime::from_timestamp(s.timestamp as i64, 0)
        .context("the build's timestamp is out of range")?
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    let mut doc = json!({
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": format!("{}-{}-{}", s.name, s.version, s.arch),
        "documentNamespace": format!("urn:cosa:sbom:{}:{}:{}:{}", s.name.to_lowercase(), s.version, s.arch, s.identity),
        "creationInfo": {
            "created": created,
            "creators": [format!("Tool: cosa-{}", env!("CARGO_PKG_VERSION"))],
        },
        "packages": packages,
        "relationships": relationships,
    });
    if !refs.is_empty() {
        doc["hasExtractedLicensingInfos"] = refs
            .into_iter()
            .map(|(id, text)| json!({"licenseId": id, "extractedText": text, "name": text}))
            .collect();
    }
    Ok(doc)
}

/// Check the rpmdb of `commit` out into `dest`; false when the tree has none.
pub fn checkout_rpmdb(repo: &ostree::Repo, commit: &str, dest: &Path) -> Result<bool> {
    use ostree::gio;
    use ostree::prelude::FileExt;
    let (root, _) = repo
        .read_commit(commit, gio::Cancellable::NONE)
        .with_context(|| format!("reading commit {commit}"))?;
    for dir in RPMDB_DIRS {
        if !root
            .resolve_relative_path(dir)
            .query_exists(gio::Cancellable::NONE)
        {
            continue;
        }
        let opts = ostree::RepoCheckoutAtOptions {
            mode: ostree::RepoCheckoutMode::User,
            force_copy: true,
            subpath: Some(format!("/{dir}").into()),
            ..Default::default()
        };
        repo.checkout_at(
            Some(&opts),
            libc::AT_FDCWD,
            dest,
            commit,
            gio::Cancellable::NONE,
        )
        .with_context(|| format!("checking out /{dir} of {commit}"))?;
        return Ok(true);
    }
    Ok(false)
}

/// The SBOM of a commit, `None` when its tree has no rpmdb.
pub fn for_commit(
    repo: &ostree::Repo,
    commit: &str,
    s: &Subject,
    scratch: &Path,
) -> Result<Option<Value>> {
    let db = scratch.join("sbom-rpmdb");
    if !checkout_rpmdb(repo, commit, &db)? {
        return Ok(None);
    }
    let pkgs = query_rpmdb(&db)?;
    Ok(Some(document(s, &pkgs)?))
}

/// A copy at `dest` of the rpmdb of the tree at `root`, for rpm to read: the tree's
/// files may be hardlinks into a repo, and rpm may write beside them. `None` when
/// the tree has no rpmdb.
pub fn copy_tree_rpmdb(root: &Path, dest: &Path) -> Result<Option<PathBuf>> {
    let Some(db) = RPMDB_DIRS.iter().map(|d| root.join(d)).find(|d| d.is_dir()) else {
        return Ok(None);
    };
    fs_err::create_dir_all(dest)?;
    for e in fs_err::read_dir(&db)? {
        let e = e?;
        if e.file_type()?.is_file() {
            fs_err::copy(e.path(), dest.join(e.file_name()))?;
        }
    }
    Ok(Some(dest.to_path_buf()))
}

/// The SBOM of the tree at `root` from its rpmdb (copied under `scratch` meanwhile);
/// `None` when the tree has no rpmdb.
pub fn for_tree(root: &Path, s: &Subject, scratch: &Path) -> Result<Option<Value>> {
    let Some(copy) = copy_tree_rpmdb(root, &scratch.join("sbom-rpmdb"))? else {
        return Ok(None);
    };
    let pkgs = query_rpmdb(&copy)?;
    fs_err::remove_dir_all(&copy)?;
    Ok(Some(document(s, &pkgs)?))
}

/// Write `doc` into the tree at `root` ([`TREE_PATH`], mode 0644), replacing what is
/// there without writing through it (it may be a hardlink into the repo).
pub fn write_into_tree(root: &Path, doc: &Value) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let path = root.join(TREE_PATH);
    let write = || -> Result<()> {
        fs_err::create_dir_all(path.parent().unwrap_or(root))?;
        match fs_err::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e.into()),
            _ => {}
        }
        let mut bytes = serde_json::to_vec_pretty(doc)?;
        bytes.push(b'\n');
        fs_err::write(&path, bytes)?;
        fs_err::set_permissions(&path, std::fs::Permissions::from_mode(0o644))?;
        Ok(())
    };
    write().with_context(|| format!("writing the SBOM into the tree at {}", path.display()))
}

/// The SBOM the commit carries at [`TREE_PATH`], if it has one.
pub fn read_from_commit(repo: &ostree::Repo, commit: &str) -> Result<Option<Vec<u8>>> {
    use ostree::gio;
    use ostree::prelude::*;
    let (root, _) = repo
        .read_commit(commit, gio::Cancellable::NONE)
        .with_context(|| format!("reading commit {commit}"))?;
    let f = root.resolve_relative_path(TREE_PATH);
    if !f.query_exists(gio::Cancellable::NONE) {
        return Ok(None);
    }
    // Through the object, not GFile::load_contents: OstreeRepoFile's read() hands
    // back a plain GInputStream, on which GIO's load_contents asserts
    // (GLib-GIO-CRITICAL, ostreedev/ostree#2703).
    let read = || -> Result<Vec<u8>> {
        let f = f
            .downcast::<ostree::RepoFile>()
            .map_err(|_| anyhow::anyhow!("not a file of the commit"))?;
        f.ensure_resolved()?;
        let csum = f.checksum();
        let (stream, _, _) = repo.load_file(&csum, gio::Cancellable::NONE)?;
        let stream = stream.context("not a regular file")?;
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut stream.into_read(), &mut data)?;
        Ok(data)
    };
    let bytes = read().with_context(|| format!("reading /{TREE_PATH} of commit {commit}"))?;
    Ok(Some(bytes))
}

/// Put the SBOM of the build `meta` describes into its directory `dir` and record it
/// in `meta.images.sbom` (the caller saves meta.json): the one its tree carries, or
/// for a tree without one, a document made from its rpmdb; nothing when the tree has
/// no rpmdb. `scratch` holds the rpmdb's checkout meanwhile.
pub fn record(repo: &ostree::Repo, meta: &mut Meta, dir: &Path, scratch: &Path) -> Result<()> {
    let arch = meta.basearch.clone().unwrap_or_default();
    let commit = meta.ostree_commit.clone();
    let bytes = match read_from_commit(repo, &commit)? {
        Some(b) => b,
        None => {
            let subject = Subject {
                name: &meta.name,
                version: &meta.buildid,
                arch: &arch,
                identity: &commit,
                origin: format!("ostree commit {commit}"),
                timestamp: meta.ostree_timestamp_secs(),
            };
            let doc = for_commit(repo, &commit, &subject, scratch)
                .with_context(|| format!("making the SBOM of commit {commit}"))?;
            let Some(doc) = doc else {
                return Ok(());
            };
            serde_json::to_vec_pretty(&doc)?
        }
    };
    let path = dir.join(file_name(&meta.name, &meta.buildid, &arch));
    crate::builds::workdir::write_atomic(&path, &bytes)?;
    meta.images.insert("sbom".into(), Artifact::of(&path)?);
    Ok(())
}

/// The SBOM's file name in a build directory, beside the other artifacts.
pub fn file_name(name: &str, build_id: &str, arch: &str) -> String {
    format!("{name}-{build_id}-sbom.{arch}.spdx.json")
}

#[cfg(test)]
mod tests {
    use super::*;

    const QUERY: &str = "@PKG\tbash\t(none)\t5.2.15\t3\tx86_64\tabc\tDebian (repackaged by debrepo)\thttps://x.invalid/\tbash-5.2.15-3.src.rpm\tDebian: see /usr/share/doc/bash/copyright\n\
@P\tbash\n@P\t/bin/sh\n@R\tlibc6\n@R\trpmlib(PayloadIsZstd)\n@F\t/usr/bin/bash\n\
@PKG\tlibc6\t1\t2.36\t9\tx86_64\t(none)\t(none)\t(none)\t(none)\tLGPL-2.1-or-later AND GPL-2.0-or-later\n\
@P\tlibc6\n@R\t(bash or dash >= 0.5)\n";

    fn subject() -> Subject<'static> {
        Subject {
            name: "Demo",
            version: "1.2",
            arch: "x86_64",
            identity: "c0ffee",
            origin: "ostree commit c0ffee".into(),
            timestamp: 0,
        }
    }

    #[test]
    fn parses_the_query() {
        let p = parse_query(QUERY).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].name, "bash");
        assert_eq!(p[0].evr(), "5.2.15-3");
        assert_eq!(p[1].evr(), "1:2.36-9");
        assert_eq!(
            p[0].license.as_deref(),
            Some("Debian: see /usr/share/doc/bash/copyright")
        );
        assert_eq!(p[1].vendor, None);
        assert_eq!(p[0].provides, ["bash", "/bin/sh"]);
        assert_eq!(p[0].files, ["/usr/bin/bash"]);
        assert!(parse_query("@R\tx\n").is_err());
    }

    #[test]
    fn rich_dependencies_name_each_alternative() {
        assert_eq!(required_names("libc6"), ["libc6"]);
        assert_eq!(
            required_names("(debconf >= 0:0.5-0 or debconf-2.0)"),
            ["debconf", "debconf-2.0"]
        );
        assert_eq!(required_names("(a if (b or c))"), ["a", "b", "c"]);
    }

    #[test]
    fn the_document_describes_packages_licenses_and_dependencies() {
        let p = parse_query(QUERY).unwrap();
        let d = document(&subject(), &p).unwrap();
        assert_eq!(d["spdxVersion"], "SPDX-2.3");
        assert_eq!(d["creationInfo"]["created"], "1970-01-01T00:00:00Z");
        let pkgs = d["packages"].as_array().unwrap();
        assert_eq!(pkgs.len(), 3);
        let bash = &pkgs[1];
        assert_eq!(bash["SPDXID"], "SPDXRef-Package-rpm-bash");
        assert_eq!(
            bash["supplier"],
            "Organization: Debian (repackaged by debrepo)"
        );
        assert_eq!(bash["checksums"][0]["checksumValue"], "abc");
        assert_eq!(
            bash["externalRefs"][0]["referenceLocator"],
            "pkg:rpm/demo/bash@5.2.15-3?arch=x86_64"
        );
        let lic = bash["licenseDeclared"].as_str().unwrap();
        assert!(lic.starts_with("LicenseRef-rpm-"), "{lic}");
        assert_eq!(d["hasExtractedLicensingInfos"][0]["licenseId"], lic);
        let libc = &pkgs[2];
        assert_eq!(
            libc["licenseDeclared"],
            "LGPL-2.1-or-later AND GPL-2.0-or-later"
        );
        assert_eq!(libc["supplier"], "NOASSERTION");
        assert!(libc["externalRefs"][0]["referenceLocator"]
            .as_str()
            .unwrap()
            .contains("epoch=1"));
        let rels: Vec<(String, String, String)> = d["relationships"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["spdxElementId"].as_str().unwrap().to_string(),
                    r["relationshipType"].as_str().unwrap().to_string(),
                    r["relatedSpdxElement"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let has = |a: &str, t: &str, b: &str| rels.iter().any(|r| r.0 == a && r.1 == t && r.2 == b);
        assert!(has(
            "SPDXRef-DOCUMENT",
            "DESCRIBES",
            "SPDXRef-OperatingSystem"
        ));
        assert!(has(
            "SPDXRef-OperatingSystem",
            "CONTAINS",
            "SPDXRef-Package-rpm-libc6"
        ));
        assert!(has(
            "SPDXRef-Package-rpm-bash",
            "DEPENDS_ON",
            "SPDXRef-Package-rpm-libc6"
        ));
        // A rich dependency's installed alternative.
        assert!(has(
            "SPDXRef-Package-rpm-libc6",
            "DEPENDS_ON",
            "SPDXRef-Package-rpm-bash"
        ));
        // Same input, same bytes.
        assert_eq!(d, document(&subject(), &p).unwrap());
    }

    #[test]
    fn ids_stay_valid_and_unique() {
        assert_eq!(spdx_ref("libstdc++6"), "SPDXRef-Package-rpm-libstdc--6");
        let mut a = RpmPackage {
            name: "x".into(),
            version: "1".into(),
            release: "1".into(),
            arch: "x86_64".into(),
            ..Default::default()
        };
        let b = a.clone();
        a.arch = "i686".into();
        let d = document(&subject(), &[a, b]).unwrap();
        assert_eq!(d["packages"][2]["SPDXID"], "SPDXRef-Package-rpm-x-2");
    }
}
