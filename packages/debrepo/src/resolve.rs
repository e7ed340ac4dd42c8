//! Dependency closure over Debian's relations, as dpkg reads them: a group of
//! alternatives is met by a package of that name whose version satisfies the
//! constraint, or by a package that provides the name (a versioned relation only
//! by a versioned provide).

use std::collections::{BTreeMap, VecDeque};

use anyhow::{bail, Result};
use debian_control::lossy::apt::Package;
use debian_control::lossy::{Relation, Relations};
use debian_control::relations::VersionConstraint;
use debversion::Version;

use crate::closure::Definition;
use crate::index::Universe;

/// Whether `v` meets `rel`'s version constraint (none: any version does).
pub fn version_ok(rel: &Relation, v: &Version) -> bool {
    match &rel.version {
        None => true,
        Some((c, want)) => match c {
            VersionConstraint::LessThan => v < want,
            VersionConstraint::LessThanEqual => v <= want,
            VersionConstraint::Equal => v == want,
            VersionConstraint::GreaterThan => v > want,
            VersionConstraint::GreaterThanEqual => v >= want,
        },
    }
}

/// A relation as Debian writes it, for messages.
pub fn show(rel: &Relation) -> String {
    match &rel.version {
        None => rel.name.clone(),
        Some((c, v)) => format!("{} ({c} {v})", rel.name),
    }
}

pub fn show_group(group: &[Relation]) -> String {
    group.iter().map(show).collect::<Vec<_>>().join(" | ")
}

/// The relations that must hold for a package to be installed.
pub fn hard_deps(p: &Package) -> impl Iterator<Item = &Vec<Relation>> {
    [&p.pre_depends, &p.depends]
        .into_iter()
        .flatten()
        .flat_map(|r: &Relations| r.0.iter())
}

/// A set of chosen packages, indexed for relation checks.
#[derive(Default)]
pub struct Set<'a> {
    pub by_name: BTreeMap<String, &'a Package>,
    /// Virtual name -> (provider, provided version).
    provided: BTreeMap<String, Vec<(String, Option<Version>)>>,
}

impl<'a> Set<'a> {
    pub fn insert(&mut self, p: &'a Package) {
        for rel in p.provides.iter().flat_map(|r| r.0.iter().flatten()) {
            let v = rel.version.as_ref().map(|(_, v)| v.clone());
            self.provided
                .entry(rel.name.clone())
                .or_default()
                .push((p.name.clone(), v));
        }
        self.by_name.insert(p.name.clone(), p);
    }

    /// Who in the set meets `rel` (by name or by a provide), if anyone.
    pub fn meets(&self, rel: &Relation) -> Option<&str> {
        if let Some(p) = self.by_name.get(&rel.name) {
            if version_ok(rel, &p.version) {
                return Some(&p.name);
            }
        }
        self.provided.get(&rel.name).and_then(|ps| {
            ps.iter()
                .find(|(_, v)| match (&rel.version, v) {
                    (None, _) => true,
                    (Some(_), Some(v)) => version_ok(rel, v),
                    (Some(_), None) => false,
                })
                .map(|(n, _)| n.as_str())
        })
    }

    pub fn meets_group(&self, group: &[Relation], def: &Definition) -> bool {
        group
            .iter()
            .any(|rel| def.is_external(&rel.name) || self.meets(rel).is_some())
    }

    /// Every hard dependency of every member is met inside the set (or by the
    /// stream's own recipes), and no member conflicts with (or breaks) another.
    pub fn check(&self, def: &Definition) -> Result<()> {
        let mut errors = Vec::new();
        for p in self.by_name.values() {
            for group in hard_deps(p) {
                if !self.meets_group(group, def) {
                    let have: Vec<String> = group
                        .iter()
                        .filter_map(|r| self.by_name.get(&r.name))
                        .map(|q| format!("{} {} is pinned", q.name, q.version))
                        .collect();
                    let have = if have.is_empty() {
                        "none of them is in the closure".to_string()
                    } else {
                        have.join(", ")
                    };
                    errors.push(format!(
                        "{} {} depends on {}: {have}",
                        p.name,
                        p.version,
                        show_group(group)
                    ));
                }
            }
            for rel in [&p.conflicts, &p.breaks]
                .into_iter()
                .flatten()
                .flat_map(|r| r.0.iter().flatten())
            {
                if let Some(q) = self.meets(rel).filter(|q| *q != p.name) {
                    errors.push(format!(
                        "{} {} conflicts with {} (met by {q}, also in the closure)",
                        p.name,
                        p.version,
                        show(rel)
                    ));
                }
            }
        }
        if !errors.is_empty() {
            bail!("the closure is not consistent:\n  {}", errors.join("\n  "));
        }
        Ok(())
    }
}

/// The package that should meet `group`, none of which the set meets yet: the
/// first alternative apt serves at a satisfying version, else a provider.
fn choose<'u>(u: &'u Universe, group: &[Relation], def: &Definition) -> Result<&'u Package> {
    for rel in group {
        if let Some(p) = u
            .candidate(&rel.name)
            .filter(|p| version_ok(rel, &p.version))
        {
            return Ok(p);
        }
    }
    for rel in group {
        let providers: Vec<&Package> = u
            .providers(&rel.name)
            .into_iter()
            .filter(|p| {
                p.provides
                    .iter()
                    .flat_map(|r| r.0.iter().flatten())
                    .any(|pr| {
                        pr.name == rel.name
                            && match (&rel.version, &pr.version) {
                                (None, _) => true,
                                (Some(_), Some((_, v))) => version_ok(rel, v),
                                (Some(_), None) => false,
                            }
                    })
            })
            .collect();
        if let Some(want) = def.prefer.get(&rel.name) {
            if let Some(p) = providers.iter().find(|p| &p.name == want) {
                return Ok(p);
            }
            bail!(
                "`prefer` names {want} for {}, but {want} does not provide it",
                rel.name
            );
        }
        match providers[..] {
            [] => continue,
            [p] => return Ok(p),
            _ => bail!(
                "{} is provided by several packages ({}): choose one under `prefer`",
                rel.name,
                providers
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }
    bail!("no package apt serves meets {}", show_group(group))
}

/// The closure of `def`'s roots over apt's candidates, breadth first, so the
/// packages nearest the roots decide which alternative is taken.
pub fn resolve<'u>(u: &'u Universe, def: &Definition) -> Result<Set<'u>> {
    let mut set = Set::default();
    let mut queue = VecDeque::new();
    for root in &def.roots {
        let rel: Relation = root
            .parse()
            .map_err(|e| anyhow::anyhow!("root {root:?}: {e}"))?;
        let p = choose(u, std::slice::from_ref(&rel), def)
            .map_err(|e| e.context(format!("resolving root {root}")))?;
        if !set.by_name.contains_key(&p.name) {
            set.insert(p);
            queue.push_back(p);
        }
    }
    while let Some(p) = queue.pop_front() {
        for group in hard_deps(p) {
            if set.meets_group(group, def) {
                continue;
            }
            let q = choose(u, group, def).map_err(|e| {
                e.context(format!(
                    "resolving {} (a dependency of {} {})",
                    show_group(group),
                    p.name,
                    p.version
                ))
            })?;
            if set.by_name.contains_key(&q.name) {
                bail!(
                    "{} {} depends on {}, which the closure's {} {} does not meet",
                    p.name,
                    p.version,
                    show_group(group),
                    q.name,
                    set.by_name[&q.name].version
                );
            }
            set.insert(q);
            queue.push_back(q);
        }
    }
    set.check(def)?;
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkg(text: &str) -> Package {
        use deb822_fast::FromDeb822Paragraph;
        let doc = deb822_fast::Deb822::from_reader(text.as_bytes()).unwrap();
        let para = doc.iter().next().unwrap();
        Package::from_paragraph(para).unwrap()
    }

    #[test]
    fn a_versioned_relation_needs_a_versioned_provide() {
        let a = pkg("Package: mawk\nVersion: 1.3.4-1\nArchitecture: amd64\nProvides: awk\n");
        let b = pkg("Package: x\nVersion: 1\nArchitecture: all\nProvides: y (= 2.0)\n");
        let mut set = Set::default();
        set.insert(&a);
        set.insert(&b);
        assert_eq!(set.meets(&"awk".parse().unwrap()), Some("mawk"));
        assert_eq!(set.meets(&"awk (>= 1)".parse().unwrap()), None);
        assert_eq!(set.meets(&"y (>= 1.5)".parse().unwrap()), Some("x"));
        assert_eq!(set.meets(&"mawk (>> 1.3.4)".parse().unwrap()), Some("mawk"));
        assert_eq!(set.meets(&"mawk (<< 1.3.4-1)".parse().unwrap()), None);
    }

    #[test]
    fn check_names_the_package_and_the_missing_dependency() {
        let a = pkg("Package: a\nVersion: 1\nArchitecture: all\nDepends: b (>= 2) | c\n");
        let b = pkg("Package: b\nVersion: 1\nArchitecture: all\nConflicts: d\n");
        let d = pkg("Package: d\nVersion: 3\nArchitecture: all\n");
        let mut set = Set::default();
        for p in [&a, &b, &d] {
            set.insert(p);
        }
        let e = set.check(&Definition::default()).unwrap_err().to_string();
        assert!(
            e.contains("a 1 depends on b (>= 2) | c: b 1 is pinned"),
            "{e}"
        );
        assert!(e.contains("b 1 conflicts with d (met by d"), "{e}");
        let def = Definition {
            external: vec!["c".into(), "b".into()],
            ..Default::default()
        };
        let e = set.check(&def).unwrap_err().to_string();
        assert!(!e.contains("depends on"), "{e}");
    }
}
