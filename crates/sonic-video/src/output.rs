//! Writing a video: frames into the H.264 encoder (and optionally PNG files), the sound into
//! FLAC, both into one MP4 written atomically.

use crate::error::VideoError;
use crate::flac::{FlacStream, to_i16};
use crate::h264::{H264Encoder, H264Options};
use crate::mp4::{Mp4Options, mux};
use image::RgbImage;
use std::path::{Path, PathBuf};

/// The file's settings.
#[derive(Debug, Clone, Default)]
pub struct WriterOptions {
    /// Encoder settings (its `fps` is set from the video's).
    pub h264: H264Options,
    /// Also keep every frame as `DIR/frame-NNNNN.png`.
    pub frames_dir: Option<PathBuf>,
    /// Text stored in the MP4 (`©cmt`) and in each PNG's `Description`: the parameters.
    pub comment: Option<String>,
}

/// The soundtrack: channels of equal length at a sample rate.
#[derive(Debug, Clone, Copy)]
pub struct VideoAudio<'a> {
    /// One vector per channel, samples in `[-1, 1]`.
    pub channels: &'a [Vec<f32>],
    /// Samples per second.
    pub sample_rate: u32,
}

/// Collects frames in order and writes the MP4.
pub struct VideoWriter {
    fps: f64,
    options: WriterOptions,
    encoder: Option<H264Encoder>,
    next: usize,
}

impl VideoWriter {
    /// A writer at `fps`; creates `frames_dir` when given.
    pub fn new(fps: f64, options: &WriterOptions) -> Result<Self, VideoError> {
        if let Some(dir) = &options.frames_dir {
            std::fs::create_dir_all(dir).map_err(|e| VideoError::Output {
                path: dir.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(Self {
            fps,
            options: options.clone(),
            encoder: None,
            next: 0,
        })
    }

    /// Adds frame `index` (frames must come in order, all of one size).
    pub fn push(&mut self, index: usize, img: &RgbImage) -> Result<(), VideoError> {
        if index != self.next {
            return Err(VideoError::InvalidParameter {
                name: "frame index",
                value: index.to_string(),
                reason: format!("expected frame {}", self.next),
            });
        }
        let (w, h) = (img.width() as usize, img.height() as usize);
        let encoder = match &mut self.encoder {
            Some(e) => e,
            None => {
                let mut o = self.options.h264;
                o.fps = self.fps;
                self.encoder.insert(H264Encoder::new(w, h, &o)?)
            }
        };
        encoder.push(img.as_raw())?;
        if let Some(dir) = &self.options.frames_dir {
            let path = dir.join(format!("frame-{index:05}.png"));
            let meta: Vec<(String, String)> = self
                .options
                .comment
                .iter()
                .map(|c| ("Description".to_string(), c.clone()))
                .collect();
            let png = sonic_pipeline::output::encode_png(w, h, img.as_raw(), &meta).map_err(
                |message| VideoError::Output {
                    path: path.clone(),
                    message,
                },
            )?;
            sonic_pipeline::output::write_atomic(&path, &png)?;
        }
        self.next += 1;
        Ok(())
    }

    /// Encodes the sound, muxes and writes `out` atomically; returns the file's size.
    pub fn finish(self, audio: Option<VideoAudio<'_>>, out: &Path) -> Result<u64, VideoError> {
        let encoder = self.encoder.ok_or_else(|| VideoError::InvalidParameter {
            name: "frames",
            value: "0".into(),
            reason: "a video needs at least one frame".into(),
        })?;
        let video = encoder.finish()?;
        let flac = match audio {
            Some(a) => {
                let ints: Vec<Vec<i32>> = a.channels.iter().map(|c| to_i16(c)).collect();
                Some(FlacStream::encode(&ints, a.sample_rate).ok_or_else(|| {
                    VideoError::InvalidParameter {
                        name: "audio",
                        value: format!("{} channels at {} Hz", a.channels.len(), a.sample_rate),
                        reason: "FLAC carries 1-8 channels of equal, non-zero length at up to 655 350 Hz"
                            .into(),
                    }
                })?)
            }
            None => None,
        };
        let bytes = mux(
            &video,
            flac.as_ref(),
            &Mp4Options {
                fps: self.fps,
                comment: self.options.comment.clone(),
                tool: Some(format!("sonic-diffusion {}", env!("CARGO_PKG_VERSION"))),
            },
        )?;
        sonic_pipeline::output::write_atomic(out, &bytes)?;
        Ok(bytes.len() as u64)
    }
}
