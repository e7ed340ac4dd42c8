//! Generates bindings to the system libdnf's C API (`libdnf/libdnf.h`) with bindgen.
//!
//! GLib/GObject/GIO types are not generated: they come from the glib-rs 0.18 `-sys`
//! crates (the workspace's glib version), so values pass between the two freely.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=src/wrapper.h");

    let libdnf = pkg_config::Config::new()
        .atleast_version("0.60")
        .probe("libdnf")
        .expect("pkg-config: libdnf (Debian: libdnf-dev) not found");
    // rpmvercmp comes from librpmio (libdnf links it privately).
    pkg_config::Config::new()
        .probe("rpm")
        .expect("pkg-config: rpm (Debian: librpm-dev) not found");
    // libdnf.pc does not list gobject/gio, which its headers and our callers use.
    let mut include_paths = libdnf.include_paths.clone();
    for lib in ["gobject-2.0", "gio-2.0"] {
        let l = pkg_config::probe_library(lib)
            .unwrap_or_else(|e| panic!("pkg-config: {lib} not found: {e}"));
        include_paths.extend(l.include_paths);
    }

    let mut builder = bindgen::Builder::default()
        .header("src/wrapper.h")
        .allowlist_function("dnf_.*|hy_.*|rpmvercmp")
        .allowlist_type("Dnf.*|Hy.*|_hy_.*")
        .allowlist_var("DNF_.*|HY_.*")
        // GLib, GObject and GIO types come from the glib-sys family (see src/lib.rs).
        .blocklist_type("_?G[A-Z].*")
        .blocklist_function("g_.*")
        // libsolv internals that leak through a few headers: never touched from Rust.
        .opaque_type("_?Pool|s_Pool|_?Map|s_Map|_?Queue|s_Queue")
        .default_enum_style(bindgen::EnumVariation::Consts)
        .prepend_enum_name(false)
        .layout_tests(false)
        .derive_default(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for d in &libdnf.defines {
        builder = builder.clang_arg(match d.1 {
            Some(v) => format!("-D{}={}", d.0, v),
            None => format!("-D{}", d.0),
        });
    }
    for p in &include_paths {
        builder = builder.clang_arg(format!("-I{}", p.display()));
    }
    let bindings = builder
        .generate()
        .expect("bindgen failed on libdnf/libdnf.h");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap()).join("bindings.rs");
    bindings
        .write_to_file(&out)
        .unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}
