//! The key vocabulary of treefiles: what cosa implements, what rpm-ostree knows
//! that cosa only carries along, and the old spellings rpm-ostree still accepts.

/// How rpm-ostree combines a key's value from an included file with the
/// includer's (see `treefile_merge` in rpm-ostree's `rust/src/treefile.rs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Merge {
    /// The includer's value wins; among sibling includes, the first one listed.
    Scalar,
    /// Concatenated, the included file's entries first.
    List,
    /// Object merged key by key, the includer winning.
    Map,
    /// Union, sorted and without duplicates.
    Set,
    /// Object of lists, each merged as a `Set` (the retired `modules` key).
    MapOfSets,
}

/// Keys cosa acts on. `packages-<basearch>` is matched by prefix, not listed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Field {
    Ref,
    Basearch,
    Repos,
    Packages,
    BootstrapPackages,
    ExcludePackages,
    Releasever,
    Variables,
    Include,
    ArchInclude,
    ConditionalInclude,
    AddFiles,
    RemoveFiles,
    RemoveFromPackages,
    Postprocess,
    PostprocessScript,
    Units,
    DefaultTarget,
    EtcGroupMembers,
    InitramfsArgs,
    InitramfsGenerator,
    MachineidCompat,
    AutomaticVersionPrefix,
    AddCommitMetadata,
    OstreeLayers,
    Recommends,
    Documentation,
}

pub(super) const SUPPORTED: &[(&str, Field)] = &[
    ("ref", Field::Ref),
    ("basearch", Field::Basearch),
    ("repos", Field::Repos),
    ("packages", Field::Packages),
    ("bootstrap-packages", Field::BootstrapPackages),
    ("exclude-packages", Field::ExcludePackages),
    ("releasever", Field::Releasever),
    ("variables", Field::Variables),
    ("include", Field::Include),
    ("arch-include", Field::ArchInclude),
    ("conditional-include", Field::ConditionalInclude),
    ("add-files", Field::AddFiles),
    ("remove-files", Field::RemoveFiles),
    ("remove-from-packages", Field::RemoveFromPackages),
    ("postprocess", Field::Postprocess),
    ("postprocess-script", Field::PostprocessScript),
    ("units", Field::Units),
    ("default-target", Field::DefaultTarget),
    ("etc-group-members", Field::EtcGroupMembers),
    ("initramfs-args", Field::InitramfsArgs),
    ("initramfs-generator", Field::InitramfsGenerator),
    ("machineid-compat", Field::MachineidCompat),
    ("automatic-version-prefix", Field::AutomaticVersionPrefix),
    ("add-commit-metadata", Field::AddCommitMetadata),
    ("ostree-layers", Field::OstreeLayers),
    ("recommends", Field::Recommends),
    ("documentation", Field::Documentation),
];

/// Keys of rpm-ostree's compose treefiles that cosa accepts, keeps in the
/// resolved treefile and reports through `Treefile::unsupported_keys`.
pub(super) const UNSUPPORTED: &[(&str, Merge)] = &[
    ("edition", Merge::Scalar),
    ("metadata", Merge::Map),
    ("gpg-key", Merge::Scalar),
    ("selinux", Merge::Scalar),
    ("selinux-label-version", Merge::Scalar),
    ("ignore-devices", Merge::Scalar),
    ("ima", Merge::Scalar),
    ("sysusers", Merge::Scalar),
    ("repovars", Merge::Map),
    ("lockfile-repos", Merge::List),
    ("repo-packages", Merge::List),
    ("rojig", Merge::Scalar),
    ("ostree-override-layers", Merge::List),
    ("platform-module", Merge::Scalar),
    ("container", Merge::Scalar),
    ("container-cmd", Merge::Scalar),
    ("install-langs", Merge::List),
    ("no-initramfs", Merge::Scalar),
    ("readonly-executables", Merge::Scalar),
    ("boot-location", Merge::Scalar),
    ("tmp-is-dir", Merge::Scalar),
    ("opt-usrlocal", Merge::Scalar),
    ("automatic-version-suffix", Merge::Scalar),
    ("mutate-os-release", Merge::Scalar),
    ("preserve-passwd", Merge::Scalar),
    ("check-passwd", Merge::Scalar),
    ("check-groups", Merge::Scalar),
    ("ignore-removed-users", Merge::Set),
    ("ignore-removed-groups", Merge::Set),
    ("repo-metadata", Merge::Scalar),
    ("advisories-metadata", Merge::Scalar),
    ("rpmdb", Merge::Scalar),
    ("rpmdb-normalize", Merge::Scalar),
    ("cliwrap", Merge::Scalar),
    ("cliwrap-binaries", Merge::List),
    // Removed from rpm-ostree in 2024 with modularity; older manifests still carry it.
    ("modules", Merge::MapOfSets),
];

/// Keys rpm-ostree only accepts in client-side (derivation) treefiles; its
/// `compose tree` refuses them, and so does cosa.
pub(super) const DERIVE_ONLY: &[&str] = &[
    "base-refspec",
    "container-image-reference",
    "packages-local",
    "packages-local-fileoverride",
    "override-remove",
    "ex-override-replace",
    "override-replace-local",
    "initramfs",
    "custom",
    "override-commit",
    "unconfigured-state",
];

/// Old snake_case spellings rpm-ostree still accepts, with their current names.
const LEGACY: &[(&str, &str)] = &[
    ("gpg_key", "gpg-key"),
    ("boot_location", "boot-location"),
    ("default_target", "default-target"),
    ("automatic_version_prefix", "automatic-version-prefix"),
    ("bootstrap_packages", "bootstrap-packages"),
];

/// What a key written in a treefile is.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum KeyKind {
    Supported(&'static str, Field),
    ArchPackages(String),
    Unsupported(&'static str, Merge),
    DeriveOnly,
    /// `comment*` keys of JSON files, which has no comments (rpm-ostree ignores them).
    JsonComment,
    Unknown,
}

/// Classify `key`, mapping legacy spellings to their current names.
pub(super) fn classify(key: &str) -> KeyKind {
    let key = LEGACY
        .iter()
        .find(|(old, _)| *old == key)
        .map_or(key, |(_, new)| new);
    if let Some((k, field)) = SUPPORTED.iter().find(|(k, _)| *k == key) {
        return KeyKind::Supported(k, *field);
    }
    if let Some(arch) = key.strip_prefix("packages-") {
        if !arch.is_empty() {
            return KeyKind::ArchPackages(arch.to_string());
        }
    }
    if let Some((k, merge)) = UNSUPPORTED.iter().find(|(k, _)| *k == key) {
        return KeyKind::Unsupported(k, *merge);
    }
    if DERIVE_ONLY.contains(&key) {
        return KeyKind::DeriveOnly;
    }
    KeyKind::Unknown
}

/// How an unsupported key merges; `Scalar` for names not in the table.
pub(super) fn merge_kind(key: &str) -> Merge {
    UNSUPPORTED
        .iter()
        .find(|(k, _)| *k == key)
        .map_or(Merge::Scalar, |(_, m)| *m)
}
