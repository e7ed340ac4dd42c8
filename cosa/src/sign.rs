//! `cosa sign`: sign what a build publishes, with one OpenPGP key.
//!
//! - every artifact in meta.json's `images` gets a detached signature `<file>.sig`
//!   beside it, as Fedora CoreOS publishes them (coreos-installer checks these);
//! - the OCI archive's manifest gets a containers simple-signing signature
//!   (`<archive>.simplesig`) for the reference clients pull it by, which a
//!   `signedBy` rule in containers' policy.json accepts;
//! - the ostree commit gets a GPG signature in its detached metadata, which a
//!   remote with `gpg-verify=true` requires.
//!
//! meta.json records each signature under the artifact it covers (`signatures`:
//! kind, key fingerprint, file). Nothing is signed halfway: the file signatures are
//! made and verified in a scratch directory first, the commit is signed next, the
//! files are moved into the build directory and meta.json is written last, so an
//! interrupted run leaves at most unrecorded `.sig` files that the next run
//! replaces. Signing again with the same key changes nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use cmdext::CommandRunExt;
use fs_err as fs;

use crate::arch::Arch;
use crate::builds::artifact::{sha256_file, Signature, SignatureKind};
use crate::builds::{History, Workdir};

/// A secret key in a GnuPG home, found by any name gpg accepts for it.
#[derive(Debug, Clone)]
pub struct GpgKey {
    /// The GnuPG home (`None`: gpg's default, `$GNUPGHOME` or `~/.gnupg`).
    pub homedir: Option<PathBuf>,
    /// The primary key's fingerprint.
    pub fingerprint: String,
}

impl GpgKey {
    fn gpg(homedir: Option<&Path>) -> Command {
        let mut c = cmdext::command("gpg");
        c.args(["--batch", "--no-tty", "--quiet"]);
        if let Some(h) = homedir {
            c.arg("--homedir").arg(h);
        }
        c
    }

    fn home_name(homedir: Option<&Path>) -> String {
        homedir.map_or_else(
            || "the default GnuPG home".to_string(),
            |h| h.display().to_string(),
        )
    }

    /// The secret key `name` (fingerprint, key ID or user ID) of `homedir`.
    pub fn find(homedir: Option<&Path>, name: &str) -> Result<Self> {
        if let Some(h) = homedir {
            fs::read_dir(h).with_context(|| format!("reading the GnuPG home for key {name}"))?;
        }
        let out = Self::gpg(homedir)
            .args(["--with-colons", "--list-secret-keys", "--"])
            .arg(name)
            .run_unchecked()?;
        let text = String::from_utf8_lossy(&out.stdout);
        let fingerprints = primary_fingerprints(&text);
        match fingerprints.as_slice() {
            [fpr] => Ok(GpgKey {
                homedir: homedir.map(Path::to_path_buf),
                fingerprint: fpr.clone(),
            }),
            [] => bail!(
                "GPG key {name}: no secret key by that name in {} ({})",
                Self::home_name(homedir),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            many => bail!(
                "GPG key {name} names {} secret keys in {} ({}): give a fingerprint",
                many.len(),
                Self::home_name(homedir),
                many.join(", ")
            ),
        }
    }

    /// Write a binary detached signature of `file` to `sig`.
    pub fn detach_sign(&self, file: &Path, sig: &Path) -> Result<()> {
        Self::gpg(self.homedir.as_deref())
            .args(["--yes", "--local-user"])
            .arg(format!("{}!", self.fingerprint))
            .arg("--output")
            .arg(sig)
            .arg("--detach-sign")
            .arg(file)
            .run()
            .with_context(|| {
                format!(
                    "signing {} with GPG key {}",
                    file.display(),
                    self.fingerprint
                )
            })
    }

    /// Check that `sig` is a good signature of `file` by this key.
    pub fn verify_detached(&self, file: &Path, sig: &Path) -> Result<()> {
        let out = Self::gpg(self.homedir.as_deref())
            .args(["--status-fd", "1", "--verify"])
            .arg(sig)
            .arg(file)
            .run_unchecked()?;
        let status = String::from_utf8_lossy(&out.stdout);
        if out.status.success() && valid_signers(&status).contains(&self.fingerprint.as_str()) {
            return Ok(());
        }
        bail!(
            "the signature {} of {} does not verify with GPG key {}: {}",
            sig.display(),
            file.display(),
            self.fingerprint,
            String::from_utf8_lossy(&out.stderr).trim()
        )
    }

    /// The public key, binary (what an ostree remote's keyring or policy.json takes).
    pub fn export_public(&self, out: &Path) -> Result<()> {
        Self::gpg(self.homedir.as_deref())
            .args(["--yes", "--output"])
            .arg(out)
            .arg("--export")
            .arg(&self.fingerprint)
            .run()
            .with_context(|| format!("exporting the public key {}", self.fingerprint))
    }

    /// Environment for tools that find keys through `$GNUPGHOME` (skopeo, gpgme).
    fn env(&self, c: &mut Command) {
        if let Some(h) = &self.homedir {
            c.env("GNUPGHOME", h);
        }
    }
}

/// The fingerprints of the primary keys in `gpg --with-colons` output: each `sec`
/// (or `pub`) record is followed by its `fpr` record.
fn primary_fingerprints(colons: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut want = false;
    for line in colons.lines() {
        let fields: Vec<&str> = line.split(':').collect();
        match fields[0] {
            "sec" | "pub" => want = true,
            "fpr" if want => {
                if let Some(f) = fields.get(9).filter(|f| !f.is_empty()) {
                    out.push(f.to_string());
                }
                want = false;
            }
            "ssb" | "sub" => want = false,
            _ => {}
        }
    }
    out
}

/// The keys (signing key and primary key fingerprints) of the good signatures in
/// gpg's `--status-fd` output.
fn valid_signers(status: &str) -> Vec<&str> {
    status
        .lines()
        .filter_map(|l| l.strip_prefix("[GNUPG:] VALIDSIG "))
        .flat_map(|rest| {
            let f: Vec<&str> = rest.split(' ').collect();
            // VALIDSIG <signing fpr> <date> <ts> <expire> <ver> <rsv> <pk> <hash> <class> <primary fpr>
            [f.first().copied(), f.get(9).copied()]
        })
        .flatten()
        .collect()
}

/// What `cosa sign` is asked for.
pub struct SignOptions {
    /// Build ID (default: the latest).
    pub build: Option<String>,
    pub key: GpgKey,
    /// The reference clients pull the OCI image by; default: where
    /// `cosa push-container` pushed it.
    pub container_identity: Option<String>,
}

/// What was signed.
#[derive(Debug, serde::Serialize)]
pub struct Signed {
    pub build: String,
    pub key: String,
    /// The artifacts' signature files.
    pub files: Vec<String>,
    pub commit: String,
    /// The container signature's identity, if the build has an OCI image.
    pub container_identity: Option<String>,
}

/// The file name of an artifact's container signature.
pub fn simplesig_name(archive: &str) -> String {
    format!("{archive}.simplesig")
}

/// Sign build `o.build` (see the module's documentation).
pub fn sign(wd: &Workdir, o: &SignOptions) -> Result<Signed> {
    let _lock = wd.lock("sign", true)?;
    let history = History::new(wd.builds_dir());
    let id = history.resolve_id(o.build.as_deref())?;
    let arch = Arch::host()?.name();
    let dir = history.build_dir(&id, arch);
    let meta_path = dir.join("meta.json");
    let mut meta = history.load_meta(&id, arch)?;
    let key = &o.key;
    let fpr = key.fingerprint.clone();

    let identity = match (&o.container_identity, &meta.base_oscontainer) {
        (Some(i), _) => Some(i.clone()),
        (None, Some(pushed)) => Some(pushed.image.clone()),
        (None, None) => None,
    };
    if meta.images.contains_key("ostree") && identity.is_none() {
        bail!(
            "build {id} has a container image and was never pushed: name the reference \
             clients pull it by with --container-identity (e.g. quay.io/example/os:stable)"
        );
    }

    let stage = tempfile::Builder::new()
        .prefix(".sign-")
        .tempdir_in(wd.tmp_dir())
        .with_context(|| format!("creating a scratch directory in {}", wd.tmp_dir().display()))?;
    let mut made: Vec<(String, Signature)> = Vec::new();
    for (name, art) in &meta.images {
        let file = dir.join(&art.path);
        let (sha, _) =
            sha256_file(&file).with_context(|| format!("signing build {id}'s {name}"))?;
        if sha != art.sha256 {
            bail!(
                "{} does not match the sha256 meta.json records for it: refusing to sign it",
                file.display()
            );
        }
        let sig_name = format!("{}.sig", art.path);
        let sig = stage.path().join(&sig_name);
        key.detach_sign(&file, &sig)?;
        key.verify_detached(&file, &sig)?;
        made.push((
            name.clone(),
            Signature {
                kind: SignatureKind::Gpg,
                key: fpr.clone(),
                path: Some(sig_name),
                identity: None,
                commit: None,
            },
        ));
    }
    if let (Some(art), Some(identity)) = (meta.images.get("ostree"), &identity) {
        let sig_name = simplesig_name(&art.path);
        sign_container(key, &dir.join(&art.path), identity, stage.path(), &sig_name)
            .with_context(|| format!("signing build {id}'s container image for {identity}"))?;
        made.push((
            "ostree".into(),
            Signature {
                kind: SignatureKind::ContainersSimpleSigning,
                key: fpr.clone(),
                path: Some(sig_name),
                identity: Some(identity.clone()),
                commit: None,
            },
        ));
    }

    sign_commit(wd, key, &meta.ostree_commit, stage.path())
        .with_context(|| format!("signing build {id}'s ostree commit {}", meta.ostree_commit))?;

    let mut files = Vec::new();
    for (_, s) in &made {
        let name = s.path.as_ref().expect("file signatures have a path");
        fs::rename(stage.path().join(name), dir.join(name))?;
        files.push(name.clone());
    }
    for art in meta.images.values_mut() {
        art.signatures.retain(|s| s.key != fpr);
    }
    for (name, s) in made {
        meta.images
            .get_mut(&name)
            .expect("signed what meta.json lists")
            .signatures
            .push(s);
    }
    if let Some(art) = meta.images.get_mut("ostree") {
        art.signatures.push(Signature {
            kind: SignatureKind::OstreeCommit,
            key: fpr.clone(),
            path: None,
            identity: None,
            commit: Some(meta.ostree_commit.clone()),
        });
    }
    meta.save(&meta_path)?;
    Ok(Signed {
        build: id,
        key: fpr,
        files,
        commit: meta.ostree_commit.clone(),
        container_identity: identity.filter(|_| meta.images.contains_key("ostree")),
    })
}

/// containers' simple signing of the archive's manifest for `identity`, checked
/// with skopeo before it is kept.
fn sign_container(
    key: &GpgKey,
    archive: &Path,
    identity: &str,
    stage: &Path,
    sig_name: &str,
) -> Result<()> {
    let manifest = stage.join("manifest.json");
    fs::write(&manifest, crate::oci::archive_manifest(archive)?)?;
    let sig = stage.join(sig_name);
    let mut c = cmdext::command("skopeo");
    key.env(&mut c);
    c.arg("standalone-sign")
        .arg("--output")
        .arg(&sig)
        .arg(&manifest)
        .arg(identity)
        .arg(&key.fingerprint)
        .run()?;
    let mut c = cmdext::command("skopeo");
    key.env(&mut c);
    c.arg("standalone-verify")
        .arg(&manifest)
        .arg(identity)
        .arg(&key.fingerprint)
        .arg(&sig)
        .run()
        .with_context(|| format!("checking the new signature {}", sig.display()))?;
    fs::remove_file(&manifest)?;
    Ok(())
}

/// Sign `commit` in the workdir's repo unless this key already has; then require a
/// good signature by the key.
fn sign_commit(wd: &Workdir, key: &GpgKey, commit: &str, stage: &Path) -> Result<()> {
    let repo = ostree::Repo::new_for_path(wd.repo_path());
    repo.open(gio::Cancellable::NONE)
        .with_context(|| format!("opening {}", wd.repo_path().display()))?;
    let keyring = stage.join("key.gpg");
    key.export_public(&keyring)?;
    let keyring_file = gio::File::for_path(&keyring);
    let signed_by_key = |repo: &ostree::Repo| -> bool {
        let r = match repo.verify_commit_ext(
            commit,
            gio::File::NONE,
            Some(&keyring_file),
            gio::Cancellable::NONE,
        ) {
            Ok(r) => r,
            // No detached metadata, or no signature in it.
            Err(_) => return false,
        };
        let Some(i) = r.lookup(&key.fingerprint) else {
            return false;
        };
        // Attribute 0 of a signature is whether it is valid.
        r.all(i).child_value(0).get::<bool>().unwrap_or(false)
    };
    if !signed_by_key(&repo) {
        let home = key
            .homedir
            .as_ref()
            .map(|h| h.to_string_lossy().into_owned());
        repo.sign_commit(
            commit,
            &key.fingerprint,
            home.as_deref(),
            gio::Cancellable::NONE,
        )
        .with_context(|| format!("signing with GPG key {}", key.fingerprint))?;
        if !signed_by_key(&repo) {
            bail!(
                "the new signature does not verify with GPG key {}",
                key.fingerprint
            );
        }
    }
    fs::remove_file(&keyring)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_gpg_colons_output() {
        let colons = "sec:u:255:22:AAAA:1:::u:::scESC:::+:::ed25519:::0:\n\
                      fpr:::::::::F1F1F1F1:\n\
                      grp:::::::::KEYGRIP:\n\
                      uid:u::::1::HASH::cosa test <t@cosa.invalid>::::::::::0:\n\
                      ssb:u:255:18:BBBB:1::::::e:::+:::cv25519::\n\
                      fpr:::::::::S2S2S2S2:\n";
        assert_eq!(primary_fingerprints(colons), vec!["F1F1F1F1"]);
        assert!(primary_fingerprints("").is_empty());
    }

    #[test]
    fn reads_validsig_status() {
        let status = "[GNUPG:] NEWSIG\n\
                      [GNUPG:] GOODSIG AAAA cosa\n\
                      [GNUPG:] VALIDSIG SUBKEY 2026-12-06 1796515200 0 4 0 22 10 00 PRIMARY\n";
        assert_eq!(valid_signers(status), vec!["SUBKEY", "PRIMARY"]);
        assert!(valid_signers("[GNUPG:] BADSIG AAAA cosa\n").is_empty());
    }
}
