//! Running subprocesses the one way the project does.
//!
//! - [`command`] is the only place a `std::process::Command` is made (clippy's
//!   `disallowed_methods` forbids `Command::new` elsewhere): the child gets SIGKILL
//!   when the thread that spawned it dies, so no child outlives cosa.
//! - [`CommandRunExt`] runs it with output captured (stderr tail quoted in the
//!   error, both streams in the debug log) or inherited (a user watches it), with
//!   an optional time limit, and shows the command shell-quoted in every error.
//! - With the `tokio` feature, [`AsyncCommandRunExt`] does the same for
//!   `tokio::process::Command` ([`async_command`]).
//!
//! The parent-death signal follows the *thread* that spawned the child (see
//! `prctl(2)`): spawn a child that must outlive the call from a thread that lives
//! as long (the main thread, a runtime worker), not from a short-lived one.

use std::ffi::OsStr;
use std::io::Read;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// How many bytes of a failed command's stderr go into the error.
const STDERR_TAIL: usize = 4096;
/// Commands longer than this are cut in error messages.
const DISPLAY_MAX: usize = 400;

/// A command for `program`, bound to the life of the calling thread.
#[allow(clippy::disallowed_methods)] // the one sanctioned constructor
pub fn command(program: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new(program);
    cmd.lifecycle_bind();
    cmd
}

/// The async twin of [`command`]: also killed when its handle is dropped.
#[cfg(feature = "tokio")]
pub fn async_command(program: impl AsRef<OsStr>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::from(command(program));
    cmd.kill_on_drop(true);
    cmd
}

/// `program arg…`, each word shell-quoted where it needs it, cut at a readable length.
pub fn display(cmd: &Command) -> String {
    let words = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|w| {
            let w = w.to_string_lossy();
            shlex::try_quote(&w).map_or_else(|_| format!("{w:?}"), |q| q.into_owned())
        })
        .collect::<Vec<_>>();
    let mut s = words.join(" ");
    if s.len() > DISPLAY_MAX {
        let mut cut = DISPLAY_MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

fn stderr_tail(bytes: &[u8]) -> String {
    let mut start = bytes.len().saturating_sub(STDERR_TAIL);
    // Start the tail at a line boundary when one is near.
    if start > 0 {
        if let Some(nl) = bytes[start..].iter().position(|&b| b == b'\n') {
            start += nl + 1;
        }
    }
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

/// The error for a command that exited with `status`, quoting its stderr tail.
fn failure(shown: &str, status: ExitStatus, stderr: &[u8]) -> anyhow::Error {
    let err = stderr_tail(stderr);
    if err.is_empty() {
        anyhow::anyhow!("`{shown}` failed: {status}")
    } else {
        anyhow::anyhow!("`{shown}` failed: {status}:\n{err}")
    }
}

/// The error for a command that did not start. A bare program name found nowhere in
/// `PATH` is a tool that is not installed: say so, and what installs cosa's tools.
fn start_error(cmd: &Command, shown: &str, e: std::io::Error) -> anyhow::Error {
    let program = cmd.get_program();
    let bare = !program.as_encoded_bytes().contains(&b'/');
    if e.kind() == std::io::ErrorKind::NotFound && bare && !in_path(program) {
        return anyhow::anyhow!(
            "starting `{shown}`: `{}` is not installed (not found in PATH); \
             ci/install-deps.sh --runtime installs every tool cosa runs",
            program.to_string_lossy()
        );
    }
    anyhow::Error::new(e).context(format!("starting `{shown}`"))
}

fn in_path(program: &OsStr) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

fn log_output(shown: &str, out: &Output) {
    for (what, b) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
        if !b.is_empty() {
            tracing::debug!("{shown} {what}: {}", String::from_utf8_lossy(b).trim());
        }
    }
}

pub trait CommandRunExt {
    /// Send SIGKILL to the child when the spawning thread dies (set by [`command`]).
    fn lifecycle_bind(&mut self) -> &mut Self;
    /// Run with output captured; on failure the error quotes the command and its stderr tail.
    fn run(&mut self) -> Result<()>;
    /// Run with stdout and stderr going to ours (progress a user watches).
    fn run_inherited(&mut self) -> Result<()>;
    /// Run captured and return the whole output of a successful run.
    fn run_get_output(&mut self) -> Result<Output>;
    /// Run captured and return stdout as UTF-8.
    fn run_get_string(&mut self) -> Result<String>;
    /// Run captured and parse stdout as JSON.
    fn run_get_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T>;
    /// Run captured whatever its exit status, for callers that judge the status
    /// themselves (an expected failure, an exit code with a meaning).
    fn run_unchecked(&mut self) -> Result<Output>;
    /// Run captured, killing it (SIGKILL) if it has not finished within `limit`.
    fn run_timeout(&mut self, limit: Duration) -> Result<Output>;
    /// Spawn, naming the command if it cannot start.
    fn spawn_logged(&mut self) -> Result<Child>;
}

impl CommandRunExt for Command {
    fn lifecycle_bind(&mut self) -> &mut Self {
        use std::os::unix::process::CommandExt;
        #[allow(unsafe_code)]
        // SAFETY: the closure runs in the child between fork and exec and only makes
        // one prctl(2) system call, which is async-signal-safe and allocates nothing.
        unsafe {
            self.pre_exec(|| {
                rustix::process::set_parent_process_death_signal(Some(
                    rustix::process::Signal::KILL,
                ))
                .map_err(std::io::Error::from)
            })
        }
    }

    fn run(&mut self) -> Result<()> {
        self.run_get_output().map(drop)
    }

    fn run_inherited(&mut self) -> Result<()> {
        let shown = display(self);
        tracing::debug!("running {shown}");
        let status = self
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .status()
            .map_err(|e| start_error(self, &shown, e))?;
        if !status.success() {
            bail!("`{shown}` failed: {status}");
        }
        Ok(())
    }

    fn run_get_output(&mut self) -> Result<Output> {
        let out = self.run_unchecked()?;
        if !out.status.success() {
            return Err(failure(&display(self), out.status, &out.stderr));
        }
        Ok(out)
    }

    fn run_get_string(&mut self) -> Result<String> {
        let out = self.run_get_output()?;
        String::from_utf8(out.stdout)
            .with_context(|| format!("output of `{}` is not UTF-8", display(self)))
    }

    fn run_get_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let s = self.run_get_string()?;
        serde_json::from_str(&s)
            .with_context(|| format!("parsing JSON output of `{}`", display(self)))
    }

    fn run_unchecked(&mut self) -> Result<Output> {
        let shown = display(self);
        tracing::debug!("running {shown}");
        let out = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| start_error(self, &shown, e))?;
        log_output(&shown, &out);
        Ok(out)
    }

    fn run_timeout(&mut self, limit: Duration) -> Result<Output> {
        let shown = display(self);
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn_logged()?;
        // Drain both pipes while waiting, so a chatty child cannot block on a full pipe.
        let drain = |r: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                buf
            })
        };
        let stdout = drain(child.stdout.take().map(|r| Box::new(r) as _));
        let stderr = drain(child.stderr.take().map(|r| Box::new(r) as _));
        let deadline = Instant::now() + limit;
        let mut pause = Duration::from_millis(1);
        let status = loop {
            if let Some(status) = child
                .try_wait()
                .with_context(|| format!("waiting for `{shown}`"))?
            {
                break Some(status);
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(50));
        };
        let out = Output {
            status: status.unwrap_or_default(),
            stdout: stdout.join().unwrap_or_default(),
            stderr: stderr.join().unwrap_or_default(),
        };
        log_output(&shown, &out);
        let Some(status) = status else {
            let err = stderr_tail(&out.stderr);
            bail!("`{shown}` did not finish within {limit:?} and was killed:\n{err}");
        };
        if !status.success() {
            return Err(failure(&shown, status, &out.stderr));
        }
        Ok(out)
    }

    fn spawn_logged(&mut self) -> Result<Child> {
        let shown = display(self);
        tracing::debug!("spawning {shown}");
        self.spawn().map_err(|e| start_error(self, &shown, e))
    }
}

/// The async twin of [`CommandRunExt`], for `tokio::process::Command`.
#[cfg(feature = "tokio")]
#[allow(async_fn_in_trait)] // used within the workspace only; no Send bound needed
pub trait AsyncCommandRunExt {
    /// Run captured; on failure the error quotes the command and its stderr tail.
    async fn run(&mut self) -> Result<()>;
    /// Run captured and return stdout as UTF-8.
    async fn run_get_string(&mut self) -> Result<String>;
    /// Run captured, killing it if it has not finished within `limit`.
    async fn run_timeout(&mut self, limit: Duration) -> Result<Output>;
}

#[cfg(feature = "tokio")]
impl AsyncCommandRunExt for tokio::process::Command {
    async fn run(&mut self) -> Result<()> {
        self.run_get_string().await.map(drop)
    }

    async fn run_get_string(&mut self) -> Result<String> {
        let shown = display(self.as_std());
        tracing::debug!("running {shown}");
        let out = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .output()
            .await
            .map_err(|e| start_error(self.as_std(), &shown, e))?;
        log_output(&shown, &out);
        if !out.status.success() {
            return Err(failure(&shown, out.status, &out.stderr));
        }
        String::from_utf8(out.stdout).with_context(|| format!("output of `{shown}` is not UTF-8"))
    }

    async fn run_timeout(&mut self, limit: Duration) -> Result<Output> {
        let shown = display(self.as_std());
        tracing::debug!("running {shown}");
        // kill_on_drop (set by async_command) ends the child when the timeout drops it.
        self.kill_on_drop(true)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let out = match tokio::time::timeout(limit, self.output()).await {
            Ok(out) => out.map_err(|e| start_error(self.as_std(), &shown, e))?,
            Err(_) => bail!("`{shown}` did not finish within {limit:?} and was killed"),
        };
        log_output(&shown, &out);
        if !out.status.success() {
            return Err(failure(&shown, out.status, &out.stderr));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_quotes_command_and_stderr() {
        let e = command("sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .run()
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("boom"), "{msg}");
        assert!(msg.contains("sh -c 'echo boom >&2; exit 3'"), "{msg}");
        assert!(msg.contains("exit status: 3"), "{msg}");
    }

    #[test]
    fn missing_program_is_named() {
        let e = command("/nonexistent/prog").arg("x").run().unwrap_err();
        assert!(
            format!("{e:#}").contains("starting `/nonexistent/prog x`"),
            "{e:#}"
        );
    }

    #[test]
    fn program_not_installed_says_so() {
        let e = command("cosa-no-such-tool").arg("x").run().unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("starting `cosa-no-such-tool x`"), "{msg}");
        assert!(
            msg.contains("`cosa-no-such-tool` is not installed"),
            "{msg}"
        );
        let e = command("cosa-no-such-tool").spawn_logged().unwrap_err();
        assert!(format!("{e:#}").contains("is not installed"), "{e:#}");
    }

    #[test]
    fn json_output_parses() {
        let v: serde_json::Value = command("echo").arg(r#"{"a": 1}"#).run_get_json().unwrap();
        assert_eq!(v["a"], 1);
    }

    #[test]
    fn unchecked_returns_failing_status() {
        let out = command("sh")
            .args(["-c", "exit 77"])
            .run_unchecked()
            .unwrap();
        assert_eq!(out.status.code(), Some(77));
    }

    #[test]
    fn timeout_kills_and_says_so() {
        let start = Instant::now();
        let e = command("sleep")
            .arg("30")
            .run_timeout(Duration::from_millis(200))
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(10));
        assert!(format!("{e:#}").contains("did not finish within"), "{e:#}");
        let out = command("echo")
            .arg("hi")
            .run_timeout(Duration::from_secs(30))
            .unwrap();
        assert_eq!(out.stdout, b"hi\n");
    }

    #[test]
    fn long_commands_are_cut_for_display() {
        let mut c = command("echo");
        c.args(std::iter::repeat_n("word", 200));
        let shown = display(&c);
        assert!(shown.chars().count() <= DISPLAY_MAX + 1, "{}", shown.len());
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn child_dies_with_its_thread() {
        // A child spawned from a thread that then exits gets SIGKILL.
        let child = std::thread::spawn(|| command("sleep").arg("30").spawn_logged().unwrap())
            .join()
            .unwrap();
        let mut child = child;
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "{status:?}");
    }

    #[cfg(feature = "tokio")]
    #[tokio::test]
    async fn async_twin_quotes_stderr_and_times_out() {
        let e = async_command("sh")
            .args(["-c", "echo bang >&2; exit 2"])
            .run()
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("bang"), "{e:#}");
        let e = async_command("sleep")
            .arg("30")
            .run_timeout(Duration::from_millis(100))
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("did not finish within"), "{e:#}");
    }
}
