//! The world itself: seeded sounds and pictures of each class, and the nearest-prototype
//! classifier of pictures.

use super::*;

// ---------------------------------------------------------------------------------------------
// Data synthesis.

pub(super) fn normal(rng: &mut ChaCha8Rng) -> f32 {
    rng.sample::<f32, _>(StandardNormal)
}

/// One clip of class `class` (mono, `sample_rate` Hz): random length 0.6-1.4 s, random
/// loudness (-12 to 0 dB below 0.5 peak), random pitch or rate; 10 ms fades.
pub fn synth_sound(class: usize, rng: &mut ChaCha8Rng, sample_rate: u32) -> Vec<f32> {
    let sr = sample_rate as f32;
    let len = (rng.random_range(0.6f32..1.4) * sr) as usize;
    let amp = 0.5 * 10f32.powf(rng.random_range(-12.0f32..0.0) / 20.0);
    let mut x = vec![0.0f32; len];
    match class {
        0 | 1 => {
            let f = if class == 0 {
                rng.random_range(90.0f32..180.0)
            } else {
                rng.random_range(2500.0f32..5000.0)
            };
            let phase = rng.random_range(0.0f32..std::f32::consts::TAU);
            for (i, v) in x.iter_mut().enumerate() {
                *v = amp * (std::f32::consts::TAU * f * i as f32 / sr + phase).sin();
            }
        }
        2 => {
            let burst = (rng.random_range(0.04f32..0.08) * sr) as usize;
            let period = (rng.random_range(0.2f32..0.3) * sr) as usize;
            let offset = rng.random_range(0..period);
            for (i, v) in x.iter_mut().enumerate() {
                if (i + offset) % period < burst {
                    *v = amp * rng.random_range(-1.0f32..1.0);
                }
            }
        }
        _ => {
            let period = (sr / rng.random_range(8.0f32..20.0)) as usize;
            let offset = rng.random_range(0..period);
            let decay = 0.002 * sr;
            for (i, v) in x.iter_mut().enumerate() {
                let k = (i + offset) % period;
                *v = amp * (-(k as f32) / decay).exp();
            }
        }
    }
    let fade = ((0.01 * sr) as usize).min(len / 2);
    for i in 0..fade {
        let g = i as f32 / fade as f32;
        x[i] *= g;
        x[len - 1 - i] *= g;
    }
    x
}

/// One picture of class `class`: `[3, size, size]` (channel-major) in `[-1, 1]`, a coloured
/// shape on a dark background, at a random position (centre within ±size/16 of the middle),
/// size (±8 %) and brightness (0.85-1).
pub fn draw_picture(class: usize, rng: &mut ChaCha8Rng, size: usize) -> Vec<f32> {
    let s = size as f32;
    let jitter = s / 16.0;
    let cx = s / 2.0 - 0.5 + rng.random_range(-jitter..jitter);
    let cy = s / 2.0 - 0.5 + rng.random_range(-jitter..jitter);
    let r = s * rng.random_range(0.24f32..0.28);
    let bright = rng.random_range(0.85f32..1.0);
    let colour: [f32; 3] = match class {
        0 => [0.95, 0.15, 0.1],
        1 => [0.1, 0.85, 0.2],
        2 => [0.15, 0.3, 0.95],
        _ => [0.95, 0.85, 0.1],
    };
    let background = 0.1f32;
    let plane = size * size;
    let mut img = vec![0.0f32; 3 * plane];
    for y in 0..size {
        for x in 0..size {
            let dx = x as f32 - cx;
            let dy = y as f32 - cy;
            let inside = match class {
                0 => dx * dx + dy * dy <= r * r,
                1 => dx.abs() <= r * 0.85 && dy.abs() <= r * 0.85,
                // An upward triangle: apex at cy - r, base at cy + r.
                2 => dy >= -r && dy <= r && dx.abs() <= (dy + r) * 0.6,
                _ => {
                    let arm = r * 0.35;
                    (dx.abs() <= arm && dy.abs() <= r) || (dy.abs() <= arm && dx.abs() <= r)
                }
            };
            for c in 0..3 {
                let v = if inside {
                    colour[c] * bright
                } else {
                    background
                };
                img[c * plane + y * size + x] = v * 2.0 - 1.0;
            }
        }
    }
    img
}

/// The index of the prototype nearest `picture`, each prototype at its best contrast: the
/// picture is taken with its background removed (`without_background`), and for each prototype
/// (a class's mean picture with its background removed, as the toy world's `class_prototypes`
/// makes them once per run) the squared L2 distance to `a * prototype` with the best `a >= 0`,
/// `|x|^2 - max(0, x . p)^2 / |p|^2`. Pictures are `[3, H, W]`, channel-major.
///
/// Why not plain L2 to the mean pictures: sampled pictures often draw the right shape on a
/// tinted field (teal, purple, blue-grey instead of the training pictures' dark grey), and at
/// seed 6 ten clear red circles on teal were nearer the yellow cross's mean picture; removing
/// the background fixes that. Why the contrast: the samples' shapes are washed out towards the
/// field (their colours 30 - 50 % of the way there), and at a fixed contrast seed 2's
/// orange-yellow crosses on blue-grey were nearer the red circle. Checked against pictures
/// labelled by eye (`tests-data/toy-world/labelled.txt`, docs/TRAINING.md).
pub fn nearest_prototype(picture: &[f32], prototypes: &[Vec<f32>]) -> usize {
    let picture = without_background(picture);
    let mut best = (f32::NEG_INFINITY, 0);
    for (k, p) in prototypes.iter().enumerate() {
        let norm: f32 = p.iter().map(|v| v * v).sum();
        if norm <= 0.0 {
            continue;
        }
        let dot: f32 = picture.iter().zip(p).map(|(a, b)| a * b).sum();
        // The distance at the best contrast is |x|^2 minus this: the larger, the nearer.
        let explained = dot.max(0.0).powi(2) / norm;
        if explained > best.0 {
            best = (explained, k);
        }
    }
    best.1
}

/// The training pictures of a toy world: `per_class` pictures of each class drawn from `rng`
/// (`[class][k]`, each `[3, size, size]`); a run draws them first from its seed's generator.
pub fn draw_training_pictures(
    rng: &mut ChaCha8Rng,
    per_class: usize,
    size: usize,
) -> Vec<Vec<Vec<f32>>> {
    (0..CLASSES)
        .map(|c| (0..per_class).map(|_| draw_picture(c, rng, size)).collect())
        .collect()
}

/// `picture` (`[3, H, W]`, channel-major) clamped to `[-1, 1]`, each channel minus its median.
/// The median is the background's level: every shape covers well under half of the picture
/// (at most about a quarter, `draw_picture`), so what is left is the shape against zero.
pub fn without_background(picture: &[f32]) -> Vec<f32> {
    let mut out: Vec<f32> = picture.iter().map(|v| v.clamp(-1.0, 1.0)).collect();
    let plane = out.len() / 3;
    if plane == 0 {
        return out;
    }
    for channel in out.chunks_mut(plane) {
        let mut sorted = channel.to_vec();
        sorted.sort_unstable_by(f32::total_cmp);
        let median = if plane % 2 == 1 {
            sorted[plane / 2]
        } else {
            0.5 * (sorted[plane / 2 - 1] + sorted[plane / 2])
        };
        channel.iter_mut().for_each(|v| *v -= median);
    }
    out
}
