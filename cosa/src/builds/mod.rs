//! Workdir and build history (placeholder).
