//! Raw FFI bindings to the system libdnf's C API (`dnf_*`, `hy_*`), generated at
//! build time by bindgen from the headers pkg-config finds.
//!
//! GLib types (`GError`, `GPtrArray`, `gboolean`, `GObject`, `GCancellable`, ...) are
//! the glib-rs 0.18 `-sys` crates' own, re-exported here, so values move between
//! these bindings and glib-rs without casts. Use through the one safe wrapper in
//! `cosa::compose::dnf`.

#![allow(clippy::all, unsafe_code, missing_docs)]

pub use gio_sys::*;
pub use glib_sys::*;
pub use gobject_sys::*;

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
