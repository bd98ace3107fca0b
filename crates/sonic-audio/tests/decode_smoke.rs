//! A plain-Rust mutation smoke test of the decoders (the stable-toolchain companion of the
//! `cargo fuzz` target in `fuzz/`): valid WAV / FLAC / MP3 / OGG files are corrupted (bit
//! flips, byte overwrites, truncation, insertion, chunk-length rewrites) and decoded. Every
//! outcome must be `Ok` with well-formed audio or a typed error naming the input; a panic
//! fails the test. `SONIC_SMOKE_ITERS` sets the number of executions (default 5000).

use rand::{Rng, SeedableRng};
use sonic_audio::{AudioError, decode_bytes};
use std::path::Path;

fn seeds() -> Vec<(Vec<u8>, &'static str)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut v: Vec<(Vec<u8>, &'static str)> = Vec::new();
    for (f, ext) in [
        ("tone.flac", "flac"),
        ("tone.ogg", "ogg"),
        ("tone.mp3", "mp3"),
    ] {
        v.push((std::fs::read(dir.join(f)).unwrap(), ext));
    }
    for (bits, float) in [
        (8u16, false),
        (16, false),
        (24, false),
        (32, false),
        (32, true),
    ] {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 11025,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        };
        let mut cur = std::io::Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
            for i in 0..64i32 {
                if float {
                    w.write_sample((i as f32 * 0.3).sin()).unwrap();
                } else {
                    w.write_sample((i * 37) % (1 << (bits - 2))).unwrap();
                }
            }
            w.finalize().unwrap();
        }
        v.push((cur.into_inner(), "wav"));
    }
    v
}

fn mutate(rng: &mut rand_chacha::ChaCha8Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        if b.is_empty() {
            b.push(rng.random());
            continue;
        }
        let i = rng.random_range(0..b.len());
        match rng.random_range(0..7) {
            0 => b[i] ^= 1 << rng.random_range(0..8),
            1 => b[i] = rng.random(),
            2 => b.truncate(i),
            3 => {
                let n = rng.random_range(1..16);
                let ins: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                b.splice(i..i, ins);
            }
            4 => {
                // rewrite a little-endian u32 (chunk sizes, rates, counts) with an extreme
                let v: u32 = [0, 1, 0x7fff_ffff, 0xffff_ffff, rng.random()][rng.random_range(0..5)];
                let end = (i + 4).min(b.len());
                let bytes = v.to_le_bytes();
                b[i..end].copy_from_slice(&bytes[..end - i]);
            }
            5 => {
                let end = rng.random_range(i..=b.len());
                b.drain(i..end);
            }
            _ => {
                // duplicate a block
                let end = rng.random_range(i..=b.len().min(i + 256));
                let block = b[i..end].to_vec();
                b.splice(i..i, block);
            }
        }
    }
    b
}

#[test]
fn corrupted_inputs_never_panic() {
    let iters: usize = std::env::var("SONIC_SMOKE_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5000);
    let seeds = seeds();
    for (s, ext) in &seeds {
        decode_bytes(s, Path::new("<seed>"), Some(ext)).unwrap();
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x50_41_55);
    let (mut ok, mut err, mut caught) = (0usize, 0usize, 0usize);
    let name = Path::new("<smoke>");
    for _ in 0..iters {
        let (seed, ext) = &seeds[rng.random_range(0..seeds.len())];
        let input = mutate(&mut rng, seed);
        let hint = if rng.random_bool(0.5) {
            Some(*ext)
        } else {
            None
        };
        match decode_bytes(&input, name, hint) {
            Ok(a) => {
                assert!(a.sample_rate > 0 && a.frames() > 0);
                assert!(a.channels.iter().all(|c| c.len() == a.frames()));
                assert!(a.channels.iter().flatten().all(|v| v.is_finite()));
                ok += 1;
            }
            Err(e) => {
                assert!(e.to_string().contains("<smoke>"), "{e}");
                if let AudioError::Decode { message, .. } = &e
                    && message.starts_with("decoder failure")
                {
                    println!("caught a decoder panic: {message}");
                    caught += 1;
                }
                err += 1;
            }
        }
    }
    println!(
        "{iters} executions: {ok} decoded, {err} typed errors ({caught} were caught decoder panics)"
    );
    assert_eq!(ok + err, iters);
}
