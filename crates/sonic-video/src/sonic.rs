//! Videos from the SonicDiffusion pipeline: [`SonicFrames`] (the [`FrameModel`] of a
//! [`SonicPipeline`], generating or editing one photo) and [`make_video`], the whole job
//! from a sound file to an MP4.

use crate::error::VideoError;
use crate::output::{VideoAudio, VideoWriter, WriterOptions};
use crate::render::{FrameModel, RenderOptions, VideoProgress, render_frames};
use crate::timeline::{Timeline, frame_embeddings, smooth};
use burn::tensor::{Tensor, TensorData};
use image::RgbImage;
use sonic_pipeline::PipelineError;
use sonic_pipeline::audio_to_image::{AudioToImage, audio_to_image};
use sonic_pipeline::edit::{
    EditMode, EditRequest, Inversion, PnpOptions, SourceConditioning, ddim_invert, encode_image,
    pnp_sample, sdedit,
};
use sonic_pipeline::sampling::ProgressOnly;
use sonic_pipeline::sonic::SonicPipeline;
use sonic_pipeline::text_to_image::seeded_noise;
use std::path::{Path, PathBuf};

/// How frames are made from the photo, when there is one.
enum Source {
    /// Generated from noise.
    Generate,
    /// Plug-and-Play edits of one inversion.
    Pnp {
        inversion: Box<Inversion>,
        conditioning: Box<SourceConditioning>,
        options: PnpOptions,
    },
    /// SDEdit of the photo's latent at a strength.
    SdEdit { latent: Tensor<4>, strength: f64 },
}

/// The SonicDiffusion pipeline as a [`FrameModel`].
pub struct SonicFrames<'a> {
    pipe: &'a SonicPipeline,
    req: AudioToImage,
    source: Source,
    latent_shape: [usize; 4],
    /// The projector's null tokens (the unconditional audio), computed once per video.
    null: Tensor<3>,
}

fn null_tokens(pipe: &SonicPipeline) -> Result<Tensor<3>, VideoError> {
    Ok(pipe
        .projector
        .null_tokens(1, &pipe.sd.device)
        .map_err(PipelineError::from)?)
}

fn host(t: &Tensor<4>) -> Result<Vec<f32>, VideoError> {
    sonic_core::fixtures::to_host(t).map_err(|e| VideoError::Model(e.to_string()))
}

impl<'a> SonicFrames<'a> {
    /// Generates frames with `req` (prompt, guidance, steps, size; `batch_size` and `latents`
    /// are set per call).
    pub fn generate(pipe: &'a SonicPipeline, req: &AudioToImage) -> Result<Self, VideoError> {
        let f = pipe.sd.vae_scale_factor().max(1);
        if !req.width.is_multiple_of(f)
            || !req.height.is_multiple_of(f)
            || req.width == 0
            || req.height == 0
        {
            return Err(VideoError::InvalidParameter {
                name: "size",
                value: format!("{}x{}", req.width, req.height),
                reason: format!("width and height must be positive multiples of {f}"),
            });
        }
        let shape = [1, pipe.sd.unet.in_channels, req.height / f, req.width / f];
        Ok(Self {
            pipe,
            req: req.clone(),
            source: Source::Generate,
            latent_shape: shape,
            null: null_tokens(pipe)?,
        })
    }

    /// Edits the photo `image` (`[1, 3, H, W]` in `[-1, 1]`, see
    /// [`sonic_pipeline::image_input::load_image`]) in every frame with `req` (mode, generation
    /// settings, PnP settings, SDEdit strength; the size comes from the photo); a PnP
    /// inversion is done once here (`progress(step, total)`).
    pub fn edit(
        pipe: &'a SonicPipeline,
        image: Tensor<4>,
        req: &EditRequest,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self, VideoError> {
        let [_, _, h, w] = image.dims();
        let mut generation = req.generation.clone();
        generation.width = w;
        generation.height = h;
        let latent = encode_image(&pipe.sd, image)?;
        let latent_shape = latent.dims();
        let source = match req.mode {
            EditMode::SdEdit => Source::SdEdit {
                latent,
                strength: req.strength,
            },
            EditMode::Pnp => {
                let conditioning = SourceConditioning::new(&pipe.sd, &req.inversion_prompt)?;
                let inversion = ddim_invert(
                    &pipe.sd,
                    latent,
                    generation.steps,
                    &conditioning,
                    &mut |s, t, _| progress(s, t),
                )?;
                Source::Pnp {
                    inversion: Box::new(inversion),
                    conditioning: Box::new(conditioning),
                    options: req.pnp.clone(),
                }
            }
        };
        Ok(Self {
            pipe,
            req: generation,
            source,
            latent_shape,
            null: null_tokens(pipe)?,
        })
    }

    fn tensor(&self, rows: &[&[f32]]) -> Tensor<4> {
        let [_, c, h, w] = self.latent_shape;
        let data: Vec<f32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        Tensor::from_data(
            TensorData::new(data, [rows.len(), c, h, w]),
            &self.pipe.sd.device,
        )
    }

    fn rows(t: &Tensor<4>) -> Result<Vec<Vec<f32>>, VideoError> {
        let n = t.dims()[0];
        let v = host(t)?;
        let len = v.len() / n.max(1);
        Ok(v.chunks(len.max(1)).map(<[f32]>::to_vec).collect())
    }
}

impl FrameModel for SonicFrames<'_> {
    fn noise(&mut self, seed: u64) -> Result<Vec<f32>, VideoError> {
        host(&seeded_noise(self.latent_shape, seed, &self.pipe.sd.device))
    }

    fn sample(
        &mut self,
        embeddings: &[Vec<f32>],
        noise: &[Vec<f32>],
        previous: Option<(&[f32], f64)>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<Vec<f32>>, VideoError> {
        let n = embeddings.len();
        let d = embeddings.first().map_or(0, Vec::len);
        let flat: Vec<f32> = embeddings.iter().flatten().copied().collect();
        let emb = Tensor::<2>::from_data(TensorData::new(flat, [n, d]), &self.pipe.sd.device);
        let tokens = self
            .pipe
            .projector
            .forward(emb)
            .map_err(PipelineError::from)?;
        let null = &self.null;
        let sd = &self.pipe.sd;
        let mut step = |s: usize, t: usize, _: f64| progress(s, t);
        let mut out = Vec::with_capacity(n);
        match (&self.source, previous) {
            (Source::Pnp { .. }, Some(_)) => {
                return Err(VideoError::InvalidParameter {
                    name: "reuse",
                    value: "previous frame".into(),
                    reason: "Plug-and-Play frames are edits of the photo; reuse needs generate or sdedit mode".into(),
                });
            }
            (Source::Generate | Source::SdEdit { .. }, Some((prev, s))) => {
                for i in 0..n {
                    let tok = tokens.clone().narrow(0, i, 1);
                    let lat = sdedit(
                        sd,
                        self.tensor(&[prev]),
                        s,
                        &self.req,
                        Some((&tok, null)),
                        &mut step,
                    )?;
                    out.extend(Self::rows(&lat)?);
                }
            }
            (Source::Generate, None) => {
                let mut req = self.req.clone();
                req.batch_size = n;
                let rows: Vec<&[f32]> = noise.iter().map(Vec::as_slice).collect();
                req.latents = Some(self.tensor(&rows));
                let mut observer = ProgressOnly::new(&mut step, req.steps);
                let g = audio_to_image(sd, &req, &tokens, null, &mut observer)?;
                out.extend(Self::rows(&g.latents)?);
            }
            (Source::SdEdit { latent, strength }, None) => {
                for i in 0..n {
                    let tok = tokens.clone().narrow(0, i, 1);
                    let lat = sdedit(
                        sd,
                        latent.clone(),
                        *strength,
                        &self.req,
                        Some((&tok, null)),
                        &mut step,
                    )?;
                    out.extend(Self::rows(&lat)?);
                }
            }
            (
                Source::Pnp {
                    inversion,
                    conditioning,
                    options,
                },
                None,
            ) => {
                for i in 0..n {
                    let tok = tokens.clone().narrow(0, i, 1);
                    let lat = pnp_sample(
                        sd,
                        inversion,
                        &self.req,
                        options,
                        conditioning,
                        Some((&tok, null)),
                        &mut step,
                    )?;
                    out.extend(Self::rows(&lat)?);
                }
            }
        }
        Ok(out)
    }

    fn decode(&mut self, latents: &[Vec<f32>]) -> Result<Vec<RgbImage>, VideoError> {
        let rows: Vec<&[f32]> = latents.iter().map(Vec::as_slice).collect();
        let images = self.pipe.sd.decode_latents(self.tensor(&rows))?;
        Ok(sonic_pipeline::output::to_images(&images)?)
    }
}

/// A video job's settings besides the model's.
#[derive(Debug, Clone)]
pub struct VideoOptions {
    /// Frames per second.
    pub fps: f64,
    /// The CLAP window in seconds (10: the encoder's clip length).
    pub window: f64,
    /// Standard deviation of the Gaussian smoothing of the embeddings, in seconds (0: none).
    pub smooth_seconds: f64,
    /// Keyframes, noise, reuse, batch, seed.
    pub render: RenderOptions,
    /// The file's settings: encoder, PNG frames, metadata.
    pub writer: WriterOptions,
}

impl Default for VideoOptions {
    fn default() -> Self {
        Self {
            fps: 4.0,
            window: 10.0,
            smooth_seconds: 0.5,
            render: RenderOptions::default(),
            writer: WriterOptions::default(),
        }
    }
}

/// What [`make_video`] wrote.
#[derive(Debug, Clone)]
pub struct VideoSummary {
    /// The video file.
    pub path: PathBuf,
    /// Frames in it.
    pub frames: usize,
    /// Keyframes sampled.
    pub keyframes: usize,
    /// The soundtrack's length in seconds.
    pub duration: f64,
    /// The file's size in bytes.
    pub bytes: u64,
}

/// The embedding of every frame: the CLAP window centred on it, smoothed over time.
pub fn embed_timeline(
    pipe: &SonicPipeline,
    audio: &sonic_audio::DecodedAudio,
    options: &VideoOptions,
    progress: &mut dyn FnMut(&VideoProgress) -> bool,
) -> Result<(Timeline, Vec<Vec<f32>>), VideoError> {
    let mono = audio.to_mono();
    let timeline = Timeline::new(mono.len(), audio.sample_rate, options.fps)?;
    let rows = frame_embeddings(
        &pipe.clap,
        &mono,
        audio.sample_rate,
        &timeline,
        options.window,
        &mut |done, total| progress(&VideoProgress::Embedding { done, total }),
    )?;
    Ok((
        timeline,
        smooth(&rows, options.smooth_seconds * options.fps),
    ))
}

/// Makes the video of the sound `audio_path` with `model` (from [`SonicFrames::generate`] or
/// [`SonicFrames::edit`]) and writes it to `out` (MP4, atomically), the sound muxed in.
pub fn make_video(
    pipe: &SonicPipeline,
    model: &mut dyn FrameModel,
    audio_path: &Path,
    options: &VideoOptions,
    out: &Path,
    progress: &mut dyn FnMut(&VideoProgress) -> bool,
) -> Result<VideoSummary, VideoError> {
    let audio = sonic_audio::decode_file(audio_path)?;
    let (timeline, rows) = embed_timeline(pipe, &audio, options, progress)?;
    let mut writer = VideoWriter::new(options.fps, &options.writer)?;
    render_frames(model, &rows, &options.render, progress, &mut |k, img| {
        writer.push(k, &img)
    })?;
    progress(&VideoProgress::Encoding);
    let bytes = writer.finish(
        Some(VideoAudio {
            channels: &audio.channels,
            sample_rate: audio.sample_rate,
        }),
        out,
    )?;
    Ok(VideoSummary {
        path: out.to_path_buf(),
        frames: timeline.frames,
        keyframes: crate::timeline::keyframes(timeline.frames, options.render.keyframe_every).len(),
        duration: timeline.duration,
        bytes,
    })
}
