//! Shared helpers of the projector tests (the workspace's own in `sonic-test-kit`).
#![allow(dead_code)]

pub use sonic_test_kit::{device, fixture_dir, rel_diff};
use std::path::{Path, PathBuf};

/// The per-component tolerance of the project (max |ours - ref| / max |ref|).
pub const PROJECTOR_TOL: f64 = 1e-4;

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join(name)
}
