//! Logging to stderr through `tracing`, filtered by `RUST_LOG` (default: info).

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
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
