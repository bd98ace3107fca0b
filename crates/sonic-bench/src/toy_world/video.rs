//! The toy video: can the trained toy world follow a sound that changes class over time
//! through the video pipeline (`sonic_video`: sliding CLAP windows, smoothing, one initial
//! noise for every frame)?
//!
//! A clip whose class changes every `segment_seconds` (each segment one synthesized sound of
//! its class, repeated) is rendered at `fps` with the toy world's trained models; every frame
//! is classified by the class prototypes, and frames within `exclude_seconds` of a change
//! (whose window holds two classes) are left out of `frame_accuracy`.

use super::*;
use image::RgbImage;
use sonic_video::render::{FrameModel, NoiseSchedule, RenderOptions, render_frames};
use sonic_video::timeline::{Timeline, frame_embeddings, smooth};
use sonic_video::{VideoAudio, VideoError, VideoWriter, WriterOptions};

/// The settings of a toy-video run.
#[derive(Debug, Clone)]
pub struct ToyVideoOptions {
    /// The toy world to train (its seed, fixtures, device, `base_weights` reuse...).
    pub world: ToyWorldOptions,
    /// Seconds per class segment.
    pub segment_seconds: f64,
    /// Number of segments (classes cycle 0, 1, 2, 3, then a shuffled order).
    pub segments: usize,
    /// Frames per second.
    pub fps: f64,
    /// The CLAP window centred on each frame, seconds.
    pub window: f64,
    /// Gaussian smoothing of the embeddings, seconds (standard deviation).
    pub smooth_seconds: f64,
    /// Frames whose time is within this of a class change are not scored.
    pub exclude_seconds: f64,
    /// Keyframe interval (1: every frame sampled).
    pub keyframe_every: usize,
    /// The frame accuracy the run must reach.
    pub min_accuracy: f64,
}

impl ToyVideoOptions {
    /// The benchmark: 12 segments of 2 s at 4 fps, a 1 s window, bar 0.9.
    pub fn full(world: ToyWorldOptions) -> Self {
        Self {
            world,
            segment_seconds: 2.0,
            segments: 12,
            fps: 4.0,
            window: 1.0,
            smooth_seconds: 0.125,
            exclude_seconds: 0.5,
            keyframe_every: 1,
            min_accuracy: 0.9,
        }
    }
}

/// What a toy-video run measured.
#[derive(Debug, Clone)]
pub struct ToyVideoReport {
    /// Accuracy over the scored frames.
    pub frame_accuracy: f64,
    /// Frames scored.
    pub frames: usize,
    /// Frames rendered in all.
    pub total_frames: usize,
    /// The whole run, seconds (training included).
    pub seconds: f64,
    /// Seconds spent rendering the video (embedding, sampling, writing).
    pub render_seconds: f64,
    /// `(true class, drawn class)` of every frame (`None`: excluded).
    pub frame_classes: Vec<(Option<usize>, usize)>,
    /// The MP4 written, when an output folder was given.
    pub video: Option<PathBuf>,
}

impl ToyVideoReport {
    /// `toy-video: frame_accuracy=<a> frames=<n> seconds=<s>`.
    pub fn summary_line(&self) -> String {
        format!(
            "toy-video: frame_accuracy={:.3} frames={} seconds={:.0}",
            self.frame_accuracy, self.frames, self.seconds
        )
    }
}

/// The class of each segment: 0, 1, 2, 3, then seeded shuffles of the four without repeating
/// a class across a boundary.
pub fn segment_classes(segments: usize, seed: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x51de0);
    let mut out: Vec<usize> = Vec::with_capacity(segments);
    while out.len() < segments {
        if out.len() < CLASSES {
            out.push(out.len());
            continue;
        }
        let c = rng.random_range(0..CLASSES);
        if out.last() != Some(&c) {
            out.push(c);
        }
    }
    out
}

/// The clip: each segment one synthesized sound of its class, repeated to the segment length.
pub fn synth_clip(
    classes: &[usize],
    segment_seconds: f64,
    sample_rate: u32,
    seed: u64,
) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xc11b);
    let per = (segment_seconds * sample_rate as f64).round() as usize;
    let mut out = Vec::with_capacity(per * classes.len());
    for &c in classes {
        let one = synth_sound(c, &mut rng, sample_rate);
        out.extend(one.iter().cycle().take(per));
    }
    out
}

/// The toy world's models as a [`FrameModel`]: pixel-space latents, DDIM with audio guidance
/// and the empty caption (as the toy world's evaluation).
struct ToyFrames<'a> {
    options: &'a ToyWorldOptions,
    models: &'a ToyModels,
    null_tokens: Tensor<3>,
}

fn model_error(e: ToyWorldError) -> VideoError {
    VideoError::Model(e.to_string())
}

impl FrameModel for ToyFrames<'_> {
    fn noise(&mut self, seed: u64) -> std::result::Result<Vec<f32>, VideoError> {
        let s = self.options.image_size;
        Ok(seeded_normals(3 * s * s, seed))
    }

    fn sample(
        &mut self,
        embeddings: &[Vec<f32>],
        noise: &[Vec<f32>],
        previous: Option<(&[f32], f64)>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> std::result::Result<Vec<Vec<f32>>, VideoError> {
        if previous.is_some() {
            return Err(VideoError::InvalidParameter {
                name: "reuse",
                value: "previous frame".into(),
                reason: "the toy world samples every keyframe from noise".into(),
            });
        }
        let w = &self.models.world;
        let n = embeddings.len();
        let flat: Vec<f32> = embeddings.iter().flatten().copied().collect();
        let tokens = self
            .models
            .projector
            .forward(tensor2(flat, [n, w.audio_dim], &self.options.device))
            .map_err(|e| VideoError::Model(e.to_string()))?;
        let empty = &w.text[CLASSES];
        let no_caption: Vec<&[f32]> = vec![empty.as_slice(); n];
        let noise: Vec<f32> = noise.iter().flatten().copied().collect();
        let out = sample(
            self.options,
            &self.models.unet,
            &tokens,
            &self.null_tokens,
            empty,
            &no_caption,
            (w.text_tokens, w.text_dim),
            1.0,
            &noise,
        )
        .map_err(model_error)?;
        progress(self.options.sample_steps, self.options.sample_steps);
        let plane = out.len() / n.max(1);
        Ok(out.chunks(plane.max(1)).map(<[f32]>::to_vec).collect())
    }

    fn decode(&mut self, latents: &[Vec<f32>]) -> std::result::Result<Vec<RgbImage>, VideoError> {
        let s = self.options.image_size as u32;
        Ok(latents
            .iter()
            .map(|l| {
                RgbImage::from_fn(s, s, |x, y| {
                    let px = |c: usize| {
                        let v = l[c * (s * s) as usize + (y * s + x) as usize];
                        ((v.clamp(-1.0, 1.0) + 1.0) * 127.5).round() as u8
                    };
                    image::Rgb([px(0), px(1), px(2)])
                })
            })
            .collect())
    }
}

/// A decoded frame back to `[3, S, S]` in `[-1, 1]`, as the prototypes are.
fn frame_pixels(img: &RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0.0f32; 3 * w * h];
    for (x, y, p) in img.enumerate_pixels() {
        for c in 0..3 {
            out[c * w * h + y as usize * w + x as usize] = p[c] as f32 / 127.5 - 1.0;
        }
    }
    out
}

fn video_error(e: VideoError) -> ToyWorldError {
    ToyWorldError::Output {
        path: PathBuf::from("toy_video.mp4"),
        message: e.to_string(),
    }
}

/// Trains the toy world, renders the changing clip through the video pipeline and scores
/// every frame. With `world.out_dir`, writes `toy_video.mp4` (frames drawn at 8x, the clip as
/// its soundtrack).
pub fn run(
    options: &ToyVideoOptions,
    progress: &mut dyn FnMut(&ToyProgress),
) -> Result<ToyVideoReport> {
    let started = Instant::now();
    let o = &options.world;
    if !(options.segment_seconds > 0.0 && options.exclude_seconds >= 0.0) || options.segments == 0 {
        return Err(ToyWorldError::BadOption {
            name: "segments",
            value: format!("{} x {} s", options.segments, options.segment_seconds),
            reason: "needs at least one segment of positive length".into(),
        });
    }
    let models = train(o, progress)?;
    let render_start = Instant::now();
    progress(&ToyProgress::Phase("video"));
    let w = &models.world;
    let classes = segment_classes(options.segments, o.seed);
    let clip = synth_clip(&classes, options.segment_seconds, w.sample_rate, o.seed);
    let timeline = Timeline::new(clip.len(), w.sample_rate, options.fps).map_err(video_error)?;
    let rows = frame_embeddings(
        &w.clap,
        &clip,
        w.sample_rate,
        &timeline,
        options.window,
        &mut |_, _| true,
    )
    .map_err(video_error)?;
    let rows = smooth(&rows, options.smooth_seconds * options.fps);
    let null_tokens = tr!(models.projector.null_tokens(1, &o.device))?;
    let mut model = ToyFrames {
        options: o,
        models: &models,
        null_tokens,
    };
    let prototypes = class_prototypes(&w.pictures);
    let mut writer = match &o.out_dir {
        Some(_) => {
            Some(VideoWriter::new(options.fps, &WriterOptions::default()).map_err(video_error)?)
        }
        None => None,
    };
    let mut frame_classes = Vec::with_capacity(timeline.frames);
    let render = RenderOptions {
        keyframe_every: options.keyframe_every,
        noise: NoiseSchedule::Fixed,
        reuse_previous: None,
        batch: o.eval_batch,
        seed: o.seed ^ 0x71de0,
    };
    render_frames(
        &mut model,
        &rows,
        &render,
        &mut |p| {
            if let sonic_video::VideoProgress::Rendering { done, total, .. } = *p {
                progress(&ToyProgress::Step {
                    phase: "video",
                    step: done,
                    total,
                    loss: f64::NAN,
                });
            }
            true
        },
        &mut |k, img| {
            let t = timeline.frame_time(k);
            let segment = ((t / options.segment_seconds) as usize).min(classes.len() - 1);
            // Distance to the nearest class change (not the clip's ends).
            let changes = (1..classes.len()).map(|i| i as f64 * options.segment_seconds);
            let near = changes
                .map(|c| (t - c).abs())
                .any(|d| d < options.exclude_seconds);
            let drawn = nearest_prototype(&frame_pixels(&img), &prototypes);
            frame_classes.push(((!near).then_some(classes[segment]), drawn));
            if let Some(writer) = writer.as_mut() {
                let big = image::imageops::resize(
                    &img,
                    img.width() * 8,
                    img.height() * 8,
                    image::imageops::FilterType::Nearest,
                );
                writer.push(k, &big)?;
            }
            Ok(())
        },
    )
    .map_err(video_error)?;
    let video = match (writer, &o.out_dir) {
        (Some(writer), Some(dir)) => {
            let path = dir.join("toy_video.mp4");
            writer
                .finish(
                    Some(VideoAudio {
                        channels: std::slice::from_ref(&clip),
                        sample_rate: w.sample_rate,
                    }),
                    &path,
                )
                .map_err(video_error)?;
            Some(path)
        }
        _ => None,
    };
    let scored: Vec<&(Option<usize>, usize)> =
        frame_classes.iter().filter(|(t, _)| t.is_some()).collect();
    let correct = scored.iter().filter(|(t, d)| *t == Some(*d)).count();
    let render_seconds = render_start.elapsed().as_secs_f64();
    progress(&ToyProgress::PhaseDone {
        phase: "video",
        seconds: render_seconds,
    });
    Ok(ToyVideoReport {
        frame_accuracy: correct as f64 / scored.len().max(1) as f64,
        frames: scored.len(),
        total_frames: frame_classes.len(),
        seconds: started.elapsed().as_secs_f64(),
        render_seconds,
        frame_classes,
        video,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_start_with_every_class_and_never_repeat_across_a_change() {
        let c = segment_classes(12, 9);
        assert_eq!(&c[..4], &[0, 1, 2, 3]);
        assert_eq!(c.len(), 12);
        assert!(c.windows(2).all(|w| w[0] != w[1]));
        assert_eq!(c, segment_classes(12, 9));
    }

    #[test]
    fn the_clip_has_one_segment_per_class_change() {
        let clip = synth_clip(&[0, 3], 2.0, 8000, 1);
        assert_eq!(clip.len(), 32000);
        // The tone is continuous, the click train mostly near zero.
        let energy = |x: &[f32]| x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
        assert!(energy(&clip[..16000]) > 0.0 && energy(&clip[16000..]) > 0.0);
    }
}
