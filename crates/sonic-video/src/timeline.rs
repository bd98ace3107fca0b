//! Where each frame sits in the sound: frame count and times, the CLAP window centred on each
//! frame, temporal smoothing of the embeddings, keyframes and the noise schedule.

use crate::error::VideoError;
use sonic_audio::ClapAudioEncoder;

/// The frames of a clip at a frame rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timeline {
    /// Frames per second.
    pub fps: f64,
    /// Number of frames: `round(duration * fps)`, at least 1.
    pub frames: usize,
    /// The sound's length in seconds.
    pub duration: f64,
}

/// The most frames one video may have (a day at 4 fps is far below it): bounds the work and
/// memory a request can ask for.
pub const MAX_FRAMES: usize = 100_000;

impl Timeline {
    /// The timeline of `samples` samples at `sample_rate` shown at `fps`.
    pub fn new(samples: usize, sample_rate: u32, fps: f64) -> Result<Self, VideoError> {
        if !(fps.is_finite() && (0.01..=120.0).contains(&fps)) {
            return Err(VideoError::InvalidParameter {
                name: "fps",
                value: fps.to_string(),
                reason: "must be between 0.01 and 120".into(),
            });
        }
        if samples == 0 || sample_rate == 0 {
            return Err(VideoError::InvalidParameter {
                name: "audio",
                value: format!("{samples} samples at {sample_rate} Hz"),
                reason: "the sound is empty".into(),
            });
        }
        let duration = samples as f64 / sample_rate as f64;
        let frames = ((duration * fps).round() as usize).max(1);
        if frames > MAX_FRAMES {
            return Err(VideoError::InvalidParameter {
                name: "frames",
                value: frames.to_string(),
                reason: format!("{duration:.1} s at {fps} fps is over {MAX_FRAMES} frames"),
            });
        }
        Ok(Self {
            fps,
            frames,
            duration,
        })
    }

    /// The time (seconds) frame `k` stands for: the middle of its display interval.
    pub fn frame_time(&self, k: usize) -> f64 {
        (k as f64 + 0.5) / self.fps
    }
}

/// The sample range of a `window`-second window centred on `centre` seconds, clipped to the
/// sound: near the ends the window is shorter, and the CLAP encoder fits it to its clip length
/// as it fits any short sound (repeat-padding).
pub fn window_range(len: usize, sample_rate: u32, centre: f64, window: f64) -> (usize, usize) {
    let rate = sample_rate as f64;
    let half = window * rate / 2.0;
    let c = centre * rate;
    let start = (c - half).round().max(0.0) as usize;
    let end = ((c + half).round().max(0.0) as usize).min(len);
    let start = start.min(end.saturating_sub(1));
    (start, end.max(start + 1).min(len.max(1)))
}

/// CLAP embeddings (rows normalised twice, as the pipeline's) of the window centred on each
/// frame; `progress(done, total)` after each batch.
pub fn frame_embeddings(
    clap: &ClapAudioEncoder,
    samples: &[f32],
    sample_rate: u32,
    timeline: &Timeline,
    window: f64,
    progress: &mut dyn FnMut(usize, usize) -> bool,
) -> Result<Vec<Vec<f32>>, VideoError> {
    if !(window.is_finite() && window > 0.0) {
        return Err(VideoError::InvalidParameter {
            name: "window",
            value: window.to_string(),
            reason: "must be a positive number of seconds".into(),
        });
    }
    let ranges: Vec<(usize, usize)> = (0..timeline.frames)
        .map(|k| window_range(samples.len(), sample_rate, timeline.frame_time(k), window))
        .collect();
    let mut out: Vec<Vec<f32>> = Vec::with_capacity(ranges.len());
    // Neighbouring frames of a clip shorter than the window share one window: embed it once.
    let mut cache: Option<((usize, usize), Vec<f32>)> = None;
    let batch = 8;
    let mut k = 0;
    while k < ranges.len() {
        let chunk: Vec<(usize, usize)> = ranges[k..(k + batch).min(ranges.len())].to_vec();
        let todo: Vec<&[f32]> = chunk
            .iter()
            .filter(|r| cache.as_ref().is_none_or(|(c, _)| c != *r))
            .map(|&(a, b)| &samples[a..b])
            .collect();
        let rows = if todo.is_empty() {
            Vec::new()
        } else {
            let emb = clap.encode_samples(&todo, sample_rate)?;
            let d = emb.dims()[1];
            let host = sonic_core::fixtures::to_host(&emb)
                .map_err(|e| VideoError::Model(e.to_string()))?;
            host.chunks(d).map(<[f32]>::to_vec).collect()
        };
        let mut fresh = rows.into_iter();
        for r in chunk {
            let row = match &cache {
                Some((c, v)) if *c == r => v.clone(),
                _ => {
                    let v = fresh
                        .next()
                        .ok_or_else(|| VideoError::Model("CLAP returned too few rows".into()))?;
                    cache = Some((r, v.clone()));
                    v
                }
            };
            out.push(row);
        }
        k += batch;
        if !progress(out.len(), ranges.len()) {
            return Err(VideoError::Cancelled);
        }
    }
    Ok(out)
}

fn normalize(v: &mut [f32]) {
    for _ in 0..2 {
        let n = v
            .iter()
            .map(|x| (*x as f64).powi(2))
            .sum::<f64>()
            .sqrt()
            .max(1e-12);
        v.iter_mut().for_each(|x| *x = (*x as f64 / n) as f32);
    }
}

/// Gaussian smoothing along time with standard deviation `sigma` frames (0: none), then each
/// row normalised back onto the unit sphere (twice, as the pipeline's embeddings). The
/// kernel is cut at 3 sigma and renormalised at the ends.
pub fn smooth(rows: &[Vec<f32>], sigma: f64) -> Vec<Vec<f32>> {
    if sigma.is_nan() || sigma <= 0.0 || rows.len() < 2 {
        return rows.to_vec();
    }
    let reach = (3.0 * sigma).ceil() as isize;
    let n = rows.len() as isize;
    (0..n)
        .map(|k| {
            let d = rows[k as usize].len();
            let mut acc = vec![0.0f64; d];
            let mut total = 0.0;
            for j in (k - reach).max(0)..=(k + reach).min(n - 1) {
                let w = (-((j - k) as f64).powi(2) / (2.0 * sigma * sigma)).exp();
                total += w;
                for (a, x) in acc.iter_mut().zip(&rows[j as usize]) {
                    *a += w * *x as f64;
                }
            }
            let mut v: Vec<f32> = acc.iter().map(|a| (a / total) as f32).collect();
            normalize(&mut v);
            v
        })
        .collect()
}

/// The frames that are sampled: every `every`-th frame and the last; the others are
/// interpolated between their two neighbours.
pub fn keyframes(frames: usize, every: usize) -> Vec<usize> {
    let every = every.max(1);
    let mut keys: Vec<usize> = (0..frames).step_by(every).collect();
    if frames > 0 && keys.last() != Some(&(frames - 1)) {
        keys.push(frames - 1);
    }
    keys
}

/// Spherical interpolation between two vectors of the same length at `t` in `[0, 1]`: the
/// direction slerped on the unit sphere ([`sonic_pipeline::sonic::slerp_unit`]), the length
/// interpolated linearly. Between two Gaussian noises it keeps the noise's scale.
pub fn slerp(a: &[f32], b: &[f32], t: f64) -> Vec<f32> {
    let norm = |v: &[f32]| v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let (na, nb) = (norm(a), norm(b));
    if na == 0.0 || nb == 0.0 {
        return a
            .iter()
            .zip(b)
            .map(|(x, y)| x + (y - x) * t as f32)
            .collect();
    }
    let unit =
        |v: &[f32], n: f64| -> Vec<f32> { v.iter().map(|x| (*x as f64 / n) as f32).collect() };
    let len = (1.0 - t) * na + t * nb;
    sonic_pipeline::sonic::slerp_unit(&unit(a, na), &unit(b, nb), t)
        .into_iter()
        .map(|x| (x as f64 * len) as f32)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_follow_duration_and_rate() {
        let t = Timeline::new(44100 * 10, 44100, 4.0).unwrap();
        assert_eq!(t.frames, 40);
        assert!((t.frame_time(0) - 0.125).abs() < 1e-12);
        assert_eq!(Timeline::new(100, 44100, 4.0).unwrap().frames, 1);
        assert!(Timeline::new(0, 44100, 4.0).is_err());
        assert!(Timeline::new(10, 44100, f64::NAN).is_err());
        assert!(Timeline::new(10, 44100, 0.0).is_err());
        let e = Timeline::new(usize::MAX / 2, 1, 100.0).unwrap_err();
        assert!(e.to_string().contains("frames"), "{e}");
    }

    #[test]
    fn windows_are_centred_and_clipped() {
        // 20 s at 10 Hz, 10 s window.
        assert_eq!(window_range(200, 10, 10.0, 10.0), (50, 150));
        assert_eq!(window_range(200, 10, 1.0, 10.0), (0, 60));
        assert_eq!(window_range(200, 10, 19.5, 10.0), (145, 200));
        // A clip shorter than the window: the whole clip.
        assert_eq!(window_range(30, 10, 1.5, 10.0), (0, 30));
        // Never empty.
        assert_eq!(window_range(30, 10, 100.0, 0.01), (29, 30));
    }

    #[test]
    fn smoothing_averages_neighbours_and_keeps_unit_rows() {
        let rows = vec![vec![1.0, 0.0], vec![0.0, 1.0], vec![1.0, 0.0]];
        let s = smooth(&rows, 1.0);
        for r in &s {
            let n: f32 = r.iter().map(|x| x * x).sum();
            assert!((n - 1.0).abs() < 1e-5);
        }
        // The middle row leans towards its neighbours, the ends towards the middle.
        assert!(s[1][0] > 0.5 && s[0][1] > 0.1);
        assert_eq!(smooth(&rows, 0.0), rows);
    }

    #[test]
    fn keyframes_cover_both_ends() {
        assert_eq!(keyframes(10, 4), vec![0, 4, 8, 9]);
        assert_eq!(keyframes(9, 4), vec![0, 4, 8]);
        assert_eq!(keyframes(3, 1), vec![0, 1, 2]);
        assert_eq!(keyframes(1, 0), vec![0]);
        assert!(keyframes(0, 3).is_empty());
    }

    #[test]
    fn slerp_ends_at_its_inputs() {
        let a = [1.0, 0.0, 0.0];
        let b = [0.0, 2.0, 0.0];
        assert_eq!(slerp(&a, &b, 0.0), a.to_vec());
        let end = slerp(&a, &b, 1.0);
        assert!((end[1] - 2.0).abs() < 1e-6 && end[0].abs() < 1e-6);
    }
}
