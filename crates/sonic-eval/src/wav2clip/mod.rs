//! Wav2CLIP's audio encoder (Wu et al. 2022), exactly as the `wav2clip` PyPI package (0.1.0)
//! computes `embed_audio(audio, get_model())`: the audio embedding of SonicDiffusion's AIS
//! metric (its cosine with the CLIP image embedding).
//!
//! The computation, for waveforms `[B, T]` at 16 kHz (`float32`, all of one length):
//!
//! 1. [`spectrogram`]: power spectrogram (periodic Hann window of 512, hop 353, centred with
//!    reflect padding, 257 bins), `log(x + 1e-7)`, standardised by the mean and unbiased
//!    standard deviation of the **whole batch** (`(x - mean) / (std + 1e-9)`): the package
//!    embeds a batch jointly, and a clip's embedding changes slightly with its batch mates
//!    ([`Wav2Clip::embed_files`] embeds each file alone, as a per-file loop over `embed_audio`
//!    does);
//! 2. [`model`]: ResNet-18 on the `[B, 1, 257, F]` spectrogram (`audio_encoder`), mean over
//!    frequency and time: `[B, 512]` ("features");
//! 3. `audio_transform` (Linear 512-512, ReLU, Linear 512-512): the embedding `[B, 512]`,
//!    not normalised.
//!
//! Frame-level mode (`get_model(frame_length=L, hop_length=H)`, [`Wav2Clip::embed_framed`]):
//! every clip is cut into `1 + (T - L) / H` frames of `L` samples (`librosa.util.frame`), all
//! frames of all clips go through steps 1-3 as one batch, and the result is `[B, 512, frames]`
//! (not averaged).
//!
//! Weights: the released `Wav2CLIP.pt` (a torch pickle holding a flat state dict, read without
//! executing it) or a safetensors file with the same keys: `audio_encoder.*` (ResNet; its
//! `audio_encoder.spectrogram.window` buffer is the window used, the periodic Hann window when
//! absent) and `audio_transform.sequential.*`; other keys (the image side of the training
//! module) are ignored, `*.num_batches_tracked` are unused. The hyper-parameters are the
//! package's ([`Wav2ClipConfig::default`]) unless a `config.json` says otherwise.
//!
//! ```no_run
//! use sonic_eval::wav2clip::Wav2Clip;
//! let device = sonic_core::device::default_device()?;
//! let w2c = Wav2Clip::from_file("Wav2CLIP.pt", &device)?;
//! let emb = w2c.embed_file(std::path::Path::new("rain.wav"))?; // [1, 512]
//! assert_eq!(emb.dims(), [1, w2c.embedding_dim()]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod config;
pub mod model;
pub mod spectrogram;

pub use config::Wav2ClipConfig;
pub use model::Wav2ClipModel;
pub use spectrogram::{PowerSpectrogram, hann_window};

use crate::error::EvalError;
use burn::tensor::{Device, Tensor, TensorData};
use sonic_core::CoreError;
use sonic_core::checkpoint::Checkpoint;
use sonic_core::weights::LoadOptions;
use std::path::{Path, PathBuf};

type Result<T> = std::result::Result<T, EvalError>;

/// The checkpoint key of the spectrogram window (torchaudio's `Spectrogram.window` buffer).
pub const KEY_WINDOW: &str = "audio_encoder.spectrogram.window";
/// The anchor of the state dict in a checkpoint (its prefix, if nested, is cut).
const ANCHOR: &str = r"audio_encoder\.conv1\.weight";
/// The most samples one call feeds the ResNet (all clips or frames together; about 8.7
/// minutes at 16 kHz, some 400 MB of activations at the widest layer): longer audio is an
/// [`EvalError::Input`], to be embedded in parts.
pub const MAX_SAMPLES: usize = 1 << 23;
/// The weights file names [`Wav2Clip::from_dir`] looks for, in order.
pub const WEIGHT_FILES: [&str; 2] = ["model.safetensors", "Wav2CLIP.pt"];

/// The intermediate tensors of one run.
#[derive(Debug, Clone)]
pub struct Wav2ClipTrace {
    /// The normalised log power spectrograms `[N, 1, bins, frames]` (the input of `conv1`).
    pub spectrogram: Tensor<4>,
    /// The ResNet's output `[N, 512]`.
    pub features: Tensor<2>,
    /// `audio_transform(features)`, `[N, D]`.
    pub embedding: Tensor<2>,
    /// Clips in the batch.
    pub batch: usize,
    /// Frames per clip in frame-level mode (`N = batch * frames`), `None` per utterance
    /// (`N = batch`).
    pub frames: Option<usize>,
}

impl Wav2ClipTrace {
    /// The package's output: `[B, D, 1]` per utterance (squeeze to `[B, D]`), or
    /// `[B, D, frames]` in frame-level mode.
    pub fn embedding_bdf(&self) -> Tensor<3> {
        let [_, d] = self.embedding.dims();
        let f = self.frames.unwrap_or(1);
        self.embedding
            .clone()
            .reshape([self.batch, f, d])
            .swap_dims(1, 2)
    }
}

/// Wav2CLIP's audio encoder, loaded (see the module docs).
#[derive(Debug)]
pub struct Wav2Clip {
    model: Wav2ClipModel,
    front: PowerSpectrogram,
    config: Wav2ClipConfig,
    device: Device,
}

impl Wav2Clip {
    /// Loads `weights` (`Wav2CLIP.pt` or a safetensors file with its keys) with the package's
    /// hyper-parameters.
    pub fn from_file(weights: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let weights = weights.as_ref();
        Self::load(weights, Wav2ClipConfig::default(), weights, device)
    }

    /// Loads `weights` with `config` (validated first; errors name the weights file).
    pub fn from_file_with_config(
        weights: impl AsRef<Path>,
        config: Wav2ClipConfig,
        device: &Device,
    ) -> Result<Self> {
        let weights = weights.as_ref();
        Self::load(weights, config, weights, device)
    }

    /// Loads a folder: `config.json` when present (else the package's hyper-parameters) and
    /// the first of [`WEIGHT_FILES`] that exists.
    pub fn from_dir(dir: impl AsRef<Path>, device: &Device) -> Result<Self> {
        let dir = dir.as_ref();
        let config_path = dir.join("config.json");
        let config = if config_path.is_file() {
            Wav2ClipConfig::from_file(&config_path)?
        } else {
            Wav2ClipConfig::default()
        };
        let weights = find_weights(dir).ok_or_else(|| CoreError::Io {
            path: dir.join(WEIGHT_FILES[0]),
            source: std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no {} in this folder", WEIGHT_FILES.join(" or ")),
            ),
        })?;
        Self::load(&weights, config, &config_path, device)
    }

    fn load(
        weights: &Path,
        config: Wav2ClipConfig,
        origin: &Path,
        device: &Device,
    ) -> Result<Self> {
        config.validate(origin)?;
        let mut file = Checkpoint::open_anchored(weights, ANCHOR)?;
        file.retain(|k| k.starts_with("audio_encoder.") || k.starts_with("audio_transform."));
        let window = match file.read_f32(KEY_WINDOW)? {
            Some((shape, _)) if shape != [config.n_fft] => {
                return Err(CoreError::ShapeMismatch {
                    path: weights.to_path_buf(),
                    key: file.file_key(KEY_WINDOW),
                    expected: vec![config.n_fft],
                    found: shape,
                }
                .into());
            }
            Some((_, values)) => Some(values),
            None => None,
        };
        let front = PowerSpectrogram::new(config.n_fft, config.hop_length, window.as_deref())?;
        let options = LoadOptions {
            ignore: vec![
                r"num_batches_tracked$".into(),
                format!("^{}$", KEY_WINDOW.replace('.', r"\.")),
            ],
            ..Default::default()
        };
        let model = file.load_into(Wav2ClipModel::new(&config, device), &options)?;
        Ok(Self {
            model,
            front,
            config,
            device: device.clone(),
        })
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &Wav2ClipConfig {
        &self.config
    }

    /// The sample rate inputs must have (16000).
    pub fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    /// The embedding width (512).
    pub fn embedding_dim(&self) -> usize {
        self.config.embedding_dim()
    }

    /// The device the network runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The networks.
    pub fn model(&self) -> &Wav2ClipModel {
        &self.model
    }

    /// The spectrogram front end (its window is the checkpoint's when it has one).
    pub fn front_end(&self) -> &PowerSpectrogram {
        &self.front
    }

    /// Embeds waveforms `[B, T]` at [`Self::sample_rate`] as one batch (`embed_audio` per
    /// utterance): `[B, D]`. `T` must exceed `n_fft / 2` (256 samples); NaN or infinite
    /// samples, an empty batch and more than [`MAX_SAMPLES`] are [`EvalError::Input`]s.
    pub fn embed(&self, waveforms: Tensor<2>) -> Result<Tensor<2>> {
        Ok(self.trace(waveforms)?.embedding)
    }

    /// [`Self::embed`] with its intermediate tensors.
    pub fn trace(&self, waveforms: Tensor<2>) -> Result<Wav2ClipTrace> {
        let what = "Wav2CLIP waveforms";
        let [b, t] = waveforms.dims();
        if b == 0 || t == 0 {
            return Err(EvalError::input(what, format!("an empty batch [{b}, {t}]")));
        }
        let host = host_values(waveforms)?;
        let clips: Vec<&[f32]> = host.chunks_exact(t).collect();
        self.trace_clips(&clips, what)
    }

    /// Embeds clips given as host samples (all of one length) as one batch: `[B, D]`.
    pub fn embed_samples(&self, clips: &[&[f32]]) -> Result<Tensor<2>> {
        Ok(self.trace_clips(clips, "Wav2CLIP clips")?.embedding)
    }

    fn trace_clips(&self, clips: &[&[f32]], what: &str) -> Result<Wav2ClipTrace> {
        self.check_rows(clips, what)?;
        let mut trace = self.run(clips)?;
        trace.batch = clips.len();
        Ok(trace)
    }

    /// Frame-level embeddings (`get_model(frame_length, hop_length)` then `embed_audio`) of
    /// waveforms `[B, T]`: `[B, D, frames]` with `frames = 1 + (T - frame_length) /
    /// hop_length`; every frame of every clip is normalised and embedded in one batch.
    pub fn embed_framed(
        &self,
        waveforms: Tensor<2>,
        frame_length: usize,
        hop_length: usize,
    ) -> Result<Tensor<3>> {
        Ok(self
            .trace_framed(waveforms, frame_length, hop_length)?
            .embedding_bdf())
    }

    /// [`Self::embed_framed`] with its intermediate tensors (rows in clip-major order).
    pub fn trace_framed(
        &self,
        waveforms: Tensor<2>,
        frame_length: usize,
        hop_length: usize,
    ) -> Result<Wav2ClipTrace> {
        let what = "Wav2CLIP framed waveforms";
        let [b, t] = waveforms.dims();
        if b == 0 || frame_length == 0 || hop_length == 0 || t < frame_length {
            return Err(EvalError::input(
                what,
                format!(
                    "[{b}, {t}] with frame_length {frame_length}, hop_length {hop_length}: \
                     needs a clip, positive sizes and at least one whole frame"
                ),
            ));
        }
        let host = host_values(waveforms)?;
        let mut rows = Vec::new();
        let mut frames = 0;
        for clip in host.chunks_exact(t) {
            let f = spectrogram::frames(clip, frame_length, hop_length).unwrap_or_default();
            frames = f.len();
            rows.extend(f);
        }
        self.check_rows(&rows, what)?;
        let mut trace = self.run(&rows)?;
        trace.batch = b;
        trace.frames = Some(frames);
        Ok(trace)
    }

    /// Decodes an audio file (WAV, FLAC, MP3, OGG), averages its channels and resamples it to
    /// [`Self::sample_rate`] (`sonic_audio::decode_file`, `DecodedAudio::to_mono`,
    /// `sonic_audio::resample`: torchaudio's sinc resampler, where users of the package
    /// usually call `librosa.load(path, sr=16000)`, whose soxr resampler differs slightly).
    pub fn load_clip(&self, path: &Path) -> Result<Vec<f32>> {
        let audio = sonic_audio::decode_file(path)?;
        let mono = audio.to_mono();
        let clip = sonic_audio::resample(&mono, audio.sample_rate, self.config.sample_rate)?;
        let min = self.config.min_samples();
        if clip.len() < min {
            return Err(EvalError::input(
                format!("Wav2CLIP audio {}", path.display()),
                format!(
                    "{} samples at {} Hz; needs at least {min}",
                    clip.len(),
                    self.config.sample_rate
                ),
            ));
        }
        Ok(clip)
    }

    /// The embedding `[1, D]` of one audio file ([`Self::load_clip`], then [`Self::embed`]).
    pub fn embed_file(&self, path: &Path) -> Result<Tensor<2>> {
        let clip = self.load_clip(path)?;
        self.embed_samples(&[&clip])
    }

    /// The embeddings `[n, D]` of audio files, each embedded on its own (its own
    /// normalisation statistics, as one `embed_audio` call per file).
    pub fn embed_files<P: AsRef<Path>>(&self, paths: &[P]) -> Result<Tensor<2>> {
        if paths.is_empty() {
            return Err(EvalError::input("Wav2CLIP files", "no files given"));
        }
        let rows = paths
            .iter()
            .map(|p| self.embed_file(p.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(rows, 0))
    }

    /// Checks a batch of rows the ResNet will see.
    fn check_rows(&self, rows: &[&[f32]], what: &str) -> Result<()> {
        let min = self.config.min_samples();
        let Some(len) = rows.first().map(|r| r.len()) else {
            return Err(EvalError::input(what, "an empty batch"));
        };
        if rows.iter().any(|r| r.len() != len) {
            return Err(EvalError::input(what, "clips of different lengths"));
        }
        if len < min {
            return Err(EvalError::input(
                what,
                format!(
                    "{len} samples per clip; needs at least {min} (n_fft / 2 + 1, for the \
                     spectrogram's reflect padding)"
                ),
            ));
        }
        let total = rows.len().saturating_mul(len);
        if total > MAX_SAMPLES {
            return Err(EvalError::input(
                what,
                format!("{total} samples in one call; at most {MAX_SAMPLES}: embed in parts"),
            ));
        }
        if let Some((i, j)) = rows
            .iter()
            .enumerate()
            .find_map(|(i, r)| r.iter().position(|v| !v.is_finite()).map(|j| (i, j)))
        {
            return Err(EvalError::input(
                what,
                format!("clip {i} holds a NaN or infinite sample at {j}"),
            ));
        }
        Ok(())
    }

    /// Spectrogram, ResNet and projection of checked rows.
    fn run(&self, rows: &[&[f32]]) -> Result<Wav2ClipTrace> {
        let len = rows.first().map_or(0, |r| r.len());
        let shape = [rows.len(), 1, self.front.bins(), self.front.frames(len)];
        let spec = self.front.normalised(rows);
        let spectrogram = Tensor::from_data(TensorData::new(spec, shape), &self.device);
        let features = self.model.audio_encoder.forward(spectrogram.clone());
        let embedding = self.model.audio_transform.forward(features.clone());
        Ok(Wav2ClipTrace {
            spectrogram,
            features,
            embedding,
            batch: rows.len(),
            frames: None,
        })
    }
}

/// A tensor's values on the host as `f32`.
fn host_values(x: Tensor<2>) -> Result<Vec<f32>> {
    x.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| CoreError::Readback(format!("{e:?}")).into())
}

/// Where a weights file for [`Wav2Clip::from_dir`] would be found (the first of
/// [`WEIGHT_FILES`] present in `dir`).
pub fn find_weights(dir: &Path) -> Option<PathBuf> {
    WEIGHT_FILES
        .iter()
        .map(|name| dir.join(name))
        .find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small model with untrained weights (no file).
    fn tiny() -> Wav2Clip {
        let device = Device::default();
        let config = Wav2ClipConfig {
            n_fft: 64,
            hop_length: 40,
            layers: vec![1, 1, 1, 1],
            mlp_units: vec![512, 16],
            ..Default::default()
        };
        Wav2Clip {
            model: Wav2ClipModel::new(&config, &device),
            front: PowerSpectrogram::new(config.n_fft, config.hop_length, None).unwrap(),
            config,
            device,
        }
    }

    fn wave(b: usize, t: usize) -> Tensor<2> {
        let v: Vec<f32> = (0..b * t).map(|i| (i as f32 * 0.1).sin()).collect();
        Tensor::from_data(TensorData::new(v, [b, t]), &Device::default())
    }

    #[test]
    fn shapes_of_both_modes() {
        let w = tiny();
        let trace = w.trace(wave(2, 200)).unwrap();
        assert_eq!(trace.spectrogram.dims(), [2, 1, 33, 6]);
        assert_eq!(trace.features.dims(), [2, 512]);
        assert_eq!(trace.embedding.dims(), [2, 16]);
        assert_eq!(trace.embedding_bdf().dims(), [2, 16, 1]);
        // 1 + (200 - 80) / 50 = 3 frames per clip.
        let framed = w.trace_framed(wave(2, 200), 80, 50).unwrap();
        assert_eq!(framed.features.dims(), [6, 512]);
        assert_eq!(
            w.embed_framed(wave(2, 200), 80, 50).unwrap().dims(),
            [2, 16, 3]
        );
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let w = tiny();
        let input = |r: Result<Tensor<2>>| matches!(r, Err(EvalError::Input { .. }));
        assert!(input(w.embed(wave(1, 32)))); // needs > n_fft / 2 = 32 samples
        assert!(w.embed(wave(1, 33)).is_ok());
        assert!(input(w.embed(wave(0, 100))));
        assert!(input(w.embed(wave(2, 0))));
        let mut v = vec![0.1f32; 100];
        v[57] = f32::NAN;
        assert!(input(w.embed_samples(&[&v])));
        assert!(input(w.embed_samples(&[&[0.1; 100], &[0.1; 99]])));
        assert!(input(w.embed_samples(&[])));
        let too_long = vec![0f32; MAX_SAMPLES + 1];
        assert!(input(w.embed_samples(&[&too_long])));
        let framed = |r: Result<Tensor<3>>| matches!(r, Err(EvalError::Input { .. }));
        assert!(framed(w.embed_framed(wave(1, 100), 101, 10)));
        assert!(framed(w.embed_framed(wave(1, 100), 20, 10))); // frames of 20 < 33 samples
        assert!(framed(w.embed_framed(wave(1, 100), 50, 0)));
        assert!(input(w.embed_files::<&str>(&[])));
    }

    #[test]
    fn missing_files_are_named() {
        let device = Device::default();
        let e = Wav2Clip::from_file("/nonexistent/Wav2CLIP.pt", &device).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/Wav2CLIP.pt"), "{e}");
        let dir = std::env::temp_dir();
        let e = Wav2Clip::from_dir(dir.join("no-such-wav2clip-dir"), &device).unwrap_err();
        assert!(e.to_string().contains("no-such-wav2clip-dir"), "{e}");
        let w = tiny();
        let e = w.embed_file(Path::new("/nonexistent/a.wav")).unwrap_err();
        assert!(
            matches!(e, EvalError::Audio(_)) && e.to_string().contains("a.wav"),
            "{e}"
        );
    }
}
