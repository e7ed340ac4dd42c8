//! Lockfiles (placeholder).
