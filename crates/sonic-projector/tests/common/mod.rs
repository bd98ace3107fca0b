//! Shared helpers of the projector tests.
#![allow(dead_code)]

use burn::tensor::{Device, Tensor};
use sonic_core::fixtures::{CaseResult, fixtures_root, to_host};
use std::path::{Path, PathBuf};

pub fn device() -> Device {
    sonic_core::device::default_device().expect("a default device")
}

pub fn fixture_dir(name: &str) -> PathBuf {
    fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("reference fixtures not found (../shared/fixtures or $SONIC_FIXTURES)")
        .join(name)
}

pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
        .join(name)
}

/// Asserts every result passes; prints them with the worst first.
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

/// max |a - b| / max |b|.
pub fn rel_diff<const D: usize>(a: &Tensor<D>, b: &Tensor<D>) -> f64 {
    assert_eq!(a.dims(), b.dims());
    sonic_core::fixtures::compare_slices(&to_host(a).unwrap(), &to_host(b).unwrap()).max_rel
}
