//! Every audio section of the sonic-tiny fixture against the PyTorch references.

use sonic_core::fixtures::{CaseResult, Fixture};

fn fixture() -> Fixture {
    sonic_test_kit::fixture("sonic-tiny")
}

fn check(section: &str, min_cases: usize) -> Vec<CaseResult> {
    let fixture = fixture();
    let device = sonic_test_kit::device();
    let results = sonic_parity::section(section)
        .expect("known section")
        .run(&fixture, &device)
        .unwrap();
    assert!(
        results.len() >= min_cases,
        "{section}: only {} cases",
        results.len()
    );
    for r in &results {
        println!(
            "{} max_abs={:e} max_rel={:e} (tol {:e})",
            r.id, r.cmp.max_abs, r.cmp.max_rel, r.tol
        );
        assert!(r.id.starts_with(section), "{}", r.id);
    }
    for r in &results {
        assert!(
            r.passed(),
            "{} max_rel={:e} > {:e}",
            r.id,
            r.cmp.max_rel,
            r.tol
        );
    }
    results
}

#[test]
fn audio_clips_decode_and_fit_exactly() {
    let r = check("audio_clips", 19);
    assert!(r.iter().filter(|c| c.tol == 0.0).count() >= 13);
}

#[test]
fn resample_matches_torchaudio() {
    check("resample", 4);
}

#[test]
fn repeat_pad_is_exact() {
    check("repeat_pad", 1);
}

#[test]
fn clap_frontend_matches_torchlibrosa() {
    check("clap_frontend", 3);
}

#[test]
fn clap_cnn14_matches_msclap() {
    check("clap_cnn14", 10);
}

#[test]
fn clap_projection_matches_msclap() {
    check("clap_projection", 1);
}

#[test]
fn clap_e2e_matches_msclap() {
    check("clap_e2e", 5);
}

#[test]
fn computed_frontend_constants_match_the_stored_ones() {
    use sonic_audio::frontend::{mel_filter_bank, stft_kernels};
    use sonic_audio::weights::{ClapCheckpoint, KEY_MEL_W, KEY_STFT_IMAG, KEY_STFT_REAL};
    let ckpt = ClapCheckpoint::open(&fixture().dir.join("clap.safetensors")).unwrap();
    let (re, im) = stft_kernels(1024);
    let mel = mel_filter_bank(44100.0, 1024, 64, 50.0, 14000.0);
    for (key, ours) in [(KEY_STFT_REAL, re), (KEY_STFT_IMAG, im), (KEY_MEL_W, mel)] {
        let (_, stored) = ckpt.read_f32(key).unwrap().unwrap();
        assert_eq!(stored.len(), ours.len(), "{key}");
        let d = stored
            .iter()
            .zip(&ours)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        println!("{key}: max |computed - stored| = {d:e}");
        assert!(d <= 1e-6, "{key}: {d}");
    }
}
