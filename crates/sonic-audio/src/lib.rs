//! Audio for sonic-diffusion: decode any audio file, resample like torchaudio, and embed it
//! with the Microsoft CLAP 2022 audio encoder (torchlibrosa front end, Cnn14, projection),
//! equal to msclap's PyTorch code.
//!
//! The pipeline of [`ClapAudioEncoder::encode_files`]:
//! 1. [`decode`]: WAV (`hound`; PCM 8/16/24/32-bit, float), FLAC, MP3, OGG/Vorbis
//!    (`symphonia`), at the file's own precision; mono by channel mean;
//! 2. [`resample`](mod@resample): to 44100 Hz with torchaudio's `Resample` defaults (Hann-windowed sinc,
//!    `lowpass_filter_width` 6, rolloff 0.99);
//! 3. [`fit`]: to 441000 samples (10 s): short clips tile-repeated then truncated, long clips
//!    cropped at a seeded random, explicit or centred start ([`CropStart`]);
//! 4. [`frontend`]: STFT power spectrogram (n_fft 1024, hop 320, periodic Hann, reflect
//!    padding), slaney mel filter bank (64 bins, 50-14000 Hz), decibels;
//! 5. [`model`]: `bn0`, Cnn14's six conv blocks, pooling, `fc1`; the projection; L2
//!    normalisation twice (as SonicDiffusion's `CLAPWrapper`): `[B, 1024]`.
//!
//! Weights come from the official `CLAP_weights_2022.pth` (a torch pickle, read without
//! executing it; only `audio_encoder.*` under its `model` dict is read) or a safetensors file
//! with the same keys ([`weights`]); all sizes are read from them.
//!
//! ```no_run
//! use sonic_audio::{ClapAudioEncoder, CropStart};
//! let device = sonic_core::device::default_device()?;
//! let encoder = ClapAudioEncoder::from_file("CLAP_weights_2022.pth", &device)?
//!     .with_crop(CropStart::Centre);
//! let emb = encoder.encode_files(&["thunder.wav", "rain.flac"])?; // [2, 1024]
//! assert_eq!(emb.dims(), [2, encoder.embedding_dim()]);
//!
//! // Samples in memory (any rate, any length):
//! let tone: Vec<f32> = (0..16000).map(|i| (i as f32 * 0.05).sin()).collect();
//! let emb = encoder.encode_samples(&[&tone], 16000)?; // [1, 1024]
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!

#![warn(missing_docs)]

pub mod config;
pub mod decode;
pub mod encoder;
pub mod error;
pub mod fit;
pub mod frontend;
pub mod model;
mod ogg;
pub mod resample;
pub mod weights;

pub use config::ClapAudioConfig;
pub use decode::{DecodedAudio, decode_bytes, decode_file};
pub use encoder::{ClapAudioEncoder, ClapEmbeddings, PreparedClip};
pub use error::AudioError;
pub use fit::{CropStart, Fitted, fit_to_length};
pub use model::ClapSizes;
pub use resample::{SincResampler, resample};
pub use sonic_core::checkpoint::CheckpointFormat;
pub use weights::ClapCheckpoint;
