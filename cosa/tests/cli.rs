//! The command line is its own reference: every command and option has help that
//! fits a terminal, and the man pages in `docs/man/` are generated from it.
//!
//! After changing the CLI, regenerate the pages with
//! `COSA_UPDATE_DOCS=1 cargo test -p cosa --test cli`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use cosa::cli::Cli;

/// The widest line `--help` may print.
const MAX_COLUMNS: usize = 100;

/// Every command of the CLI with its full name (`cosa kola run`), the root first.
fn all_commands() -> Vec<(String, clap::Command)> {
    fn walk(prefix: &str, cmd: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
        let name = if prefix.is_empty() {
            cmd.get_name().to_string()
        } else {
            format!("{prefix} {}", cmd.get_name())
        };
        out.push((name.clone(), cmd.clone()));
        // clap's generated `help` subcommands document nothing of ours.
        for sub in cmd
            .get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        {
            walk(&name, sub, out);
        }
    }
    let mut root = Cli::command();
    root.build();
    let mut out = Vec::new();
    walk("", &root, &mut out);
    out
}

#[test]
fn every_command_and_option_has_help() {
    let mut missing = Vec::new();
    for (name, cmd) in all_commands() {
        if cmd.get_about().is_none() {
            missing.push(format!("`{name}` has no about text"));
        }
        for arg in cmd.get_arguments().filter(|a| !a.is_hide_set()) {
            if arg.get_help().is_none() && arg.get_long_help().is_none() {
                missing.push(format!("`{name}` option {} has no help", arg.get_id()));
            }
        }
    }
    assert!(missing.is_empty(), "missing help:\n{}", missing.join("\n"));
}

#[test]
fn help_fits_in_a_terminal() {
    let mut wide = Vec::new();
    for (name, mut cmd) in all_commands() {
        for help in [cmd.render_help(), cmd.render_long_help()] {
            for line in help.to_string().lines() {
                let cols = line.chars().count();
                if cols > MAX_COLUMNS {
                    wide.push(format!("`{name} --help` ({cols} columns): {line}"));
                }
            }
        }
    }
    assert!(
        wide.is_empty(),
        "help lines over {MAX_COLUMNS} columns:\n{}",
        wide.join("\n")
    );
}

/// The man pages for every command: file name → roff text.
fn man_pages() -> BTreeMap<String, Vec<u8>> {
    let mut pages = BTreeMap::new();
    for (name, cmd) in all_commands() {
        let page_name = name.replace(' ', "-");
        // clap names are &'static str without its `string` feature; a test may leak.
        let static_name: &'static str = Box::leak(page_name.clone().into_boxed_str());
        let cmd = cmd.name(static_name).bin_name(name);
        let mut roff = Vec::new();
        clap_mangen::Man::new(cmd)
            .render(&mut roff)
            .expect("rendering a man page into memory");
        pages.insert(format!("{page_name}.1"), roff);
    }
    pages
}

fn man_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/man")
}

#[test]
fn man_pages_are_in_sync() {
    let dir = man_dir();
    let pages = man_pages();
    if std::env::var_os("COSA_UPDATE_DOCS").is_some() {
        if dir.exists() {
            std::fs::remove_dir_all(&dir).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        for (file, roff) in &pages {
            std::fs::write(dir.join(file), roff).unwrap();
        }
        return;
    }
    let regenerate = "regenerate with `COSA_UPDATE_DOCS=1 cargo test -p cosa --test cli`";
    let on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e} ({regenerate})", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    if let Some(stale) = on_disk.iter().find(|f| !pages.contains_key(*f)) {
        panic!("docs/man/{stale} is for no command any more: {regenerate}");
    }
    for (file, roff) in &pages {
        let path = dir.join(file);
        let committed = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e} ({regenerate})", path.display()));
        assert!(
            committed == *roff,
            "docs/man/{file} differs from the CLI: {regenerate}"
        );
    }
}
