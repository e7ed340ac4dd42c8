//! /etc/passwd, /etc/group and /etc/shadow of the target root, edited in
//! memory (the plan renders them; nothing is written until apply).

use fs_err as fs;
use std::path::Path;

use anyhow::{bail, Context, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub gecos: String,
    pub home: String,
    pub shell: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub password: String,
    pub members: Vec<String>,
}

/// The three account files; `shadow` keeps each line's fields verbatim.
#[derive(Debug, Clone, Default)]
pub struct Accounts {
    pub users: Vec<PasswdEntry>,
    pub groups: Vec<GroupEntry>,
    pub shadow: Vec<Vec<String>>,
}

fn read_opt(path: &Path) -> Result<String> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(s),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn lines(s: &str) -> impl Iterator<Item = (usize, Vec<&str>)> {
    s.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| (i + 1, l.split(':').collect()))
}

fn num(field: &str, file: &str, line: usize) -> Result<u32> {
    field
        .parse()
        .with_context(|| format!("{file} line {line}: bad id {field:?}"))
}

impl Accounts {
    /// Loads the files under `etc` (missing files are empty).
    pub fn load(etc: &Path) -> Result<Accounts> {
        let mut a = Accounts::default();
        for (n, f) in lines(&read_opt(&etc.join("passwd"))?) {
            if f.len() != 7 {
                bail!("/etc/passwd line {n}: expected 7 fields");
            }
            a.users.push(PasswdEntry {
                name: f[0].into(),
                uid: num(f[2], "/etc/passwd", n)?,
                gid: num(f[3], "/etc/passwd", n)?,
                gecos: f[4].into(),
                home: f[5].into(),
                shell: f[6].into(),
            });
        }
        for (n, f) in lines(&read_opt(&etc.join("group"))?) {
            if f.len() != 4 {
                bail!("/etc/group line {n}: expected 4 fields");
            }
            a.groups.push(GroupEntry {
                name: f[0].into(),
                password: f[1].into(),
                gid: num(f[2], "/etc/group", n)?,
                members: f[3]
                    .split(',')
                    .filter(|m| !m.is_empty())
                    .map(Into::into)
                    .collect(),
            });
        }
        for (_, f) in lines(&read_opt(&etc.join("shadow"))?) {
            a.shadow.push(f.into_iter().map(Into::into).collect());
        }
        Ok(a)
    }

    pub fn user(&self, name: &str) -> Option<&PasswdEntry> {
        self.users.iter().find(|u| u.name == name)
    }

    pub fn user_mut(&mut self, name: &str) -> Option<&mut PasswdEntry> {
        self.users.iter_mut().find(|u| u.name == name)
    }

    pub fn group(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.iter().find(|g| g.name == name)
    }

    pub fn group_mut(&mut self, name: &str) -> Option<&mut GroupEntry> {
        self.groups.iter_mut().find(|g| g.name == name)
    }

    /// Lowest unused uid in `range`.
    pub fn free_uid(&self, range: std::ops::Range<u32>) -> Option<u32> {
        range
            .into_iter()
            .find(|id| !self.users.iter().any(|u| u.uid == *id))
    }

    /// Lowest unused gid in `range`.
    pub fn free_gid(&self, range: std::ops::Range<u32>) -> Option<u32> {
        range
            .into_iter()
            .find(|id| !self.groups.iter().any(|g| g.gid == *id))
    }

    /// Sets the password field of `name`'s shadow line, adding the line if needed.
    pub fn set_shadow_password(&mut self, name: &str, hash: &str) {
        if let Some(l) = self.shadow.iter_mut().find(|l| l[0] == name) {
            if l.len() < 2 {
                l.resize(2, String::new());
            }
            l[1] = hash.into();
        } else {
            let days = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() / 86400)
                .unwrap_or(0);
            let line = format!("{name}:{hash}:{days}:0:99999:7:::");
            self.shadow
                .push(line.split(':').map(Into::into).collect::<Vec<String>>());
        }
    }

    pub fn has_shadow(&self, name: &str) -> bool {
        self.shadow.iter().any(|l| l[0] == name)
    }

    pub fn remove_user(&mut self, name: &str) {
        self.users.retain(|u| u.name != name);
        self.shadow.retain(|l| l[0] != name);
        for g in &mut self.groups {
            g.members.retain(|m| m != name);
        }
    }

    pub fn render_passwd(&self) -> String {
        self.users
            .iter()
            .map(|u| {
                format!(
                    "{}:x:{}:{}:{}:{}:{}\n",
                    u.name, u.uid, u.gid, u.gecos, u.home, u.shell
                )
            })
            .collect()
    }

    pub fn render_group(&self) -> String {
        self.groups
            .iter()
            .map(|g| {
                format!(
                    "{}:{}:{}:{}\n",
                    g.name,
                    g.password,
                    g.gid,
                    g.members.join(",")
                )
            })
            .collect()
    }

    pub fn render_shadow(&self) -> String {
        self.shadow.iter().map(|l| l.join(":") + "\n").collect()
    }
}
