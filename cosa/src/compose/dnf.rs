//! libdnf wrapper (placeholder).
