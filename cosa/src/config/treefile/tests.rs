use anyhow::Result;
use serde_json::json;

use super::vars::{Condition, VarValue};
use super::Treefile;

/// Write `files` (relative path, content) into a fresh directory.
fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, content) in files {
        let p = dir.path().join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    dir
}

fn load(dir: &tempfile::TempDir, name: &str, arch: &str) -> Result<Treefile> {
    Treefile::load(&dir.path().join(name), arch)
}

fn err(dir: &tempfile::TempDir, name: &str) -> String {
    format!("{:#}", load(dir, name, "x86_64").unwrap_err())
}

#[test]
fn include_merge_semantics() {
    let d = tree(&[
        (
            "base.yaml",
            "ref: base/ref\nrecommends: true\ndocumentation: false\npackages: [a]\n\
             postprocess: [base]\nrepos: [r1]\nadd-commit-metadata: {k1: base, k2: base}\n",
        ),
        (
            "top.yaml",
            "include: base.yaml\nref: top/ref\nrecommends: false\npackages: [b]\n\
             postprocess: [top]\nrepos: [r2]\nadd-commit-metadata: {k2: top, k3: top}\n",
        ),
    ]);
    let tf = load(&d, "top.yaml", "x86_64").unwrap();
    assert_eq!(tf.r#ref.as_deref(), Some("top/ref"));
    assert_eq!(tf.recommends, Some(false));
    assert_eq!(tf.documentation, Some(false));
    assert_eq!(tf.packages, ["a", "b"]);
    assert_eq!(tf.postprocess, ["base", "top"]);
    assert_eq!(tf.repos, ["r1", "r2"]);
    assert_eq!(
        serde_json::to_value(&tf.add_commit_metadata).unwrap(),
        json!({"k1": "base", "k2": "top", "k3": "top"})
    );
    assert_eq!(tf.source_files.len(), 2);
    assert_eq!(tf.config_dir, d.path().canonicalize().unwrap());
}

#[test]
fn sibling_includes_follow_rpm_ostree_order() {
    let d = tree(&[
        ("a.yaml", "postprocess: [a]\ndefault-target: a.target\n"),
        ("b.yaml", "postprocess: [b]\ndefault-target: b.target\n"),
        (
            "top.yaml",
            "include: [a.yaml, b.yaml]\npostprocess: [top]\n",
        ),
    ]);
    let tf = load(&d, "top.yaml", "x86_64").unwrap();
    assert_eq!(tf.postprocess, ["b", "a", "top"]);
    assert_eq!(tf.default_target.as_deref(), Some("a.target"));
}

#[test]
fn arch_include() {
    let d = tree(&[
        ("x.yaml", "packages: [grub2]\n"),
        ("a1.yaml", "packages: [shim-aa64]\n"),
        ("a2.yaml", "packages: [efibootmgr]\n"),
        (
            "top.yaml",
            "packages: [kernel]\narch-include:\n  x86_64: x.yaml\n  aarch64: [a1.yaml, a2.yaml]\n",
        ),
    ]);
    let x = load(&d, "top.yaml", "x86_64").unwrap();
    assert_eq!(x.packages, ["grub2", "kernel"]);
    let a = load(&d, "top.yaml", "aarch64").unwrap();
    assert_eq!(a.packages, ["efibootmgr", "kernel", "shim-aa64"]);
    assert_eq!(load(&d, "top.yaml", "s390x").unwrap().packages, ["kernel"]);
}

#[test]
fn packages_split_and_per_arch() {
    let d = tree(&[(
        "t.yaml",
        "packages:\n  - a  b\tc\n  - \"'podman >= 4.1' d\"\n  - a\n\
         packages-x86_64: [x1 x2]\npackages-aarch64: [arm]\nbootstrap_packages: [boot]\n",
    )]);
    let tf = load(&d, "t.yaml", "x86_64").unwrap();
    assert_eq!(
        tf.packages,
        ["a", "b", "boot", "c", "d", "podman >= 4.1", "x1", "x2"]
    );
    let d = tree(&[("t.yaml", "packages: [\"'unterminated\"]\n")]);
    assert!(err(&d, "t.yaml").contains("missing closing quote"));
}

#[test]
fn conditional_include() {
    let d = tree(&[
        ("yes.yaml", "packages: [yes]\n"),
        ("no.yaml", "packages: [no]\n"),
        ("all.yaml", "packages: [all]\n"),
        (
            "top.yaml",
            r#"releasever: 40
variables:
  prod: false
  stream: testing-devel
  level: 3
conditional-include:
  - if: prod == false
    include: yes.yaml
  - if: prod == true
    include: no.yaml
  - if: stream != "stable"
    include: [all.yaml]
  - if:
      - releasever >= 40
      - level < 3
    include: no.yaml
  - if:
      - releasever<41
      - basearch == "x86_64"
    include:
      packages: [inline]
      packages-x86_64: [inline-x86]
"#,
        ),
    ]);
    let tf = load(&d, "top.yaml", "x86_64").unwrap();
    assert_eq!(tf.packages, ["all", "inline", "inline-x86", "yes"]);
    assert_eq!(tf.variables["releasever"], json!(40));
    assert_eq!(tf.variables["basearch"], json!("x86_64"));
    assert_eq!(tf.source_files.len(), 3);
}

#[test]
fn conditional_include_errors() {
    for (cond, msg) in [
        ("nope == 1", "undefined variable `nope`"),
        ("stream == 1", "is a string"),
        ("stream < \"b\"", "only == and != apply"),
        ("stream =~ \"b\"", "got `=~`"),
        ("stream == b", "value must be"),
    ] {
        let d = tree(&[(
            "t.yaml",
            &format!("variables: {{stream: a}}\nconditional-include:\n  - if: '{cond}'\n    include: x.yaml\n"),
        )]);
        let e = err(&d, "t.yaml");
        assert!(e.contains(msg), "{cond}: {e}");
        assert!(e.contains("t.yaml"), "{e}");
    }
}

#[test]
fn condition_grammar() {
    let c: Condition = "  x_1>=10 ".parse().unwrap();
    let vars = |v: VarValue| [("x_1".to_string(), v)].into_iter().collect();
    assert!(c.evaluate(&vars(VarValue::Number(10))).unwrap());
    assert!(!c.evaluate(&vars(VarValue::Number(9))).unwrap());
    let c: Condition = r#"x_1 == "a b""#.parse().unwrap();
    assert!(c.evaluate(&vars(VarValue::String("a b".into()))).unwrap());
    let c: Condition = "x_1 != true".parse().unwrap();
    assert!(c.evaluate(&vars(VarValue::Bool(false))).unwrap());
    assert!("== 1".parse::<Condition>().is_err());
    assert!("x 1".parse::<Condition>().is_err());
    assert!("x == -1".parse::<Condition>().is_err());
}

#[test]
fn variables_order_and_substitution() {
    let d = tree(&[
        (
            "child.yaml",
            "variables: {stream: child, extra: e}\nconditional-include:\n  - if: stream == \"parent\"\n    include: grandchild.yaml\n",
        ),
        ("grandchild.yaml", "packages: [gc]\n"),
        (
            "top.yaml",
            "variables: {stream: parent}\nreleasever: \"40\"\ninclude: child.yaml\n\
             ref: os/${basearch}/${stream}/${extra}\nautomatic-version-prefix: \"${releasever}.<date:%Y%m%d>\"\n\
             add-commit-metadata: {s: \"${stream}\", n: 3}\npostprocess: ['echo ${HOME}']\n\
             mutate-os-release: \"${releasever}\"\n",
        ),
    ]);
    let tf = load(&d, "top.yaml", "aarch64").unwrap();
    assert_eq!(tf.packages, ["gc"]);
    assert_eq!(tf.r#ref.as_deref(), Some("os/aarch64/parent/e"));
    assert_eq!(tf.releasever.as_deref(), Some("40"));
    assert_eq!(
        tf.automatic_version_prefix.as_deref(),
        Some("40.<date:%Y%m%d>")
    );
    assert_eq!(tf.add_commit_metadata["s"], json!("parent"));
    assert_eq!(tf.postprocess, ["echo ${HOME}"]);
    assert_eq!(tf.unsupported["mutate-os-release"], json!("40"));
    assert_eq!(tf.variables["stream"], json!("parent"));
    assert_eq!(tf.variables["releasever"], json!("40"));

    // Like rpm-ostree: a file's conditions do not see variables of files it includes.
    let d = tree(&[
        ("child.yaml", "variables: {late: true}\n"),
        ("top.yaml", "include: child.yaml\nconditional-include:\n  - if: late == true\n    include: x.yaml\n"),
    ]);
    assert!(err(&d, "top.yaml").contains("undefined variable `late`"));
    let d = tree(&[("t.yaml", "ref: a/${nope}\n")]);
    assert!(err(&d, "t.yaml").contains("undefined variable `nope`"));
    let d = tree(&[("t.yaml", "variables: {basearch: x}\n")]);
    assert!(err(&d, "t.yaml").contains("`basearch` is reserved"));
}

#[test]
fn unknown_key_names_file_key_and_line() {
    let d = tree(&[
        ("top.yaml", "include: sub/inc.yaml\n"),
        (
            "sub/inc.yaml",
            "ref: x\n\npackages: [a]\nfrobnicate: true\n",
        ),
    ]);
    let e = err(&d, "top.yaml");
    assert!(e.contains("sub/inc.yaml"), "{e}");
    assert!(e.contains("unknown key `frobnicate`"), "{e}");
    assert!(e.contains("line 4"), "{e}");

    let d = tree(&[("t.json", "{\n  \"ref\": \"x\",\n  \"frobnicate\": 1\n}\n")]);
    let e = err(&d, "t.json");
    assert!(
        e.contains("t.json") && e.contains("unknown key `frobnicate`") && e.contains("line 3"),
        "{e}"
    );

    let d = tree(&[("t.yaml", "comment: not in YAML\n")]);
    assert!(err(&d, "t.yaml").contains("unknown key `comment`"));
    let d = tree(&[("t.yaml", "packages: [a]\npackages: [b]\n")]);
    let e = err(&d, "t.yaml");
    assert!(
        e.contains("duplicate key `packages`") && e.contains("line 2"),
        "{e}"
    );
    let d = tree(&[("t.yaml", "default_target: a\ndefault-target: b\n")]);
    assert!(err(&d, "t.yaml").contains("are the same setting"));
    let d = tree(&[("t.yaml", "override-remove: [a]\n")]);
    assert!(err(&d, "t.yaml").contains("client-side"));
    let d = tree(&[("t.yaml", "packages: a\n")]);
    let e = err(&d, "t.yaml");
    assert!(e.contains("packages") && e.contains("line 1"), "{e}");
}

#[test]
fn include_cycle_and_duplicates() {
    let d = tree(&[
        ("a.yaml", "include: b.yaml\n"),
        ("b.yaml", "include: a.yaml\n"),
    ]);
    let e = err(&d, "a.yaml");
    assert!(
        e.contains("include cycle") && e.contains("a.yaml -> "),
        "{e}"
    );

    let d = tree(&[
        ("top.yaml", "include: [l.yaml, r.yaml]\n"),
        ("l.yaml", "include: common.yaml\n"),
        ("r.yaml", "include: common.yaml\n"),
        ("common.yaml", "packages: [c]\n"),
    ]);
    assert!(err(&d, "top.yaml").contains("included more than once"));
    let d = tree(&[("top.yaml", "include: missing.yaml\n")]);
    assert!(err(&d, "top.yaml").contains("include `missing.yaml`"));
}

#[test]
fn json_treefiles() {
    let d = tree(&[
        (
            "t.json",
            r#"{"ref": "j", "include": "y.yaml", "comment-ref": "JSON has no comments", "packages": ["j1 j2"], "releasever": 39,
               "packages-x86_64": ["jx"], "remove-from-packages": [["p", "/usr/share/.*"]]}"#,
        ),
        ("y.yaml", "packages: [y]\n"),
    ]);
    let tf = load(&d, "t.json", "x86_64").unwrap();
    assert_eq!(tf.packages, ["j1", "j2", "jx", "y"]);
    assert_eq!(tf.releasever.as_deref(), Some("39"));
    assert_eq!(tf.remove_from_packages[0].package, "p");
    assert_eq!(tf.remove_from_packages[0].patterns, ["/usr/share/.*"]);
    let out = serde_json::to_value(&tf).unwrap();
    assert_eq!(out["remove-from-packages"], json!([["p", "/usr/share/.*"]]));
    assert_eq!(out["ref"], json!("j"));
}

#[test]
fn unsupported_keys_are_kept_and_merged() {
    let d = tree(&[
        (
            "base.yaml",
            "selinux: true\nlockfile-repos: [pool]\nignore-removed-users: [root, b]\nrpmdb: sqlite\n\
             metadata: {a: base, summary: base}\nmodules: {enable: [\"m:1\"], install: [x]}\n",
        ),
        (
            "top.yaml",
            "include: base.yaml\nselinux: false\nlockfile-repos: [extra]\nignore-removed-users: [a, root]\n\
             metadata: {summary: \"${basearch}\"}\nmodules: {install: [y, x]}\n",
        ),
    ]);
    let tf = load(&d, "top.yaml", "x86_64").unwrap();
    assert_eq!(
        tf.unsupported_keys(),
        [
            "ignore-removed-users",
            "lockfile-repos",
            "metadata",
            "modules",
            "rpmdb",
            "selinux"
        ]
    );
    assert_eq!(tf.unsupported["selinux"], json!(false));
    assert_eq!(tf.unsupported["lockfile-repos"], json!(["pool", "extra"]));
    assert_eq!(
        tf.unsupported["ignore-removed-users"],
        json!(["a", "b", "root"])
    );
    assert_eq!(
        tf.unsupported["metadata"],
        json!({"a": "base", "summary": "x86_64"})
    );
    assert_eq!(
        tf.unsupported["modules"],
        json!({"enable": ["m:1"], "install": ["x", "y"]})
    );
    let out = serde_json::to_value(&tf).unwrap();
    assert_eq!(out["rpmdb"], json!("sqlite"));
}

#[test]
fn file_relative_paths() {
    let d = tree(&[
        ("top.yaml", "include: sub/inc.yaml\n"),
        (
            "sub/inc.yaml",
            "add-files: [[files/motd, /etc/motd]]\npostprocess-script: post.sh\n\
             check-passwd: {type: file, filename: passwd}\ninitramfs-generator: /usr/bin/gen\n",
        ),
        ("sub/files/motd", "hi\n"),
        ("sub/post.sh", "#!/bin/sh\n"),
        ("sub/passwd", "root:x:0:0::/root:/bin/bash\n"),
    ]);
    let tf = load(&d, "top.yaml", "x86_64").unwrap();
    let sub = d.path().canonicalize().unwrap().join("sub");
    assert_eq!(
        tf.add_files,
        [(sub.join("files/motd"), "/etc/motd".to_string())]
    );
    assert_eq!(
        tf.postprocess_script.as_deref(),
        Some(sub.join("post.sh").as_path())
    );
    assert_eq!(
        tf.unsupported["check-passwd"]["filename"],
        json!(sub.join("passwd").to_str().unwrap())
    );
    assert_eq!(tf.initramfs_generator.as_deref(), Some("/usr/bin/gen"));

    let d = tree(&[("t.yaml", "add-files: [[missing, /usr/share/x]]\n")]);
    assert!(err(&d, "t.yaml").contains("add-files entry for /usr/share/x"));
    let d = tree(&[("t.yaml", "add-files: [[t.yaml, /var/x]]\n")]);
    assert!(err(&d, "t.yaml").contains("unsupported destination /var/x"));
    let d = tree(&[("t.yaml", "initramfs-generator: gen\n")]);
    assert!(err(&d, "t.yaml").contains("absolute"));
}

#[test]
fn basearch_key_and_empty_values() {
    let d = tree(&[
        ("t.yaml", "basearch: aarch64\n"),
        ("e.yaml", "# nothing\n"),
        (
            "n.yaml",
            "packages:\n  # - all commented out\nref:\nselinux:\nlockfile-repos:\ninclude:\n",
        ),
    ]);
    let n = load(&d, "n.yaml", "x86_64").unwrap();
    assert!(n.packages.is_empty() && n.r#ref.is_none() && n.unsupported.is_empty());
    assert!(err(&d, "t.yaml").contains("cross-composes"));
    assert_eq!(load(&d, "t.yaml", "aarch64").unwrap().basearch, "aarch64");
    assert!(load(&d, "e.yaml", "x86_64").unwrap().packages.is_empty());
}
