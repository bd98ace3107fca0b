//! The audio runners on crates/sonic-audio/tests/data/variant (tools/make_variant_fixture.py): other Cnn14 widths
//! and embedding sizes, 48 kHz and 32 kHz inputs, 3 channels, 24-bit PCM, 1 s clips, and a
//! checkpoint without the STFT kernels and melW (computed here).

use sonic_core::fixtures::Fixture;
use sonic_parity::audio::SECTIONS;
use std::path::Path;

#[test]
fn variant_fixture_matches_pytorch() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../sonic-audio/tests/data/variant");
    let fixture = Fixture::open(&dir).unwrap();
    let device = sonic_core::device::default_device().unwrap();
    let mut n = 0;
    let mut failed = vec![];
    for section in SECTIONS {
        let results = sonic_parity::section(section)
            .unwrap()
            .run(&fixture, &device)
            .unwrap();
        assert!(!results.is_empty(), "{section}: no cases");
        for r in results {
            println!("{} max_rel={:e} (tol {:e})", r.id, r.cmp.max_rel, r.tol);
            assert!(r.id.starts_with(section));
            if !r.passed() {
                failed.push(format!("{} {:e}", r.id, r.cmp.max_rel));
            }
            n += 1;
        }
    }
    assert!(n >= 30, "{n} cases");
    assert!(failed.is_empty(), "{failed:?}");
}
