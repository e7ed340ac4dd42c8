//! Ignition config spec 3.x (3.0.0 – 3.4.0) as serde types.
//!
//! Every key of spec 3.4.0 is known here, so an unknown key is a parse error
//! naming it (as Ignition does). Sections this agent cannot apply are kept as
//! raw JSON and refused by `plan` when non-empty.

use serde::Deserialize;
use serde_json::Value;

/// Accepted `ignition.version` values and their minor number.
pub const VERSIONS: &[(&str, u32)] = &[
    ("3.0.0", 0),
    ("3.1.0", 1),
    ("3.2.0", 2),
    ("3.3.0", 3),
    ("3.4.0", 4),
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Config {
    pub ignition: Ignition,
    pub kernel_arguments: Option<KernelArguments>,
    pub passwd: Option<Passwd>,
    pub storage: Option<Storage>,
    pub systemd: Option<Systemd>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Ignition {
    pub version: String,
    /// Resolved (and removed) by `merge::resolve` before the config is planned.
    pub config: Option<References>,
    /// Accepted with no effect: it only tunes remote fetches, which are refused.
    #[serde(rename = "proxy")]
    pub _proxy: Option<Value>,
    pub security: Option<Value>,
    /// Accepted with no effect, like `proxy`.
    #[serde(rename = "timeouts")]
    pub _timeouts: Option<Value>,
}

/// `ignition.config`: other configs to merge onto this one, or to use instead.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct References {
    pub merge: Option<Vec<Resource>>,
    pub replace: Option<Resource>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct KernelArguments {
    pub should_exist: Option<Vec<String>>,
    pub should_not_exist: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Passwd {
    pub users: Option<Vec<User>>,
    pub groups: Option<Vec<Group>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct User {
    pub name: String,
    pub password_hash: Option<String>,
    pub ssh_authorized_keys: Option<Vec<String>>,
    pub uid: Option<u32>,
    pub gecos: Option<String>,
    pub home_dir: Option<String>,
    pub no_create_home: Option<bool>,
    pub primary_group: Option<String>,
    pub groups: Option<Vec<String>>,
    pub no_user_group: Option<bool>,
    /// Accepted with no effect: this stream keeps no lastlog/faillog.
    #[serde(rename = "noLogInit")]
    pub _no_log_init: Option<bool>,
    pub shell: Option<String>,
    pub system: Option<bool>,
    pub should_exist: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Group {
    pub name: String,
    pub gid: Option<u32>,
    pub password_hash: Option<String>,
    pub system: Option<bool>,
    pub should_exist: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Storage {
    pub disks: Option<Value>,
    pub raid: Option<Value>,
    pub filesystems: Option<Value>,
    pub luks: Option<Value>,
    pub files: Option<Vec<File>>,
    pub directories: Option<Vec<Directory>>,
    pub links: Option<Vec<Link>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct File {
    pub path: String,
    pub overwrite: Option<bool>,
    pub contents: Option<Resource>,
    pub append: Option<Vec<Resource>>,
    pub mode: Option<u32>,
    pub user: Option<Owner>,
    pub group: Option<Owner>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Directory {
    pub path: String,
    pub overwrite: Option<bool>,
    pub mode: Option<u32>,
    pub user: Option<Owner>,
    pub group: Option<Owner>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Link {
    pub path: String,
    pub overwrite: Option<bool>,
    pub user: Option<Owner>,
    pub group: Option<Owner>,
    pub target: String,
    pub hard: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Resource {
    pub source: Option<String>,
    pub compression: Option<String>,
    pub http_headers: Option<Value>,
    pub verification: Option<Verification>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Verification {
    pub hash: Option<String>,
}

/// `user` / `group` of a filesystem node: by id or by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Owner {
    pub id: Option<u32>,
    pub name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Systemd {
    pub units: Option<Vec<Unit>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Unit {
    pub name: String,
    pub enabled: Option<bool>,
    pub mask: Option<bool>,
    pub contents: Option<String>,
    pub dropins: Option<Vec<Dropin>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Dropin {
    pub name: String,
    pub contents: Option<String>,
}
