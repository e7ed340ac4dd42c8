//! Following `include`, `arch-include` and `conditional-include`, in
//! rpm-ostree's order.
//!
//! Each file is parsed, its variables are folded into the ones seen so far (a
//! variable keeps the value of the first file that defined it, in depth-first
//! load order), then its conditional includes are evaluated against those
//! variables, and only then are its includes loaded: `include` entries, then the
//! `arch-include` entry for the basearch, then the matching conditional ones.
//! A file's conditions therefore see the variables of its includers and of
//! files loaded before it, not those of the files it includes.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::fragment::{self, Fragment, IncludeTarget};
use super::layer::{split_packages, Layer};
use super::vars::VarValue;

/// rpm-ostree's limit on include nesting.
const MAX_DEPTH: usize = 50;

/// Load state shared by every file of one treefile.
pub(super) struct Loader<'a> {
    basearch: &'a str,
    /// (device, inode) of every file loaded, to refuse loading one twice.
    seen: HashMap<(u64, u64), PathBuf>,
    /// The chain of includers of the file being loaded, to name a cycle.
    stack: Vec<PathBuf>,
    pub(super) variables: BTreeMap<String, VarValue>,
    pub(super) source_files: Vec<PathBuf>,
}

impl<'a> Loader<'a> {
    pub(super) fn new(basearch: &'a str) -> Self {
        Loader {
            basearch,
            seen: HashMap::new(),
            stack: Vec::new(),
            variables: BTreeMap::new(),
            source_files: Vec::new(),
        }
    }

    /// Load the treefile at `path` (canonical) and, recursively, its includes.
    /// After an error the loader is spent.
    pub(super) fn load(&mut self, path: &Path) -> Result<Layer> {
        if self.stack.iter().any(|p| p == path) {
            let chain: Vec<String> = self
                .stack
                .iter()
                .chain(std::iter::once(&path.to_path_buf()))
                .map(|p| p.display().to_string())
                .collect();
            bail!("include cycle: {}", chain.join(" -> "));
        }
        if self.stack.len() >= MAX_DEPTH {
            bail!("includes nest deeper than {MAX_DEPTH} files");
        }
        let meta = fs_err::metadata(path)?;
        if let Some(first) = self.seen.insert((meta.dev(), meta.ino()), path.to_owned()) {
            bail!(
                "{} is included more than once (first as {})",
                path.display(),
                first.display()
            );
        }
        self.source_files.push(path.to_owned());
        let text = fs_err::read_to_string(path)?;
        let mut frag = fragment::parse(path, &text)?;
        let dir = path.parent().unwrap_or(Path::new("/"));
        frag.prepare(dir)?;
        self.check_basearch(&frag.layer)?;
        self.fold_variables(&mut frag)?;
        let includes = self.select_includes(&mut frag)?;

        self.stack.push(path.to_owned());
        let mut layer = frag.layer;
        for inc in includes {
            let joined = dir.join(&inc);
            let child = fs_err::canonicalize(&joined)
                .with_context(|| format!("include `{inc}`: {}", joined.display()))?;
            let included = self
                .load(&child)
                .with_context(|| format!("loading treefile {}", child.display()))?;
            layer.merge_included(included);
        }
        self.stack.pop();
        Ok(layer)
    }

    fn check_basearch(&self, layer: &Layer) -> Result<()> {
        match &layer.basearch {
            Some(b) if b != self.basearch => bail!(
                "basearch is {b} but the compose is for {}: cross-composes are not supported",
                self.basearch
            ),
            _ => Ok(()),
        }
    }

    /// Add this file's variables (with `basearch` and its `releasever`) to the
    /// ones already known, which keep precedence; then split its packages.
    fn fold_variables(&mut self, frag: &mut Fragment) -> Result<()> {
        let mut vars = std::mem::take(&mut frag.variables);
        for reserved in ["basearch", "releasever"] {
            if vars.contains_key(reserved) {
                bail!("variables: `{reserved}` is reserved and cannot be defined");
            }
        }
        vars.insert(
            "basearch".into(),
            VarValue::String(self.basearch.to_string()),
        );
        if let Some(rv) = &frag.layer.releasever {
            vars.insert("releasever".into(), rv.clone());
        }
        vars.append(&mut self.variables);
        self.variables = vars;
        finish_packages(frag, self.basearch)
    }

    /// The files to include, in order; inline conditional includes are merged
    /// into `frag` right away, as rpm-ostree does.
    fn select_includes(&self, frag: &mut Fragment) -> Result<Vec<String>> {
        let mut includes = std::mem::take(&mut frag.include);
        if let Some(v) = frag.arch_include.remove(self.basearch) {
            includes.extend(v);
        }
        for (i, ci) in std::mem::take(&mut frag.conditional_include)
            .into_iter()
            .enumerate()
        {
            let holds = ci
                .condition
                .evaluate(&self.variables)
                .with_context(|| format!("conditional-include[{i}]"))?;
            if !holds {
                continue;
            }
            match ci.include {
                IncludeTarget::Files(files) => includes.extend(files),
                IncludeTarget::Inline(mut inline) => {
                    finish_packages(&mut inline, self.basearch)
                        .with_context(|| format!("conditional-include[{i}]"))?;
                    self.check_basearch(&inline.layer)?;
                    frag.layer.merge_included(inline.layer);
                }
            }
        }
        Ok(includes)
    }
}

/// Split `packages` (with `packages-<basearch>` for this basearch) into the layer.
fn finish_packages(frag: &mut Fragment, basearch: &str) -> Result<()> {
    let arch = frag.arch_packages.remove(basearch).unwrap_or_default();
    frag.layer.packages = split_packages(frag.packages.iter().chain(&arch))?;
    Ok(())
}
