//! Arbitrary rates and samples through the torchaudio-equal resampler and the fitter.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let orig = u32::from_le_bytes([data[0], data[1], data[2], 0]) % 200_000;
    let new = u32::from_le_bytes([data[3], data[4], data[5], 0]) % 200_000;
    let target = (data[6] as usize) * 37 + 1;
    let samples: Vec<f32> = data[8..]
        .chunks_exact(2)
        .map(|c| i16::from_le_bytes([c[0], c[1]]) as f32 / 32768.0)
        .collect();
    match sonic_audio::SincResampler::new(orig, new) {
        Ok(r) => {
            let y = r.process(&samples);
            assert_eq!(
                y.len(),
                if orig == new {
                    samples.len()
                } else {
                    r.output_len(samples.len())
                }
            );
            assert!(y.iter().all(|v| v.is_finite()));
            if !y.is_empty() {
                let (f, _) =
                    sonic_audio::fit_to_length(&y, target, new.max(1), Default::default()).unwrap();
                assert_eq!(f.len(), target);
            }
        }
        Err(_) => assert!(orig == 0 || new == 0),
    }
});
