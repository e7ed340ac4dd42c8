//! `passwd.users` and `passwd.groups`: edits the account files in memory and
//! plans home directories and `~/.ssh/authorized_keys`.

use fs_err as fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};

use super::passwd::{GroupEntry, PasswdEntry};
use super::plan::{clean_path, Op, Planner};
use super::schema;

impl Planner<'_> {
    pub(super) fn passwd(&mut self, pw: &schema::Passwd) -> Result<usize> {
        let before = (
            self.accounts.render_passwd(),
            self.accounts.render_group(),
            self.accounts.render_shadow(),
        );
        for (i, g) in pw.groups.iter().flatten().enumerate() {
            self.group(g)
                .with_context(|| format!("passwd.groups[{i}] ({})", g.name))?;
        }
        let mut home_ops = Vec::new();
        let users = pw.users.as_deref().unwrap_or_default();
        for (i, u) in users.iter().enumerate() {
            self.user(u, &mut home_ops)
                .with_context(|| format!("passwd.users[{i}] ({})", u.name))?;
        }
        let after = (
            self.accounts.render_passwd(),
            self.accounts.render_group(),
            self.accounts.render_shadow(),
        );
        for (name, old, new, default_mode) in [
            ("passwd", &before.0, after.0, 0o644),
            ("group", &before.1, after.1, 0o644),
            ("shadow", &before.2, after.2, 0o600),
        ] {
            if *old != new {
                let path = Path::new("/etc").join(name);
                let mode = fs::metadata(self.host(&path))
                    .map(|m| m.mode() & 0o7777)
                    .unwrap_or(default_mode);
                self.claim(&path)?;
                self.ops.push(Op::File {
                    path,
                    data: new.into_bytes(),
                    mode,
                    owner: (0, 0),
                    replace: false,
                });
            }
        }
        self.ops.append(&mut home_ops);
        Ok(users.len())
    }

    fn group(&mut self, g: &schema::Group) -> Result<()> {
        let schema::Group {
            name,
            gid,
            password_hash,
            system,
            should_exist,
        } = g;
        self.since(2, should_exist.is_some(), "shouldExist")?;
        if *should_exist == Some(false) {
            self.accounts.groups.retain(|x| x.name != *name);
            return Ok(());
        }
        if let Some(existing) = self.accounts.group_mut(name) {
            if gid.is_some_and(|id| id != existing.gid) {
                bail!("gid: group exists with gid {}", existing.gid);
            }
            if let Some(h) = password_hash {
                existing.password = h.clone();
            }
            return Ok(());
        }
        let range = if system.unwrap_or(false) {
            100..1000
        } else {
            1000..60000
        };
        let gid = match gid {
            Some(id) if self.accounts.groups.iter().any(|x| x.gid == *id) => {
                bail!("gid: {id} is already used")
            }
            Some(id) => *id,
            None => self
                .accounts
                .free_gid(range)
                .ok_or_else(|| anyhow!("no free gid"))?,
        };
        self.accounts.groups.push(GroupEntry {
            name: name.clone(),
            gid,
            password: password_hash.clone().unwrap_or_else(|| "x".into()),
            members: Vec::new(),
        });
        Ok(())
    }

    fn user(&mut self, u: &schema::User, home_ops: &mut Vec<Op>) -> Result<()> {
        // Each field is handled by a step below: a new schema field must be placed here.
        #[rustfmt::skip]
        let schema::User {
            name, password_hash: _, ssh_authorized_keys: _, uid: _, gecos: _, home_dir: _,
            no_create_home: _, primary_group: _, groups: _, no_user_group: _,
            _no_log_init: _, shell: _, system: _, should_exist: _,
        } = u;
        self.since(2, u.should_exist.is_some(), "shouldExist")?;
        if name.is_empty() || name.contains([':', '\n', '/']) {
            bail!("name: invalid user name {name:?}");
        }
        if u.should_exist == Some(false) {
            self.accounts.remove_user(name);
            return Ok(());
        }
        let primary_gid = match &u.primary_group {
            Some(g) => Some(
                self.accounts
                    .group(g)
                    .ok_or_else(|| anyhow!("primaryGroup: no group {g:?}"))?
                    .gid,
            ),
            None => None,
        };
        let new = self.accounts.user(name).is_none();
        if new {
            self.create_user(u, primary_gid)?;
        } else {
            self.update_user(u, primary_gid)?;
        }
        if let Some(h) = &u.password_hash {
            self.accounts.set_shadow_password(name, h);
        }
        self.join_groups(name, u.groups.iter().flatten())?;
        self.plan_home(u, new, home_ops)
    }

    /// A new passwd entry (and its user group unless told otherwise), password locked.
    fn create_user(&mut self, u: &schema::User, primary_gid: Option<u32>) -> Result<()> {
        let name = &u.name;
        let range = if u.system.unwrap_or(false) {
            100..1000
        } else {
            1000..60000
        };
        let uid = match u.uid {
            Some(id) if self.accounts.users.iter().any(|x| x.uid == id) => {
                bail!("uid: {id} is already used")
            }
            Some(id) => id,
            None => self
                .accounts
                .free_uid(range.clone())
                .ok_or_else(|| anyhow!("no free uid"))?,
        };
        let gid = match primary_gid {
            Some(g) => g,
            None if u.no_user_group.unwrap_or(false) => {
                self.accounts.group("users").map_or(100, |g| g.gid)
            }
            None => self.user_group(name, uid, range)?,
        };
        self.accounts.users.push(PasswdEntry {
            name: name.clone(),
            uid,
            gid,
            gecos: u.gecos.clone().unwrap_or_default(),
            home: u
                .home_dir
                .clone()
                .unwrap_or_else(|| format!("/home/{name}")),
            shell: u.shell.clone().unwrap_or_else(|| "/bin/sh".into()),
        });
        if !self.accounts.has_shadow(name) {
            self.accounts.set_shadow_password(name, "!");
        }
        Ok(())
    }

    /// The gid of the group named like the user: the existing one, or a new one
    /// with the uid as gid when that is free.
    fn user_group(&mut self, name: &str, uid: u32, range: std::ops::Range<u32>) -> Result<u32> {
        if let Some(g) = self.accounts.group(name) {
            return Ok(g.gid);
        }
        let gid = if self.accounts.groups.iter().any(|g| g.gid == uid) {
            self.accounts
                .free_gid(range)
                .ok_or_else(|| anyhow!("no free gid"))?
        } else {
            uid
        };
        self.accounts.groups.push(GroupEntry {
            name: name.to_string(),
            gid,
            password: "x".into(),
            members: Vec::new(),
        });
        Ok(gid)
    }

    /// Ignition changes what a config gives of an existing user, never its uid.
    fn update_user(&mut self, u: &schema::User, primary_gid: Option<u32>) -> Result<()> {
        let e = self
            .accounts
            .user_mut(&u.name)
            .ok_or_else(|| anyhow!("no user {:?} to update", u.name))?;
        if u.uid.is_some_and(|id| id != e.uid) {
            bail!(
                "uid: user exists with uid {}; changing it is not supported",
                e.uid
            );
        }
        if let Some(g) = &u.gecos {
            e.gecos = g.clone();
        }
        if let Some(h) = &u.home_dir {
            e.home = h.clone();
        }
        if let Some(s) = &u.shell {
            e.shell = s.clone();
        }
        if let Some(g) = primary_gid {
            e.gid = g;
        }
        Ok(())
    }

    fn join_groups<'a>(
        &mut self,
        name: &str,
        groups: impl Iterator<Item = &'a String>,
    ) -> Result<()> {
        for g in groups {
            let grp = self
                .accounts
                .group_mut(g)
                .ok_or_else(|| anyhow!("groups: no group {g:?}"))?;
            if !grp.members.iter().any(|m| m == name) {
                grp.members.push(name.to_string());
            }
        }
        Ok(())
    }

    /// The home directory of a new user and its `.ssh/authorized_keys`, as ops
    /// applied after the passwd files are written.
    fn plan_home(&mut self, u: &schema::User, new: bool, home_ops: &mut Vec<Op>) -> Result<()> {
        let e = self
            .accounts
            .user(&u.name)
            .ok_or_else(|| anyhow!("no user {:?} after adding it", u.name))?
            .clone();
        let home = clean_path(&e.home).context("homeDir")?;
        let owner = (e.uid, e.gid);
        if new && !u.no_create_home.unwrap_or(false) && !self.host(&home).exists() {
            home_ops.push(Op::Dir {
                path: home.clone(),
                mode: 0o700,
                owner,
                replace: false,
            });
        }
        let keys = u.ssh_authorized_keys.as_deref().unwrap_or_default();
        if keys.is_empty() {
            return Ok(());
        }
        let ssh = home.join(".ssh");
        let file = ssh.join("authorized_keys");
        self.claim(&file)?;
        // Keep keys already there; add ours once each.
        let mut text = fs::read_to_string(self.host(&file)).unwrap_or_default();
        for k in keys.iter().map(|k| k.trim()).filter(|k| !k.is_empty()) {
            if !text.lines().any(|l| l.trim() == k) {
                if !text.is_empty() && !text.ends_with('\n') {
                    text.push('\n');
                }
                text.push_str(k);
                text.push('\n');
            }
        }
        home_ops.push(Op::Dir {
            path: ssh,
            mode: 0o700,
            owner,
            replace: false,
        });
        home_ops.push(Op::File {
            path: file,
            data: text.into_bytes(),
            mode: 0o600,
            owner,
            replace: false,
        });
        Ok(())
    }
}
