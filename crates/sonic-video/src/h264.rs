//! H.264 encoding of RGB frames with Cisco's OpenH264 (built from source by the `openh264`
//! crate: no system library, no `ffmpeg`), as the samples an MP4 `avc1` track holds.

use crate::error::VideoError;
use openh264::OpenH264API;
use openh264::encoder::{
    Complexity, Encoder, EncoderConfig, FrameRate, IntraFramePeriod, RateControlMode,
};
use openh264::formats::{RgbSliceU8, YUVBuffer};

/// One encoded picture: its NAL units with 4-byte big-endian lengths (the MP4 layout, SPS and
/// PPS left out) and whether it is an IDR picture (a sync sample).
#[derive(Debug, Clone)]
pub struct AccessUnit {
    /// Length-prefixed NAL units.
    pub data: Vec<u8>,
    /// An IDR picture: decoding can start here.
    pub sync: bool,
}

/// The encoded track: parameter sets and one access unit per frame.
#[derive(Debug, Clone)]
pub struct H264Track {
    /// Frame width and height in pixels.
    pub width: usize,
    /// Frame height in pixels.
    pub height: usize,
    /// The sequence parameter set (without start code).
    pub sps: Vec<u8>,
    /// The picture parameter set (without start code).
    pub pps: Vec<u8>,
    /// One per frame, in order.
    pub frames: Vec<AccessUnit>,
}

/// Encoder settings.
#[derive(Debug, Clone, Copy)]
pub struct H264Options {
    /// Frames per second (rate control and the stream's timing hints).
    pub fps: f64,
    /// A key frame (IDR) at least every this many frames (0: only the first).
    pub keyframe_interval: u32,
}

impl Default for H264Options {
    fn default() -> Self {
        Self {
            fps: 4.0,
            keyframe_interval: 32,
        }
    }
}

/// Splits an Annex-B stream into NAL units (start codes removed).
fn split_annex_b(stream: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= stream.len() {
        if stream[i] == 0 && stream[i + 1] == 0 && stream[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    starts
        .iter()
        .enumerate()
        .map(|(k, &s)| {
            let mut end = starts.get(k + 1).map_or(stream.len(), |&n| n - 3);
            // A four-byte start code leaves a zero before the three-byte pattern.
            while end > s && stream[end - 1] == 0 && k + 1 < starts.len() {
                end -= 1;
            }
            &stream[s..end]
        })
        .filter(|n| !n.is_empty())
        .collect()
}

/// An H.264 encoder fed one RGB frame at a time (frames are not kept, only their encoding).
pub struct H264Encoder {
    encoder: Encoder,
    track: H264Track,
}

fn h264(e: openh264::Error) -> VideoError {
    VideoError::Encode {
        what: "H.264",
        message: e.to_string(),
    }
}

impl H264Encoder {
    /// An encoder for `width x height` frames (even, at most 3840 x 2160), constrained
    /// baseline as OpenH264 writes it.
    pub fn new(width: usize, height: usize, options: &H264Options) -> Result<Self, VideoError> {
        if width == 0 || height == 0 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(VideoError::InvalidParameter {
                name: "frame size",
                value: format!("{width}x{height}"),
                reason: "H.264 (4:2:0) needs an even width and height".into(),
            });
        }
        if width.max(height) > 3840 || width.min(height) > 2160 {
            return Err(VideoError::InvalidParameter {
                name: "frame size",
                value: format!("{width}x{height}"),
                reason: "at most 3840 x 2160".into(),
            });
        }
        if !(options.fps.is_finite() && options.fps > 0.0) {
            return Err(VideoError::InvalidParameter {
                name: "fps",
                value: options.fps.to_string(),
                reason: "must be a positive number".into(),
            });
        }
        // Rate control off: every frame is coded at OpenH264's default quantiser (no frame is
        // skipped, no bitrate target to tune; generated frames change slowly, so the files stay
        // small).
        let config = EncoderConfig::new()
            .max_frame_rate(FrameRate::from_hz(options.fps as f32))
            .rate_control_mode(RateControlMode::Off)
            .complexity(Complexity::High)
            .skip_frames(false)
            .background_detection(false)
            // One thread: the bitstream does not depend on scheduling.
            .num_threads(1)
            .intra_frame_period(IntraFramePeriod::from_num_frames(options.keyframe_interval));
        let encoder = Encoder::with_api_config(OpenH264API::from_source(), config).map_err(h264)?;
        Ok(Self {
            encoder,
            track: H264Track {
                width,
                height,
                sps: Vec::new(),
                pps: Vec::new(),
                frames: Vec::new(),
            },
        })
    }

    /// Encodes the next frame (`width * height * 3` bytes of RGB, row-major).
    pub fn push(&mut self, rgb: &[u8]) -> Result<(), VideoError> {
        let (width, height) = (self.track.width, self.track.height);
        let index = self.track.frames.len();
        if rgb.len() != width * height * 3 {
            return Err(VideoError::InvalidParameter {
                name: "frame",
                value: format!("frame {index}: {} bytes", rgb.len()),
                reason: format!("expected {width} x {height} x 3 = {}", width * height * 3),
            });
        }
        let yuv = YUVBuffer::from_rgb8_source(RgbSliceU8::new(rgb, (width, height)));
        let stream = self.encoder.encode(&yuv).map_err(h264)?.to_vec();
        let mut unit = AccessUnit {
            data: Vec::new(),
            sync: false,
        };
        for nal in split_annex_b(&stream) {
            match nal[0] & 0x1F {
                7 => {
                    if self.track.sps.is_empty() {
                        self.track.sps = nal.to_vec();
                    }
                }
                8 => {
                    if self.track.pps.is_empty() {
                        self.track.pps = nal.to_vec();
                    }
                }
                kind => {
                    if kind == 5 {
                        unit.sync = true;
                    }
                    unit.data
                        .extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    unit.data.extend_from_slice(nal);
                }
            }
        }
        if unit.data.is_empty() {
            return Err(VideoError::Encode {
                what: "H.264",
                message: format!("the encoder produced no picture for frame {index}"),
            });
        }
        self.track.frames.push(unit);
        Ok(())
    }

    /// The frames encoded so far.
    pub fn frames(&self) -> usize {
        self.track.frames.len()
    }

    /// The finished track.
    pub fn finish(self) -> Result<H264Track, VideoError> {
        if self.track.frames.is_empty() {
            return Err(VideoError::InvalidParameter {
                name: "frames",
                value: "0".into(),
                reason: "a video needs at least one frame".into(),
            });
        }
        if self.track.sps.len() < 4 || self.track.pps.is_empty() {
            return Err(VideoError::Encode {
                what: "H.264",
                message: "the encoder wrote no parameter sets".into(),
            });
        }
        Ok(self.track)
    }
}

/// Encodes `frames` (each `width * height * 3` bytes of RGB) in one go ([`H264Encoder`]).
pub fn encode_frames<'a>(
    frames: impl IntoIterator<Item = &'a [u8]>,
    width: usize,
    height: usize,
    options: &H264Options,
) -> Result<H264Track, VideoError> {
    let mut encoder = H264Encoder::new(width, height, options)?;
    for f in frames {
        encoder.push(f)?;
    }
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annex_b_is_split_on_three_and_four_byte_start_codes() {
        let s = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 5,
        ];
        let nals = split_annex_b(&s);
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4, 5]]);
    }

    #[test]
    fn frames_are_encoded_with_parameter_sets_and_a_first_key_frame() {
        let (w, h) = (32, 16);
        let frames: Vec<Vec<u8>> = (0..5)
            .map(|f| {
                (0..w * h * 3)
                    .map(|i| ((i * 7 + f * 40) % 256) as u8)
                    .collect()
            })
            .collect();
        let track = encode_frames(
            frames.iter().map(Vec::as_slice),
            w,
            h,
            &H264Options::default(),
        )
        .unwrap();
        assert_eq!(track.frames.len(), 5);
        assert!(track.frames[0].sync);
        assert_eq!(track.sps[0] & 0x1F, 7);
        assert_eq!(track.pps[0] & 0x1F, 8);
        // Every sample is a sequence of length-prefixed NAL units.
        for f in &track.frames {
            let mut i = 0;
            while i < f.data.len() {
                let n = u32::from_be_bytes(f.data[i..i + 4].try_into().unwrap()) as usize;
                assert!(n > 0 && i + 4 + n <= f.data.len());
                i += 4 + n;
            }
            assert_eq!(i, f.data.len());
        }
        // The same frames give the same bytes.
        let again = encode_frames(
            frames.iter().map(Vec::as_slice),
            w,
            h,
            &H264Options::default(),
        )
        .unwrap();
        assert!(
            track
                .frames
                .iter()
                .zip(&again.frames)
                .all(|(a, b)| a.data == b.data)
        );
    }

    #[test]
    fn bad_sizes_are_refused() {
        let o = H264Options::default();
        let e = encode_frames([&[0u8; 30][..]], 5, 2, &o).unwrap_err();
        assert!(e.to_string().contains("5x2"), "{e}");
        let e = encode_frames([&[0u8; 10][..]], 4, 2, &o).unwrap_err();
        assert!(e.to_string().contains("frame 0"), "{e}");
        let e = encode_frames(std::iter::empty(), 4, 2, &o).unwrap_err();
        assert!(e.to_string().contains("at least one frame"), "{e}");
    }
}
