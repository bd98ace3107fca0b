//! Feeds arbitrary bytes to every decoder of `sonic-audio` (hound for WAV, symphonia for
//! FLAC / MP3 / OGG-Vorbis / other RIFF encodings). The first byte picks the extension hint
//! given to the format probe. Any panic or abort is a bug: every bad input must come back as
//! a typed `AudioError` naming the input.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

const HINTS: [Option<&str>; 6] = [
    None,
    Some("wav"),
    Some("flac"),
    Some("mp3"),
    Some("ogg"),
    Some("bin"),
];

fuzz_target!(|data: &[u8]| {
    let (hint, bytes) = match data.split_first() {
        Some((h, rest)) => (HINTS[*h as usize % HINTS.len()], rest),
        None => (None, data),
    };
    let name = Path::new("<fuzz>");
    match sonic_audio::decode_bytes(bytes, name, hint) {
        Ok(audio) => {
            // Whatever decodes must be well formed and must survive the rest of the host
            // pipeline (mono mix, resampling to 44.1 kHz, fitting).
            assert!(audio.sample_rate > 0 && audio.frames() > 0);
            assert!(audio.channels.iter().all(|c| c.len() == audio.frames()));
            assert!(audio.channels.iter().flatten().all(|v| v.is_finite()));
            let mono = audio.to_mono();
            if audio.frames() <= 1 << 16
                && audio.sample_rate <= 400_000
                && let Ok(y) = sonic_audio::resample(&mono, audio.sample_rate, 44_100)
                && !y.is_empty()
            {
                let fitted = sonic_audio::fit_to_length(&y, 4410, 44_100, Default::default());
                assert!(fitted.is_ok());
            }
        }
        Err(e) => {
            let msg = e.to_string();
            assert!(
                msg.contains("<fuzz>") || matches!(e, sonic_audio::AudioError::BadInput { .. }),
                "{msg}"
            );
        }
    }
});
