//! Logging to stderr through `tracing`, filtered by `RUST_LOG` (default: info).

use tracing_subscriber::EnvFilter;

pub fn init() {
    use std::io::IsTerminal;
    // Colours only on a terminal: CI logs and `podman run` without -t get plain text.
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(ansi)
        .without_time()
        .try_init();
}

/// Times the steps of a long operation: each `done` logs (at debug) how long the step
/// took, and the whole is summed up when the value is dropped.
pub struct Phases {
    what: &'static str,
    start: std::time::Instant,
    last: std::time::Instant,
    steps: Vec<(&'static str, f64)>,
}

impl Phases {
    pub fn new(what: &'static str) -> Self {
        let now = std::time::Instant::now();
        Phases {
            what,
            start: now,
            last: now,
            steps: Vec::new(),
        }
    }

    pub fn done(&mut self, step: &'static str) {
        let now = std::time::Instant::now();
        let secs = (now - self.last).as_secs_f64();
        tracing::debug!("{}: {step} took {secs:.2} s", self.what);
        self.steps.push((step, secs));
        self.last = now;
    }
}

impl Drop for Phases {
    fn drop(&mut self) {
        let steps: Vec<String> = self
            .steps
            .iter()
            .filter(|(_, s)| *s >= 0.005)
            .map(|(n, s)| format!("{n} {s:.2}"))
            .collect();
        tracing::debug!(
            "{} in {:.2} s: {}",
            self.what,
            self.start.elapsed().as_secs_f64(),
            steps.join(", ")
        );
    }
}

/// Progress of a long step: a bar on a terminal (none when `quiet`, e.g. `--json`),
/// and the step's lines printed above it. Shared by worker threads.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// `unit` names what is counted ("tests", "packages").
    pub fn new(total: usize, unit: &str, quiet: bool) -> Progress {
        use std::io::IsTerminal;
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(total as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template(&format!(
                    "[{{elapsed_precise}}] {{bar:30}} {{pos}}/{{len}} {unit}"
                ))
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            b
        });
        Progress { bar }
    }

    pub fn line(&self, s: &str) {
        match &self.bar {
            Some(b) => b.println(s),
            None => eprintln!("{s}"),
        }
    }

    pub fn add_total(&self, n: usize) {
        if let Some(b) = &self.bar {
            b.inc_length(n as u64);
        }
    }

    pub fn inc(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
