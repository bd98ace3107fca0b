//! Helpers shared by the tests of the workspace's crates (a `publish = false` crate, used only
//! as a dev-dependency): finding the reference fixtures, the default device, and checking a
//! list of parity results with one readable report.
//!
//! ```no_run
//! use sonic_test_kit::{assert_all_pass, device, fixture};
//! let fixture = fixture("sd15-tiny"); // ../shared/fixtures/sd15-tiny or $SONIC_FIXTURES/sd15-tiny
//! let device = device();
//! # let results: Vec<sonic_core::fixtures::CaseResult> = vec![];
//! // let results = run_something(&fixture, &device);
//! assert_all_pass("sd15-tiny", &results);
//! ```
//!
//! Test code: every helper panics (with the reason) instead of returning an error.

use burn::tensor::{Device, Tensor};
use sonic_core::fixtures::{CaseResult, Fixture, fixtures_root, to_host};
use std::path::{Path, PathBuf};

/// The default device of the tests.
///
/// # Panics
///
/// When no backend is compiled in.
pub fn device() -> Device {
    sonic_core::device::default_device().expect("a default device")
}

/// The folder of one reference fixture (`$SONIC_FIXTURES/<name>`, else
/// `../shared/fixtures/<name>` beside the workspace).
///
/// # Panics
///
/// When the fixtures are not found.
pub fn fixture_dir(name: &str) -> PathBuf {
    fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("reference fixtures not found (../shared/fixtures or $SONIC_FIXTURES)")
        .join(name)
}

/// One reference fixture, opened.
///
/// # Panics
///
/// When it is not found or cannot be read.
pub fn fixture(name: &str) -> Fixture {
    let dir = fixture_dir(name);
    Fixture::open(&dir).unwrap_or_else(|e| panic!("fixture {}: {e}", dir.display()))
}

/// Asserts that `results` is not empty and that every result passes its tolerance; prints
/// them all first. Returns the worst relative error.
///
/// # Panics
///
/// When no result or a failing one is given.
pub fn assert_all_pass(label: &str, results: &[CaseResult]) -> f64 {
    assert!(!results.is_empty(), "{label}: no cases ran");
    let mut worst = 0f64;
    for r in results {
        println!(
            "{label}: {:<40} max_rel {:.3e} max_abs {:.3e} (tol {:.0e}) {}",
            r.id,
            r.cmp.max_rel,
            r.cmp.max_abs,
            r.tol,
            if r.passed() { "ok" } else { "FAIL" }
        );
        worst = worst.max(r.cmp.max_rel);
    }
    let failed: Vec<_> = results.iter().filter(|r| !r.passed()).collect();
    assert!(failed.is_empty(), "{label}: failing cases: {failed:#?}");
    println!(
        "{label}: {} results, worst max_rel {worst:.3e}",
        results.len()
    );
    worst
}

/// `max |a - b| / max |b|` of two tensors of the same shape.
///
/// # Panics
///
/// When the shapes differ or a tensor cannot be read back.
pub fn rel_diff<const D: usize>(a: &Tensor<D>, b: &Tensor<D>) -> f64 {
    assert_eq!(a.dims(), b.dims());
    sonic_core::fixtures::compare_slices(&to_host(a).unwrap(), &to_host(b).unwrap()).max_rel
}
