//! Audio to video for SonicDiffusion: a picture that follows the sound over time.
//!
//! A CLAP window slides along the recording (centred on each frame's time), the embeddings
//! are smoothed, keyframes are sampled with the same initial noise (or noise drifting between
//! seeded anchors) and the frames between them interpolated in latent space; the frames go to
//! an H.264 stream (OpenH264, built from source) and the sound to FLAC, muxed into an MP4 that
//! browsers play, without `ffmpeg`. See `docs/VIDEO.md`.
//!
//! ```no_run
//! use sonic_pipeline::sonic::SonicPipeline;
//! use sonic_pipeline::AudioToImage;
//! use sonic_video::{SonicFrames, VideoOptions, make_video};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pipe = SonicPipeline::builder()
//!     .model("stable-diffusion-v1-4")
//!     .clap("CLAP_weights_2022.pth")
//!     .projector("audio_projector_landscape.pth")
//!     .adapters("landscape.pt")
//!     .build()?;
//! let req = AudioToImage { steps: 25, seed: 7, ..AudioToImage::default() };
//! let mut frames = SonicFrames::generate(&pipe, &req)?;
//! let summary = make_video(
//!     &pipe,
//!     &mut frames,
//!     "storm.wav".as_ref(),
//!     &VideoOptions::default(),
//!     "storm.mp4".as_ref(),
//!     &mut |p| { eprintln!("{p:?}"); true },
//! )?;
//! println!("{} frames, {} bytes", summary.frames, summary.bytes);
//! # Ok(()) }
//! ```
//!
//! The building blocks work without a model too: [`h264::encode_frames`], [`flac::FlacStream`]
//! and [`mp4::mux`] write any RGB frames and sound as an MP4.

pub mod error;
pub mod flac;
pub mod h264;
pub mod mp4;
pub mod output;
pub mod render;
pub mod sonic;
pub mod timeline;

pub use error::VideoError;
pub use output::{VideoAudio, VideoWriter, WriterOptions};
pub use render::{FrameModel, NoiseSchedule, RenderOptions, VideoProgress, render_frames};
pub use sonic::{SonicFrames, VideoOptions, VideoSummary, embed_timeline, make_video};
pub use timeline::Timeline;
