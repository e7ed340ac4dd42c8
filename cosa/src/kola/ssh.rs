//! kola's SSH transport, over the OpenSSH client (`ssh`, `ssh-keygen`).
//!
//! Upstream kola reaches its guests over SSH; so does cosa for a stream
//! without the cosa agent. A run makes one key pair, every VM's Ignition
//! config authorizes it for `core`, and each VM forwards a loopback port
//! that QEMU picks (`hostfwd=tcp:127.0.0.1:0-:22`, read back over QMP), so
//! parallel VMs never race for a port. One master connection per boot
//! (`ssh -M`, a child of cosa) carries every command of that boot.
//!
//! The OpenSSH client rather than an SSH library: it is what users debug
//! with (`ssh.log` and the command lines are theirs to rerun), and no key
//! exchange or cipher code is ours to maintain.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use fs_err as fs;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Child;
use tokio::time::Instant;

use cmdext::CommandRunExt;

/// The user kola logs in as (passwordless sudo on the streams it tests).
pub const USER: &str = "core";

/// A run's key pair.
#[derive(Debug, Clone)]
pub struct KeyPair {
    pub private: PathBuf,
    /// The `authorized_keys` line.
    pub public: String,
}

impl KeyPair {
    /// Makes an ed25519 key pair without passphrase at `dir/id_ed25519`.
    pub fn generate(dir: &Path) -> Result<KeyPair> {
        fs::create_dir_all(dir)?;
        let private = dir.join("id_ed25519");
        for f in [private.clone(), private.with_extension("pub")] {
            if f.exists() {
                fs::remove_file(&f)?;
            }
        }
        cmdext::command("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "cosa-kola", "-f"])
            .arg(&private)
            .run()
            .context("making the run's SSH key pair (ssh-keygen, from openssh-client)")?;
        let public = fs::read_to_string(private.with_extension("pub"))?
            .trim()
            .to_string();
        Ok(KeyPair { private, public })
    }
}

/// Adds `key` to `passwd.users[name=user].sshAuthorizedKeys` of an Ignition
/// config, keeping the user's other settings and keys (Ignition merges users
/// by name the same way).
pub fn authorize(config: &mut Value, user: &str, key: &str) -> Result<()> {
    let root = config
        .as_object_mut()
        .ok_or_else(|| anyhow!("the Ignition config is not a JSON object"))?;
    let passwd = root
        .entry("passwd")
        .or_insert_with(|| Value::Object(Default::default()))
        .as_object_mut()
        .ok_or_else(|| anyhow!("the Ignition config's passwd is not an object"))?;
    let users = passwd
        .entry("users")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| anyhow!("the Ignition config's passwd.users is not a list"))?;
    let idx = match users.iter().position(|u| u["name"] == user) {
        Some(i) => i,
        None => {
            users.push(serde_json::json!({ "name": user }));
            users.len() - 1
        }
    };
    let entry = users[idx]
        .as_object_mut()
        .ok_or_else(|| anyhow!("passwd.users[{idx}] is not an object"))?;
    let keys = entry
        .entry("sshAuthorizedKeys")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| anyhow!("passwd.users[{user}].sshAuthorizedKeys is not a list"))?;
    if !keys.iter().any(|k| k == key) {
        keys.push(Value::String(key.to_string()));
    }
    Ok(())
}

/// Reads the port QEMU bound for a `hostfwd` to `guest_port` from the
/// output of the monitor's `info usernet`.
pub fn forwarded_port(info_usernet: &str, guest_port: u16) -> Option<u16> {
    // "  TCP[HOST_FORWARD]  12       127.0.0.1 35475       10.0.2.15    22     0     0"
    info_usernet.lines().find_map(|l| {
        let w: Vec<&str> = l.split_whitespace().collect();
        if !w.first()?.starts_with("TCP[HOST_FORWARD]") || w.len() < 6 {
            return None;
        }
        (w[5].parse::<u16>().ok()? == guest_port)
            .then(|| w[3].parse().ok())
            .flatten()
    })
}

/// `'word'` for a POSIX shell.
pub fn quote(word: &str) -> String {
    shlex::try_quote(word)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| format!("'{}'", word.replace('\'', "'\\''").replace('\0', "")))
}

/// Where one VM's sshd is, and how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    pub port: u16,
    pub key: PathBuf,
    /// The master connection's socket (short: a Unix socket path is at most 108 bytes).
    pub control: PathBuf,
    /// The VM's `ssh.log`: ssh's own complaints.
    pub log: PathBuf,
}

impl Target {
    fn options(&self) -> Vec<OsString> {
        let mut a: Vec<OsString> = ["-F", "/dev/null", "-p"]
            .iter()
            .map(OsString::from)
            .collect();
        a.push(self.port.to_string().into());
        a.push("-i".into());
        a.push(self.key.clone().into());
        for o in [
            "IdentitiesOnly=yes",
            "BatchMode=yes",
            // A new host key on every VM: nothing to pin, nothing to remember.
            "StrictHostKeyChecking=no",
            "UserKnownHostsFile=/dev/null",
            "GlobalKnownHostsFile=/dev/null",
            "LogLevel=ERROR",
            "ConnectTimeout=10",
            // A guest that stops answering is noticed within 30 s.
            "ServerAliveInterval=5",
            "ServerAliveCountMax=6",
        ] {
            a.push("-o".into());
            a.push(o.into());
        }
        a.push("-o".into());
        let mut cp = OsString::from("ControlPath=");
        cp.push(&self.control);
        a.push(cp);
        a
    }

    fn destination(&self) -> String {
        format!("{USER}@127.0.0.1")
    }

    /// The command line a user can rerun by hand, for logs and errors.
    pub fn shown(&self) -> String {
        format!(
            "ssh -i {} -p {} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null {}",
            self.key.display(),
            self.port,
            self.destination()
        )
    }

    /// An interactive login on this terminal, through the master connection.
    pub fn interactive(&self) -> std::process::Command {
        let mut c = cmdext::command("ssh");
        c.args(self.options())
            .args(["-o", "ControlMaster=no", "-t"])
            .arg(self.destination());
        c
    }

    /// `ssh … REMOTE` through the master connection.
    pub fn command(&self, remote: &str) -> tokio::process::Command {
        let mut c = cmdext::async_command("ssh");
        c.args(self.options())
            .args(["-o", "ControlMaster=no", "-T"])
            .arg(self.destination())
            .arg(remote);
        c
    }

    /// Starts the master connection (a child of this process; it ends with
    /// it), trying again until `deadline` while sshd is not up yet.
    pub async fn connect(&self, deadline: Instant) -> Result<Child> {
        let mut last = String::new();
        loop {
            let _ = fs::remove_file(&self.control);
            let err = fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)?;
            let mut master = cmdext::async_command("ssh");
            master
                .args(self.options())
                .args(["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-N"])
                .arg(self.destination())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(err.into_file());
            let mut child = master.spawn().context("starting ssh (openssh-client)")?;
            loop {
                tokio::time::sleep(Duration::from_millis(250)).await;
                if let Ok(Some(s)) = child.try_wait() {
                    last = format!("ssh exited ({s}); see {}", self.log.display());
                    break;
                }
                if self.control.exists() && self.check().await {
                    return Ok(child);
                }
                if Instant::now() >= deadline {
                    let _ = child.kill().await;
                    bail!(
                        "no SSH connection to 127.0.0.1:{} by the deadline ({})",
                        self.port,
                        if last.is_empty() {
                            "still connecting"
                        } else {
                            &last
                        }
                    );
                }
            }
            if Instant::now() >= deadline {
                bail!("no SSH connection to 127.0.0.1:{}: {last}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(750)).await;
        }
    }

    /// Whether the master connection is up.
    async fn check(&self) -> bool {
        let mut c = cmdext::async_command("ssh");
        c.args(self.options())
            .args(["-O", "check"])
            .arg(self.destination())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        matches!(c.status().await, Ok(s) if s.success())
    }
}

/// How a remote command ended.
#[derive(Debug)]
pub enum Ended {
    Exited(ExitStatus),
    TimedOut,
}

/// What a remote command printed and how it ended.
#[derive(Debug)]
pub struct Captured {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub ended: Ended,
}

impl Captured {
    /// The remote command ran and exited 0.
    pub fn ok(&self) -> bool {
        matches!(&self.ended, Ended::Exited(s) if s.success())
    }

    /// ssh itself failed (255): no connection, or it dropped.
    pub fn connection_failed(&self) -> bool {
        matches!(&self.ended, Ended::Exited(s) if s.code() == Some(255))
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Runs `cmd` (from [`Target::command`]) with `stdin`, until it exits or
/// `deadline` passes (then it is killed).
pub async fn capture(
    mut cmd: tokio::process::Command,
    stdin: Option<Vec<u8>>,
    deadline: Instant,
) -> Result<Captured> {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().context("starting ssh (openssh-client)")?;
    let feeder = stdin.map(|data| {
        let mut w = child.stdin.take().expect("piped stdin");
        tokio::spawn(async move {
            let _ = w.write_all(&data).await;
            let _ = w.shutdown().await;
        })
    });
    let out = tokio::spawn(read_all(child.stdout.take().expect("piped stdout")));
    let err = tokio::spawn(read_all(child.stderr.take().expect("piped stderr")));
    let ended = tokio::select! {
        s = child.wait() => Ended::Exited(s.context("waiting for ssh")?),
        _ = tokio::time::sleep_until(deadline) => {
            let _ = child.kill().await;
            Ended::TimedOut
        }
    };
    if let Some(f) = feeder {
        f.abort();
    }
    Ok(Captured {
        stdout: out.await.unwrap_or_default(),
        stderr: err.await.unwrap_or_default(),
        ended,
    })
}

async fn read_all(mut r: impl AsyncRead + Unpin) -> Vec<u8> {
    let mut v = Vec::new();
    let _ = r.read_to_end(&mut v).await;
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn authorize_adds_core_with_the_key() {
        let mut c = json!({"ignition": {"version": "3.0.0"}});
        authorize(&mut c, "core", "ssh-ed25519 AAAA k").unwrap();
        assert_eq!(
            c["passwd"]["users"],
            json!([{"name": "core", "sshAuthorizedKeys": ["ssh-ed25519 AAAA k"]}])
        );
    }

    #[test]
    fn authorize_merges_with_the_tests_own_user_entry() {
        let mut c = json!({"ignition": {"version": "3.3.0"}, "passwd": {"users": [
            {"name": "alice"},
            {"name": "core", "groups": ["wheel"], "sshAuthorizedKeys": ["ssh-rsa B mine"]}
        ]}});
        authorize(&mut c, "core", "ssh-ed25519 AAAA k").unwrap();
        authorize(&mut c, "core", "ssh-ed25519 AAAA k").unwrap();
        assert_eq!(
            c["passwd"]["users"][1],
            json!({"name": "core", "groups": ["wheel"],
                   "sshAuthorizedKeys": ["ssh-rsa B mine", "ssh-ed25519 AAAA k"]})
        );
        assert_eq!(c["passwd"]["users"][0], json!({"name": "alice"}));
    }

    #[test]
    fn authorize_refuses_a_malformed_config() {
        let mut c = json!({"passwd": {"users": {"core": 1}}});
        let e = authorize(&mut c, "core", "k").unwrap_err();
        assert!(e.to_string().contains("passwd.users is not a list"), "{e}");
    }

    #[test]
    fn reads_the_forwarded_port() {
        let info = "Hub -1 (#net091):\r\n  Protocol[State]    FD  Source Address  Port   Dest. Address  Port RecvQ SendQ\r\n  TCP[HOST_FORWARD]  12       127.0.0.1 35475       10.0.2.15    22     0     0\r\n";
        assert_eq!(forwarded_port(info, 22), Some(35475));
        assert_eq!(forwarded_port(info, 80), None);
        assert_eq!(forwarded_port("garbage", 22), None);
    }

    #[test]
    fn quotes_for_the_remote_shell() {
        assert_eq!(quote("plain"), "plain");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), "\"it's\"");
    }
}
