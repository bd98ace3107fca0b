//! The public audio encoder: files or samples in, `[B, d_proj]` CLAP embeddings out.

use crate::config::ClapAudioConfig;
use crate::decode::{DecodedAudio, decode_file};
use crate::error::{AudioError, Result};
use crate::fit::{CropStart, Fitted, fit_to_length};
use crate::frontend::{LogMelFrontEnd, mel_filter_bank, stft_kernels};
use crate::model::{ClapAudioModel, ClapSizes, Cnn14Trace, l2_normalize};
use crate::resample::SincResampler;
use crate::weights::{ClapCheckpoint, KEY_MEL_W, KEY_STFT_IMAG, KEY_STFT_REAL};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Cnn14 pools five times by 2: time frames and mel bins must be at least this.
const MIN_POOLED: usize = 32;

/// Every stage of the encoder for a batch of clips.
#[derive(Debug, Clone)]
pub struct ClapEmbeddings {
    /// Cnn14's `relu(fc1(...))`, `[B, out_emb]`.
    pub cnn14_embedding: Tensor<2>,
    /// `sigmoid(fc_audioset(...))` when the checkpoint has the AudioSet head, `[B, classes]`.
    pub clipwise_output: Option<Tensor<2>>,
    /// The projection output before normalisation, `[B, d_proj]`.
    pub projection: Tensor<2>,
    /// L2-normalised once (what msclap's similarity uses).
    pub embedding_l2: Tensor<2>,
    /// L2-normalised twice, as SonicDiffusion's `CLAPWrapper` does: what the audio projector
    /// receives.
    pub embedding_l2x2: Tensor<2>,
}

/// A clip after decoding, mixing to mono, resampling and fitting.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedClip {
    /// Exactly `clip_samples` samples at the encoder's rate.
    pub samples: Vec<f32>,
    /// The rate of the source.
    pub source_rate: u32,
    /// Frames of the source.
    pub source_frames: usize,
    /// Channels of the source.
    pub source_channels: usize,
    /// How the resampled clip was fitted.
    pub fitted: Fitted,
}

/// The MS-CLAP audio encoder (torchlibrosa front end, Cnn14, projection) on a Burn device.
///
/// Built from the official `CLAP_weights_2022.pth` or a safetensors file with the same
/// `audio_encoder.*` keys; every size (mel bins, Cnn14 widths, embedding widths) is read from
/// the weights.
#[derive(Debug)]
pub struct ClapAudioEncoder {
    config: ClapAudioConfig,
    sizes: ClapSizes,
    front_end: LogMelFrontEnd,
    model: ClapAudioModel,
    device: Device,
    crop: CropStart,
    batch_size: usize,
    resamplers: Mutex<HashMap<u32, Arc<SincResampler>>>,
}

impl ClapAudioEncoder {
    /// Loads an encoder with the CLAP 2022 front-end settings ([`ClapAudioConfig::default`]).
    pub fn from_file(weights: impl AsRef<Path>, device: &Device) -> Result<Self> {
        Self::from_file_with_config(weights, ClapAudioConfig::default(), device)
    }

    /// Loads an encoder with explicit front-end settings.
    pub fn from_file_with_config(
        weights: impl AsRef<Path>,
        config: ClapAudioConfig,
        device: &Device,
    ) -> Result<Self> {
        let path = weights.as_ref();
        config.validate().map_err(|reason| AudioError::BadInput {
            what: "CLAP config".into(),
            reason,
        })?;
        let ckpt = ClapCheckpoint::open(path)?;
        let sizes = ckpt.sizes()?;
        check_pooling(&config, &sizes)?;
        if sizes.mel_bins != config.mel_bins {
            tracing::debug!(
                config = config.mel_bins,
                weights = sizes.mel_bins,
                "mel bins taken from the weights"
            );
        }
        let front_end = build_front_end(&ckpt, &config, &sizes, device)?;
        let model = ckpt.load_into(ClapAudioModel::new(&sizes, device))?;
        Ok(Self::assemble(config, sizes, front_end, model, device))
    }

    /// The encoder of these parts, with the default crop and batch size.
    fn assemble(
        config: ClapAudioConfig,
        sizes: ClapSizes,
        front_end: LogMelFrontEnd,
        model: ClapAudioModel,
        device: &Device,
    ) -> Self {
        Self {
            config,
            sizes,
            front_end,
            model,
            device: device.clone(),
            crop: CropStart::default(),
            batch_size: 8,
            resamplers: Mutex::new(HashMap::new()),
        }
    }

    /// An encoder around a model built elsewhere (initialised at random for a benchmark, or
    /// trained and loaded by other means), with the front end of `config`: the msclap STFT
    /// kernels and mel filter bank computed from its settings, `sizes.mel_bins` mel bins.
    pub fn from_model(
        model: ClapAudioModel,
        sizes: ClapSizes,
        config: ClapAudioConfig,
        device: &Device,
    ) -> Result<Self> {
        config.validate().map_err(|reason| AudioError::BadInput {
            what: "CLAP config".into(),
            reason,
        })?;
        check_pooling(&config, &sizes)?;
        let (real, imag) = stft_kernels(config.window_size);
        let mel = mel_filter_bank(
            config.sample_rate as f64,
            config.window_size,
            sizes.mel_bins,
            config.fmin,
            config.fmax,
        );
        let front_end = LogMelFrontEnd::new(
            config.window_size,
            config.hop_size,
            &real,
            &imag,
            &mel,
            sizes.mel_bins,
            device,
        )?;
        Ok(Self::assemble(config, sizes, front_end, model, device))
    }

    /// Sets where clips longer than the clip length are cropped (default: seeded random,
    /// seed 0).
    pub fn with_crop(mut self, crop: CropStart) -> Self {
        self.crop = crop;
        self
    }

    /// Sets how many clips go through the network at once (default 8; at least 1).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// The front-end settings.
    pub fn config(&self) -> &ClapAudioConfig {
        &self.config
    }

    /// The network sizes read from the weights.
    pub fn sizes(&self) -> &ClapSizes {
        &self.sizes
    }

    /// The width of the output embeddings (`d_proj`, 1024 for CLAP 2022).
    pub fn embedding_dim(&self) -> usize {
        self.sizes.d_proj
    }

    /// The device the network runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The log-mel front end.
    pub fn front_end(&self) -> &LogMelFrontEnd {
        &self.front_end
    }

    /// The network (Cnn14 and projection).
    pub fn model(&self) -> &ClapAudioModel {
        &self.model
    }

    fn resampler(&self, rate: u32) -> Result<Arc<SincResampler>> {
        let mut cache = self
            .resamplers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(r) = cache.get(&rate) {
            return Ok(r.clone());
        }
        let r = Arc::new(SincResampler::new(rate, self.config.sample_rate)?);
        cache.insert(rate, r.clone());
        Ok(r)
    }

    /// Mono mix, resampling to the encoder rate and fitting to the clip length.
    pub fn prepare_audio(&self, audio: &DecodedAudio, what: &str) -> Result<PreparedClip> {
        if audio.sample_rate == 0 {
            return Err(AudioError::bad_input(what, "sample rate is 0"));
        }
        if audio.frames() == 0 || audio.channels.iter().any(|c| c.len() != audio.frames()) {
            return Err(AudioError::bad_input(
                what,
                "needs at least one sample and channels of equal length",
            ));
        }
        let mono = audio.to_mono();
        if let Some(i) = mono.iter().position(|v| !v.is_finite()) {
            return Err(AudioError::bad_input(
                what,
                format!("non-finite sample at {i}"),
            ));
        }
        let resampled = if audio.sample_rate == self.config.sample_rate {
            mono
        } else {
            self.resampler(audio.sample_rate)?.process(&mono)
        };
        let (samples, fitted) = fit_to_length(
            &resampled,
            self.config.clip_samples,
            self.config.sample_rate,
            self.crop,
        )
        .map_err(|e| match e {
            AudioError::BadInput { reason, .. } => AudioError::bad_input(what, reason),
            other => other,
        })?;
        Ok(PreparedClip {
            samples,
            source_rate: audio.sample_rate,
            source_frames: audio.frames(),
            source_channels: audio.num_channels(),
            fitted,
        })
    }

    /// Decodes and prepares one file.
    pub fn prepare_file(&self, path: &Path) -> Result<PreparedClip> {
        let audio = decode_file(path)?;
        self.prepare_audio(&audio, &path.display().to_string())
    }

    /// Embeds audio files: `[B, d_proj]`, L2-normalised twice (what the SonicDiffusion
    /// projector expects).
    pub fn encode_files<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Tensor<2>> {
        Ok(self.encode_files_detailed(paths)?.embedding_l2x2)
    }

    /// Like [`Self::encode_files`], returning every stage.
    pub fn encode_files_detailed<P: AsRef<Path>>(&self, paths: &[P]) -> Result<ClapEmbeddings> {
        let clips = paths
            .iter()
            .map(|p| self.prepare_file(p.as_ref()).map(|c| c.samples))
            .collect::<Result<Vec<_>>>()?;
        self.encode_prepared(&clips)
    }

    /// Embeds mono clips sampled at `sample_rate` (any length, any rate): `[B, d_proj]`,
    /// L2-normalised twice.
    pub fn encode_samples(&self, clips: &[&[f32]], sample_rate: u32) -> Result<Tensor<2>> {
        let prepared = clips
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let audio = DecodedAudio {
                    sample_rate,
                    channels: vec![c.to_vec()],
                };
                self.prepare_audio(&audio, &format!("clip {i}"))
                    .map(|p| p.samples)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(self.encode_prepared(&prepared)?.embedding_l2x2)
    }

    /// Embeds clips already at the encoder rate and exactly `clip_samples` long.
    pub fn encode_prepared(&self, clips: &[Vec<f32>]) -> Result<ClapEmbeddings> {
        if clips.is_empty() {
            return Err(AudioError::bad_input("clips", "no clips to encode"));
        }
        let n = self.config.clip_samples;
        let mut parts: Vec<ClapEmbeddings> = Vec::new();
        for chunk in clips.chunks(self.batch_size) {
            let mut data = Vec::with_capacity(chunk.len() * n);
            for (i, c) in chunk.iter().enumerate() {
                if c.len() != n {
                    return Err(AudioError::bad_input(
                        format!("clip {i}"),
                        format!("has {} samples, expected {n}", c.len()),
                    ));
                }
                data.extend_from_slice(c);
            }
            let x = Tensor::<2>::from_data(TensorData::new(data, [chunk.len(), n]), &self.device);
            parts.push(self.encode_waveforms(x)?);
        }
        Ok(concat(parts))
    }

    /// Runs the network on prepared waveforms `[B, clip_samples]` on the device.
    pub fn encode_waveforms(&self, x: Tensor<2>) -> Result<ClapEmbeddings> {
        let [b, n] = x.dims();
        if b == 0 || n <= self.front_end.n_fft / 2 || self.front_end.frames(n) < MIN_POOLED {
            return Err(AudioError::bad_input(
                "waveforms",
                format!(
                    "shape [{b}, {n}]: need B >= 1, more than n_fft / 2 samples and at least {MIN_POOLED} frames"
                ),
            ));
        }
        let bn0 = self.model.base.apply_bn0(self.front_end.forward(x));
        let trace = self.model.base.forward_trace(bn0);
        Ok(self.head(trace))
    }

    /// Projection and normalisation of a Cnn14 trace.
    pub fn head(&self, trace: Cnn14Trace) -> ClapEmbeddings {
        let projection = self.model.projection.forward(trace.embedding.clone());
        let embedding_l2 = l2_normalize(projection.clone());
        let embedding_l2x2 = l2_normalize(embedding_l2.clone());
        ClapEmbeddings {
            cnn14_embedding: trace.embedding,
            clipwise_output: trace.clipwise_output,
            projection,
            embedding_l2,
            embedding_l2x2,
        }
    }
}

fn concat(mut parts: Vec<ClapEmbeddings>) -> ClapEmbeddings {
    if parts.len() == 1
        && let Some(p) = parts.pop()
    {
        return p;
    }
    let cat = |f: &dyn Fn(&ClapEmbeddings) -> Tensor<2>| {
        Tensor::cat(parts.iter().map(f).collect::<Vec<_>>(), 0)
    };
    let clipwise_output = if parts.iter().all(|p| p.clipwise_output.is_some()) {
        Some(Tensor::cat(
            parts
                .iter()
                .filter_map(|p| p.clipwise_output.clone())
                .collect(),
            0,
        ))
    } else {
        None
    };
    ClapEmbeddings {
        cnn14_embedding: cat(&|p| p.cnn14_embedding.clone()),
        clipwise_output,
        projection: cat(&|p| p.projection.clone()),
        embedding_l2: cat(&|p| p.embedding_l2.clone()),
        embedding_l2x2: cat(&|p| p.embedding_l2x2.clone()),
    }
}

/// Five 2x2 poolings need at least [`MIN_POOLED`] frames and mel bins.
fn check_pooling(config: &ClapAudioConfig, sizes: &ClapSizes) -> Result<()> {
    let frames = config.clip_samples / config.hop_size.max(1) + 1;
    if frames < MIN_POOLED || sizes.mel_bins < MIN_POOLED {
        return Err(AudioError::BadInput {
            what: "CLAP config".into(),
            reason: format!(
                "{frames} frames x {} mel bins: Cnn14 needs at least {MIN_POOLED} of each",
                sizes.mel_bins
            ),
        });
    }
    Ok(())
}

fn build_front_end(
    ckpt: &ClapCheckpoint,
    config: &ClapAudioConfig,
    sizes: &ClapSizes,
    device: &Device,
) -> Result<LogMelFrontEnd> {
    let n_fft = config.window_size;
    let bins = n_fft / 2 + 1;
    let bad = |message: String| AudioError::Checkpoint {
        path: ckpt.path().to_path_buf(),
        message,
    };
    let stored_real = ckpt.read_f32(KEY_STFT_REAL)?;
    let stored_imag = ckpt.read_f32(KEY_STFT_IMAG)?;
    let (real, imag) = match (stored_real, stored_imag) {
        (Some((sr, r)), Some((si, i))) => {
            for s in [&sr, &si] {
                if s.as_slice() != [bins, 1, n_fft] {
                    return Err(bad(format!(
                        "STFT kernel of shape {s:?} does not fit window_size {n_fft} (expected [{bins}, 1, {n_fft}])"
                    )));
                }
            }
            (r, i)
        }
        (None, None) => stft_kernels(n_fft),
        _ => {
            return Err(bad(
                "holds only one of the two STFT kernels (conv_real / conv_imag)".into(),
            ));
        }
    };
    let mel_w = match ckpt.read_f32(KEY_MEL_W)? {
        Some((shape, w)) => {
            if shape.as_slice() != [bins, sizes.mel_bins] {
                return Err(bad(format!(
                    "melW of shape {shape:?} does not fit {bins} frequency bins x {} mel bins",
                    sizes.mel_bins
                )));
            }
            w
        }
        None => mel_filter_bank(
            config.sample_rate as f64,
            n_fft,
            sizes.mel_bins,
            config.fmin,
            config.fmax,
        ),
    };
    LogMelFrontEnd::new(
        n_fft,
        config.hop_size,
        &real,
        &imag,
        &mel_w,
        sizes.mel_bins,
        device,
    )
}
