//! The frame loop, independent of the model: keyframes sampled from the smoothed embeddings,
//! the initial noise fixed or drifting between seeded anchors, optional reuse of the previous
//! keyframe, and the frames between keyframes interpolated in latent space.

use crate::error::VideoError;
use crate::timeline::{keyframes, slerp};
use image::RgbImage;

/// A model that turns embeddings into pictures through latents (the SonicDiffusion pipeline,
/// or the toy world's pixel-space model).
pub trait FrameModel {
    /// The initial noise of one frame for `seed` (a latent's worth of standard normals).
    fn noise(&mut self, seed: u64) -> Result<Vec<f32>, VideoError>;
    /// Samples one latent per embedding, each from its initial noise (`noise[i]`), or, with
    /// `previous = Some((latent, strength))`, by SDEdit from that latent at `strength`.
    /// `progress(done, total)` reports denoising steps.
    fn sample(
        &mut self,
        embeddings: &[Vec<f32>],
        noise: &[Vec<f32>],
        previous: Option<(&[f32], f64)>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<f32>>, VideoError>;
    /// Decodes latents into pictures.
    fn decode(&mut self, latents: &[Vec<f32>]) -> Result<Vec<RgbImage>, VideoError>;
}

/// Where the initial noise of each frame comes from.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum NoiseSchedule {
    /// The same noise (drawn from the seed) for every frame: only the sound changes the
    /// picture.
    Fixed,
    /// Anchors every `period` frames drawn from `seed + j`, slerped between: the picture may
    /// wander slowly even when the sound does not change.
    Drift {
        /// Frames between anchors (at least 1).
        period: usize,
    },
}

/// Rendering settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenderOptions {
    /// Sample every this many frames (and the last); the frames between are interpolated
    /// (1: sample every frame).
    pub keyframe_every: usize,
    /// The initial noise.
    pub noise: NoiseSchedule,
    /// Start each keyframe after the first from the previous keyframe's latent by SDEdit at
    /// this strength (e.g. 0.5) instead of from noise.
    pub reuse_previous: Option<f64>,
    /// Keyframes per model call when keyframes are independent.
    pub batch: usize,
    /// The seed of the initial noise.
    pub seed: u64,
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            keyframe_every: 1,
            noise: NoiseSchedule::Fixed,
            reuse_previous: None,
            batch: 1,
            seed: 42,
        }
    }
}

/// Progress of a video, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum VideoProgress {
    /// Embedding the windows: `done` of `total` frames.
    Embedding {
        /// Frames embedded.
        done: usize,
        /// Frames in all.
        total: usize,
    },
    /// Rendering: `done` of `total` frames written, `step` of `steps` in the keyframe now
    /// being sampled.
    Rendering {
        /// Frames finished.
        done: usize,
        /// Frames in all.
        total: usize,
        /// Denoising steps done in the current model call.
        step: usize,
        /// Denoising steps of the current model call.
        steps: usize,
    },
    /// Encoding and writing the file.
    Encoding,
}

fn lerp(a: &[f32], b: &[f32], t: f32) -> Vec<f32> {
    a.iter().zip(b).map(|(x, y)| x + (y - x) * t).collect()
}

/// Renders one picture per row of `embeddings` (one per frame) and hands each to `on_frame`
/// in order. `progress` returning `false` cancels.
pub fn render_frames(
    model: &mut dyn FrameModel,
    embeddings: &[Vec<f32>],
    options: &RenderOptions,
    progress: &mut dyn FnMut(&VideoProgress) -> bool,
    on_frame: &mut dyn FnMut(usize, RgbImage) -> Result<(), VideoError>,
) -> Result<(), VideoError> {
    let total = embeddings.len();
    if total == 0 {
        return Err(VideoError::InvalidParameter {
            name: "frames",
            value: "0".into(),
            reason: "nothing to render".into(),
        });
    }
    if let Some(s) = options.reuse_previous
        && !(s.is_finite() && (0.0..=1.0).contains(&s))
    {
        return Err(VideoError::InvalidParameter {
            name: "reuse strength",
            value: s.to_string(),
            reason: "must be in [0, 1]".into(),
        });
    }
    if let NoiseSchedule::Drift { period: 0 } = options.noise {
        return Err(VideoError::InvalidParameter {
            name: "noise period",
            value: "0".into(),
            reason: "must be at least 1 frame".into(),
        });
    }
    let keys = keyframes(total, options.keyframe_every);
    // The noise of frame k.
    let mut anchors: Vec<(usize, Vec<f32>)> = Vec::new();
    let mut noise_at = |model: &mut dyn FrameModel, k: usize| -> Result<Vec<f32>, VideoError> {
        match options.noise {
            NoiseSchedule::Fixed => {
                if anchors.is_empty() {
                    anchors.push((0, model.noise(options.seed)?));
                }
                Ok(anchors[0].1.clone())
            }
            NoiseSchedule::Drift { period } => {
                let j = k / period;
                let mut get = |j: usize| -> Result<Vec<f32>, VideoError> {
                    if let Some((_, v)) = anchors.iter().find(|(a, _)| *a == j) {
                        return Ok(v.clone());
                    }
                    let v = model.noise(options.seed.wrapping_add(j as u64))?;
                    anchors.retain(|(a, _)| *a + 1 >= j);
                    anchors.push((j, v.clone()));
                    Ok(v)
                };
                let a = get(j)?;
                let b = get(j + 1)?;
                Ok(slerp(&a, &b, (k % period) as f64 / period as f64))
            }
        }
    };
    let mut done = 0usize;
    let mut previous_key: Option<(usize, Vec<f32>)> = None;
    let batch = if options.reuse_previous.is_some() {
        1
    } else {
        options.batch.max(1)
    };
    for group in keys.chunks(batch) {
        let emb: Vec<Vec<f32>> = group.iter().map(|&k| embeddings[k].clone()).collect();
        let noise: Vec<Vec<f32>> = group
            .iter()
            .map(|&k| noise_at(&mut *model, k))
            .collect::<Result<_, _>>()?;
        let reuse = match (&previous_key, options.reuse_previous) {
            (Some((_, lat)), Some(s)) => Some((lat.as_slice(), s)),
            _ => None,
        };
        let mut cancelled = false;
        let latents = model.sample(&emb, &noise, reuse, &mut |step, steps| {
            if !progress(&VideoProgress::Rendering {
                done,
                total,
                step,
                steps,
            }) {
                cancelled = true;
            }
        })?;
        if cancelled {
            return Err(VideoError::Cancelled);
        }
        if latents.len() != group.len() {
            return Err(VideoError::Model(format!(
                "{} latents for {} keyframes",
                latents.len(),
                group.len()
            )));
        }
        for (&k, latent) in group.iter().zip(latents) {
            // The frames since the previous keyframe, interpolated, then the keyframe.
            let mut pending: Vec<Vec<f32>> = Vec::new();
            if let Some((p, prev)) = &previous_key {
                for f in p + 1..k {
                    let t = (f - p) as f32 / (k - p) as f32;
                    pending.push(lerp(prev, &latent, t));
                }
            }
            pending.push(latent.clone());
            let start = k + 1 - pending.len();
            for (i, img) in model.decode(&pending)?.into_iter().enumerate() {
                on_frame(start + i, img)?;
                done += 1;
            }
            if !progress(&VideoProgress::Rendering {
                done,
                total,
                step: 0,
                steps: 0,
            }) {
                return Err(VideoError::Cancelled);
            }
            previous_key = Some((k, latent));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model whose latent is the embedding plus the noise, decoded as grey levels.
    struct Echo {
        calls: Vec<usize>,
        reused: usize,
    }

    impl FrameModel for Echo {
        fn noise(&mut self, seed: u64) -> Result<Vec<f32>, VideoError> {
            Ok(vec![seed as f32 * 0.01])
        }
        fn sample(
            &mut self,
            embeddings: &[Vec<f32>],
            noise: &[Vec<f32>],
            previous: Option<(&[f32], f64)>,
            progress: &mut dyn FnMut(usize, usize),
        ) -> Result<Vec<Vec<f32>>, VideoError> {
            self.calls.push(embeddings.len());
            if previous.is_some() {
                self.reused += 1;
            }
            progress(1, 1);
            Ok(embeddings
                .iter()
                .zip(noise)
                .map(|(e, n)| vec![e[0] + n[0]])
                .collect())
        }
        fn decode(&mut self, latents: &[Vec<f32>]) -> Result<Vec<RgbImage>, VideoError> {
            Ok(latents
                .iter()
                .map(|l| RgbImage::from_pixel(2, 2, image::Rgb([(l[0] * 100.0) as u8; 3])))
                .collect())
        }
    }

    fn run(options: RenderOptions, emb: &[Vec<f32>]) -> (Vec<(usize, u8)>, Echo) {
        let mut model = Echo {
            calls: Vec::new(),
            reused: 0,
        };
        let mut frames = Vec::new();
        render_frames(&mut model, emb, &options, &mut |_| true, &mut |k, img| {
            frames.push((k, img.get_pixel(0, 0)[0]));
            Ok(())
        })
        .unwrap();
        (frames, model)
    }

    #[test]
    fn every_frame_comes_out_once_in_order() {
        let emb: Vec<Vec<f32>> = (0..7).map(|k| vec![k as f32 * 0.1]).collect();
        let (frames, model) = run(
            RenderOptions {
                keyframe_every: 3,
                batch: 2,
                seed: 0,
                ..RenderOptions::default()
            },
            &emb,
        );
        assert_eq!(
            frames.iter().map(|f| f.0).collect::<Vec<_>>(),
            (0..7).collect::<Vec<_>>()
        );
        // Keyframes 0, 3, 6 sampled (two per call); frames between interpolated.
        assert_eq!(model.calls, vec![2, 1]);
        let levels: Vec<u8> = frames.iter().map(|f| f.1).collect();
        assert_eq!(levels, vec![0, 10, 20, 30, 40, 50, 60]);
    }

    #[test]
    fn reuse_samples_keyframes_one_by_one() {
        let emb: Vec<Vec<f32>> = (0..4).map(|_| vec![0.5]).collect();
        let (frames, model) = run(
            RenderOptions {
                reuse_previous: Some(0.4),
                batch: 8,
                ..RenderOptions::default()
            },
            &emb,
        );
        assert_eq!(frames.len(), 4);
        assert_eq!(model.calls, vec![1, 1, 1, 1]);
        assert_eq!(model.reused, 3);
    }

    #[test]
    fn drifting_noise_moves_between_anchors() {
        let emb: Vec<Vec<f32>> = (0..5).map(|_| vec![0.0]).collect();
        let (frames, _) = run(
            RenderOptions {
                noise: NoiseSchedule::Drift { period: 2 },
                seed: 100,
                ..RenderOptions::default()
            },
            &emb,
        );
        // Noise 1.00 at frame 0, 1.01 at frame 2, 1.02 at frame 4 (anchors seed + j).
        let levels: Vec<u8> = frames.iter().map(|f| f.1).collect();
        assert_eq!(levels[0], 100);
        assert_eq!(levels[2], 101);
        assert_eq!(levels[4], 102);
    }

    #[test]
    fn bad_options_and_cancellation_are_errors() {
        let mut model = Echo {
            calls: Vec::new(),
            reused: 0,
        };
        let emb = vec![vec![0.0]; 3];
        let mut sink = |_: usize, _: RgbImage| Ok(());
        let bad = RenderOptions {
            reuse_previous: Some(1.5),
            ..RenderOptions::default()
        };
        assert!(render_frames(&mut model, &emb, &bad, &mut |_| true, &mut sink).is_err());
        let e = render_frames(
            &mut model,
            &emb,
            &RenderOptions::default(),
            &mut |_| false,
            &mut sink,
        )
        .unwrap_err();
        assert!(matches!(e, VideoError::Cancelled));
        assert!(
            render_frames(
                &mut model,
                &[],
                &RenderOptions::default(),
                &mut |_| true,
                &mut sink
            )
            .is_err()
        );
    }
}
