//! Running subprocesses: failures carry the command line and the tail of its stderr.

use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};

/// How many bytes of a failed command's stderr go into the error.
const STDERR_TAIL: usize = 4096;

pub trait CommandRunExt {
    /// Run to completion; on failure the error names the command and quotes its stderr tail.
    fn run(&mut self) -> Result<()>;
    /// Run and return stdout as a string (stderr quoted on failure).
    fn run_get_string(&mut self) -> Result<String>;
    /// Run and parse stdout as JSON.
    fn run_get_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T>;
}

fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    if s.len() > 300 {
        s.truncate(300);
        s.push('…');
    }
    s
}

fn tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_TAIL);
    String::from_utf8_lossy(&bytes[start..]).trim().to_string()
}

fn check(cmd: &Command, out: &Output) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    let err = tail(&out.stderr);
    if err.is_empty() {
        bail!("`{}` failed: {}", describe(cmd), out.status);
    }
    bail!("`{}` failed: {}:\n{}", describe(cmd), out.status, err)
}

impl CommandRunExt for Command {
    fn run(&mut self) -> Result<()> {
        // Output is captured: stderr goes into the error, both into the debug log.
        self.stdout(Stdio::piped()).stderr(Stdio::piped());
        let child = self
            .spawn()
            .with_context(|| format!("starting `{}`", describe(self)))?;
        let out = child
            .wait_with_output()
            .with_context(|| format!("waiting for `{}`", describe(self)))?;
        check(self, &out)?;
        for (what, b) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            if !b.is_empty() {
                tracing::debug!(
                    "{} {what}: {}",
                    describe(self),
                    String::from_utf8_lossy(b).trim()
                );
            }
        }
        Ok(())
    }

    fn run_get_string(&mut self) -> Result<String> {
        let out = self
            .output()
            .with_context(|| format!("starting `{}`", describe(self)))?;
        check(self, &out)?;
        String::from_utf8(out.stdout)
            .with_context(|| format!("output of `{}` is not UTF-8", describe(self)))
    }

    fn run_get_json<T: serde::de::DeserializeOwned>(&mut self) -> Result<T> {
        let s = self.run_get_string()?;
        serde_json::from_str(&s)
            .with_context(|| format!("parsing JSON output of `{}`", describe(self)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_quotes_stderr() {
        let e = Command::new("sh")
            .args(["-c", "echo boom >&2; exit 3"])
            .run()
            .unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("boom"), "{msg}");
        assert!(msg.contains("sh -c"), "{msg}");
    }

    #[test]
    fn json_output_parses() {
        let v: serde_json::Value = Command::new("echo")
            .arg(r#"{"a": 1}"#)
            .run_get_json()
            .unwrap();
        assert_eq!(v["a"], 1);
    }
}
