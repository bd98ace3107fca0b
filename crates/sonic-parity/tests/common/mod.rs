//! Helpers shared by the parity test binaries (each uses part of them).
#![allow(dead_code)]

use sonic_core::fixtures::{CaseResult, Fixture};
use std::path::{Path, PathBuf};

/// A folder of the repository's `tests-data/`.
pub fn tests_data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests-data")
        .join(name)
}

/// Runs `sections` of `fixture` through the registry, asserting that each ran at least one
/// case, and then that every result passes.
pub fn run_sections(label: &str, fixture: &Fixture, sections: &[&str]) -> Vec<CaseResult> {
    let device = sonic_test_kit::device();
    let mut results: Vec<CaseResult> = Vec::new();
    for name in sections {
        let cases = sonic_parity::section(name)
            .expect("registered")
            .run(fixture, &device)
            .unwrap_or_else(|e| panic!("{label} {name}: {e}"));
        assert!(!cases.is_empty(), "{label}: section {name} ran no case");
        results.extend(cases);
    }
    sonic_test_kit::assert_all_pass(label, &results);
    results
}

/// Every sub-folder of `root` that is a fixture (has `reference/cases.json`), opened.
pub fn fixture_folders(root: &Path) -> Vec<(String, Fixture)> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .map(|e| e.unwrap().path())
        .filter(|d| d.join("reference/cases.json").is_file())
        .collect();
    dirs.sort();
    dirs.into_iter()
        .map(|d| (d.display().to_string(), Fixture::open(&d).unwrap()))
        .collect()
}
