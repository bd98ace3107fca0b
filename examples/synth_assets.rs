//! Synthesises the example sounds under `examples/assets/` (mono 16-bit WAV, 22.05 kHz,
//! 3 s each), deterministically from fixed seeds:
//!
//! - `thunder.wav`: low rumbling brown noise with a few louder cracks;
//! - `birdsong.wav`: fast rising and falling chirps;
//! - `rain.wav`: dense high-passed noise with droplet clicks;
//! - `campfire.wav`: soft pink-ish noise with random crackles.
//!
//! ```text
//! cargo run --release --example synth_assets -- examples/assets
//! ```

use std::f32::consts::PI;
use std::io::Write;
use std::path::Path;

const SR: u32 = 22_050;
const SECONDS: f32 = 3.0;

/// A small deterministic generator (xorshift64*), uniform in [-1, 1).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 40;
        (v as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn n() -> usize {
    (SR as f32 * SECONDS) as usize
}

fn thunder() -> Vec<f32> {
    let mut rng = Rng(0x7468_756e);
    let mut brown = 0.0f32;
    let mut out = Vec::with_capacity(n());
    for i in 0..n() {
        let t = i as f32 / SR as f32;
        brown = (brown + 0.02 * rng.next()).clamp(-1.0, 1.0) * 0.998;
        let swell = 0.5 + 0.5 * (2.0 * PI * 0.4 * t).sin().abs();
        let crack = if (0.6..0.75).contains(&t) || (1.9..2.0).contains(&t) {
            rng.next() * 0.6
        } else {
            0.0
        };
        out.push(brown * 3.0 * swell + crack);
    }
    out
}

fn birdsong() -> Vec<f32> {
    let mut out = Vec::with_capacity(n());
    let mut phase = 0.0f32;
    for i in 0..n() {
        let t = i as f32 / SR as f32;
        let chirp_t = t % 0.25;
        let on = chirp_t < 0.12;
        let f = 2500.0
            + 2000.0
                * (chirp_t / 0.12)
                * if ((t / 0.25) as usize).is_multiple_of(2) {
                    1.0
                } else {
                    -0.5
                };
        phase += 2.0 * PI * f / SR as f32;
        let env = if on { (PI * chirp_t / 0.12).sin() } else { 0.0 };
        out.push(0.5 * env * phase.sin());
    }
    out
}

fn rain() -> Vec<f32> {
    let mut rng = Rng(0x7261_696e);
    let mut prev = 0.0f32;
    let mut out = Vec::with_capacity(n());
    for _ in 0..n() {
        let x = rng.next();
        let hp = x - prev;
        prev = x;
        let drop = if rng.next() > 0.998 {
            0.8 * rng.next()
        } else {
            0.0
        };
        out.push(0.25 * hp + drop);
    }
    out
}

fn campfire() -> Vec<f32> {
    let mut rng = Rng(0x6669_7265);
    let mut lp = 0.0f32;
    let mut crackle = 0.0f32;
    let mut out = Vec::with_capacity(n());
    for _ in 0..n() {
        lp = 0.97 * lp + 0.03 * rng.next();
        if rng.next() > 0.9993 {
            crackle = 0.9;
        }
        crackle *= 0.93;
        out.push(lp * 2.0 + crackle * rng.next());
    }
    out
}

/// Writes 16-bit PCM mono WAV, peak-normalised to 0.8 full scale.
fn write_wav(path: &Path, samples: &[f32]) -> std::io::Result<()> {
    let peak = samples.iter().fold(1e-9f32, |m, v| m.max(v.abs()));
    let data: Vec<u8> = samples
        .iter()
        .flat_map(|v| ((v / peak * 0.8 * 32767.0).round() as i16).to_le_bytes())
        .collect();
    let mut f = std::fs::File::create(path)?;
    f.write_all(b"RIFF")?;
    f.write_all(&(36 + data.len() as u32).to_le_bytes())?;
    f.write_all(b"WAVEfmt ")?;
    f.write_all(&16u32.to_le_bytes())?;
    f.write_all(&1u16.to_le_bytes())?; // PCM
    f.write_all(&1u16.to_le_bytes())?; // mono
    f.write_all(&SR.to_le_bytes())?;
    f.write_all(&(SR * 2).to_le_bytes())?;
    f.write_all(&2u16.to_le_bytes())?;
    f.write_all(&16u16.to_le_bytes())?;
    f.write_all(b"data")?;
    f.write_all(&(data.len() as u32).to_le_bytes())?;
    f.write_all(&data)
}

fn main() -> std::io::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "examples/assets".into());
    let dir = Path::new(&dir);
    std::fs::create_dir_all(dir)?;
    for (name, samples) in [
        ("thunder.wav", thunder()),
        ("birdsong.wav", birdsong()),
        ("rain.wav", rain()),
        ("campfire.wav", campfire()),
    ] {
        let p = dir.join(name);
        write_wav(&p, &samples)?;
        println!("{}", p.display());
    }
    Ok(())
}
