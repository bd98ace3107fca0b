//! Decoding audio files to float samples.
//!
//! - WAV (PCM 8/16/24/32-bit, IEEE float 32) with `hound`; WAV encodings hound does not read
//!   (float 64, A-law, mu-law, ADPCM) fall back to symphonia's RIFF reader;
//! - FLAC, MP3 and OGG/Vorbis with `symphonia` (gapless trimming on, so the encoder delay and
//!   padding that MP3/Vorbis files declare are removed); an Ogg Vorbis stream is cut at the
//!   granule position of its last page, as libvorbisfile does (see `ogg.rs`: symphonia misses
//!   that trim on short streams and on streams whose last page continues a packet).
//!
//! Integer PCM is scaled by `2^(bits-1)` (8-bit WAV is unsigned, centred on 128), exactly as
//! torchaudio / libsndfile normalise it. Samples are kept as `f32`, which holds 8-, 16- and
//! 24-bit PCM and float WAVs exactly: nothing passes through 16 bits. Every failure is an
//! [`AudioError`] naming the file; no input makes these functions panic (symphonia's decoders
//! are additionally run under `catch_unwind`, so a panic inside a third-party decoder becomes
//! an [`AudioError::Decode`]).

use crate::error::{AudioError, Result};
use std::io::{Read, SeekFrom};
use std::path::{Path, PathBuf};
use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{CODEC_TYPE_NULL, DecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// The most samples (frames x channels) one file may decode to: 2^28 (1 GiB of `f32`),
/// e.g. 50 minutes of 48 kHz stereo. Longer (or maliciously expanding) files are refused.
pub const MAX_DECODED_SAMPLES: usize = 1 << 28;

/// Decoded audio: per-channel `f32` samples at the file's sample rate.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Frames per second.
    pub sample_rate: u32,
    /// One vector per channel, all of the same length (the number of frames).
    pub channels: Vec<Vec<f32>>,
}

impl DecodedAudio {
    /// The number of frames (samples per channel).
    pub fn frames(&self) -> usize {
        self.channels.first().map_or(0, Vec::len)
    }

    /// The number of channels.
    pub fn num_channels(&self) -> usize {
        self.channels.len()
    }

    /// Mono by channel mean, exactly as PyTorch's float32 `x.mean(dim=0)` computes it: the
    /// channels summed in order in `f32`, then divided by the channel count.
    pub fn to_mono(&self) -> Vec<f32> {
        match self.channels.len() {
            0 => Vec::new(),
            1 => self.channels[0].clone(),
            c => {
                let n = self.frames();
                let div = c as f32;
                (0..n)
                    .map(|i| {
                        let s = self
                            .channels
                            .iter()
                            .fold(0f32, |acc, ch| acc + ch.get(i).copied().unwrap_or(0.0));
                        s / div
                    })
                    .collect()
            }
        }
    }
}

/// The container, detected from the first bytes (the extension is only a hint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Wav,
    Other,
}

fn sniff(head: &[u8]) -> Container {
    if head.len() >= 12 && &head[0..4] == b"RIFF" && &head[8..12] == b"WAVE" {
        Container::Wav
    } else {
        Container::Other
    }
}

/// Decodes an audio file (WAV, FLAC, MP3, OGG/Vorbis) to per-channel `f32` samples.
///
/// Errors name `path`: it is missing or a directory ([`AudioError::Io`]), empty
/// ([`AudioError::EmptyFile`]), of an unknown format ([`AudioError::UnsupportedFormat`]),
/// corrupt or truncated ([`AudioError::Decode`]), without samples ([`AudioError::NoSamples`]),
/// or holds NaN / infinite samples ([`AudioError::NonFinite`]).
pub fn decode_file(path: &Path) -> Result<DecodedAudio> {
    let io_err = |source: std::io::Error| AudioError::Io {
        path: path.to_path_buf(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(io_err)?;
    if meta.is_dir() {
        return Err(io_err(std::io::Error::new(
            std::io::ErrorKind::IsADirectory,
            "is a directory, not an audio file",
        )));
    }
    if meta.len() == 0 {
        return Err(AudioError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    let file = std::fs::File::open(path).map_err(io_err)?;
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    decode_source(file, path, ext.as_deref())
}

/// Decodes an in-memory audio file; `name` is used in errors and `ext_hint` (e.g. `"mp3"`)
/// helps the format probe when the bytes alone are ambiguous.
pub fn decode_bytes(bytes: &[u8], name: &Path, ext_hint: Option<&str>) -> Result<DecodedAudio> {
    if bytes.is_empty() {
        return Err(AudioError::EmptyFile {
            path: name.to_path_buf(),
        });
    }
    decode_source(std::io::Cursor::new(bytes.to_vec()), name, ext_hint)
}

fn decode_source<R>(mut source: R, path: &Path, ext: Option<&str>) -> Result<DecodedAudio>
where
    R: MediaSource + 'static,
{
    let io_err = |source: std::io::Error| AudioError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        let n = source.read(&mut head[got..]).map_err(io_err)?;
        if n == 0 {
            break;
        }
        got += n;
    }
    if got == 0 {
        return Err(AudioError::EmptyFile {
            path: path.to_path_buf(),
        });
    }
    source.seek(SeekFrom::Start(0)).map_err(io_err)?;
    let audio = match sniff(&head[..got]) {
        Container::Wav => {
            let mut buffered = std::io::BufReader::new(source);
            match decode_wav_hound(&mut buffered, path) {
                Ok(a) => a,
                Err(hound_err) if hound_err.fallback => {
                    // hound refuses float64, A-law, mu-law, ADPCM...: let symphonia try.
                    let mut source = buffered.into_inner();
                    source.seek(SeekFrom::Start(0)).map_err(io_err)?;
                    decode_symphonia(source, path, Some("wav")).map_err(|e| match e {
                        AudioError::UnsupportedFormat { .. } | AudioError::Decode { .. } => {
                            AudioError::UnsupportedFormat {
                                path: path.to_path_buf(),
                                reason: format!(
                                    "WAV encoding not supported: {}",
                                    hound_err.message
                                ),
                            }
                        }
                        other => other,
                    })?
                }
                Err(hound_err) => {
                    return Err(AudioError::Decode {
                        path: path.to_path_buf(),
                        format: "WAV".into(),
                        message: hound_err.message,
                    });
                }
            }
        }
        Container::Other => {
            let end = if head.starts_with(b"OggS") {
                let end = crate::ogg::vorbis_end_granule(&mut source).map_err(io_err)?;
                source.seek(SeekFrom::Start(0)).map_err(io_err)?;
                end
            } else {
                None
            };
            let mut audio = decode_symphonia(source, path, ext)?;
            if let Some(end) = end {
                let end = usize::try_from(end).unwrap_or(usize::MAX);
                for ch in &mut audio.channels {
                    ch.truncate(end);
                }
            }
            audio
        }
    };
    validate(audio, path)
}

/// Checks the decoded audio: at least one sample, a usable rate, finite values.
fn validate(audio: DecodedAudio, path: &Path) -> Result<DecodedAudio> {
    if audio.sample_rate == 0 {
        return Err(AudioError::BadLayout {
            path: path.to_path_buf(),
            reason: "sample rate is 0".into(),
        });
    }
    if audio.channels.is_empty() || audio.frames() == 0 {
        return Err(AudioError::NoSamples {
            path: path.to_path_buf(),
        });
    }
    for (c, ch) in audio.channels.iter().enumerate() {
        if let Some((i, v)) = ch.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(AudioError::NonFinite {
                path: path.to_path_buf(),
                frame: i,
                channel: c,
                value: *v as f64,
            });
        }
    }
    Ok(audio)
}

struct HoundFailure {
    message: String,
    /// Whether symphonia should be tried (an encoding hound does not implement).
    fallback: bool,
}

fn decode_wav_hound<R: Read>(reader: R, path: &Path) -> Result<DecodedAudio, HoundFailure> {
    let classify = |e: hound::Error| {
        let fallback = match &e {
            hound::Error::Unsupported => true,
            hound::Error::FormatError(m) => {
                m.contains("bits per sample is not 32") || m.contains("bits per sample is not 8")
            }
            _ => false,
        };
        let message = match &e {
            hound::Error::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                "file is truncated (header or data ends early)".to_string()
            }
            other => other.to_string(),
        };
        HoundFailure { message, fallback }
    };
    let reader = hound::WavReader::new(reader).map_err(classify)?;
    let spec = reader.spec();
    let channels = spec.channels as usize;
    let total = reader.len() as usize;
    if total > MAX_DECODED_SAMPLES {
        return Err(HoundFailure {
            message: format!(
                "{total} samples exceed the limit of {MAX_DECODED_SAMPLES} ({})",
                path.display()
            ),
            fallback: false,
        });
    }
    let frames = total / channels.max(1);
    // The declared length may lie: never reserve more than a modest amount up front.
    let reserve = frames.min(1 << 22);
    let mut out: Vec<Vec<f32>> = (0..channels).map(|_| Vec::with_capacity(reserve)).collect();
    match spec.sample_format {
        hound::SampleFormat::Int => {
            if spec.bits_per_sample == 0 || spec.bits_per_sample > 32 {
                return Err(HoundFailure {
                    message: format!("{} bits per sample", spec.bits_per_sample),
                    fallback: true,
                });
            }
            let scale = 1.0f64 / (1u64 << (spec.bits_per_sample - 1)) as f64;
            for (i, s) in reader.into_samples::<i32>().enumerate() {
                let s = s.map_err(classify)?;
                out[i % channels].push((s as f64 * scale) as f32);
            }
        }
        hound::SampleFormat::Float => {
            for (i, s) in reader.into_samples::<f32>().enumerate() {
                let s = s.map_err(classify)?;
                out[i % channels].push(s);
            }
        }
    }
    Ok(DecodedAudio {
        sample_rate: spec.sample_rate,
        channels: out,
    })
}

fn sym_error(path: &Path, format: &str, e: SymError) -> AudioError {
    match e {
        SymError::Unsupported(what) => AudioError::UnsupportedFormat {
            path: path.to_path_buf(),
            reason: what.to_string(),
        },
        SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
            AudioError::Decode {
                path: path.to_path_buf(),
                format: format.to_string(),
                message: "file is truncated".into(),
            }
        }
        other => AudioError::Decode {
            path: path.to_path_buf(),
            format: format.to_string(),
            message: other.to_string(),
        },
    }
}

fn decode_symphonia<R>(source: R, path: &Path, ext: Option<&str>) -> Result<DecodedAudio>
where
    R: MediaSource + 'static,
{
    let owned: PathBuf = path.to_path_buf();
    let ext = ext.map(str::to_string);
    // A malformed stream must not take the caller down: third-party decoders are run under
    // catch_unwind and a panic becomes a typed error.
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        decode_symphonia_inner(source, &owned, ext.as_deref())
    }));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let msg = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "decoder panicked".into());
            Err(AudioError::Decode {
                path: path.to_path_buf(),
                format: "audio".into(),
                message: format!("decoder failure: {msg}"),
            })
        }
    }
}

fn decode_symphonia_inner<R>(source: R, path: &Path, ext: Option<&str>) -> Result<DecodedAudio>
where
    R: MediaSource + 'static,
{
    let mss = MediaSourceStream::new(Box::new(source), Default::default());
    let mut hint = Hint::new();
    if let Some(e) = ext {
        hint.with_extension(e);
    }
    let format_opts = FormatOptions {
        enable_gapless: true,
        ..Default::default()
    };
    let probed = symphonia::default::get_probe()
        .format(&hint, mss, &format_opts, &MetadataOptions::default())
        .map_err(|e| match e {
            SymError::Unsupported(_) => AudioError::UnsupportedFormat {
                path: path.to_path_buf(),
                reason: "not a WAV, FLAC, MP3 or OGG/Vorbis file".into(),
            },
            other => sym_error(path, "audio", other),
        })?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or_else(|| AudioError::UnsupportedFormat {
            path: path.to_path_buf(),
            reason: "no audio track".into(),
        })?;
    let track_id = track.id;
    let codec_params = track.codec_params.clone();
    let fmt_name = symphonia::default::get_codecs()
        .get_codec(codec_params.codec)
        .map(|d| d.short_name.to_ascii_uppercase())
        .unwrap_or_else(|| "audio".into());
    let mut decoder = symphonia::default::get_codecs()
        .make(&codec_params, &DecoderOptions::default())
        .map_err(|e| sym_error(path, &fmt_name, e))?;

    let mut channels: Vec<Vec<f32>> = Vec::new();
    let mut sample_rate = codec_params.sample_rate.unwrap_or(0);
    let mut total = 0usize;
    let mut skipped = 0usize;
    loop {
        let packet = match format.next_packet() {
            Ok(p) => p,
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(SymError::ResetRequired) => break,
            Err(e) => return Err(sym_error(path, &fmt_name, e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = match decoder.decode(&packet) {
            Ok(d) => d,
            Err(SymError::DecodeError(msg)) => {
                // A damaged frame in a lossy stream: players skip it; so do we, loudly.
                skipped += 1;
                tracing::warn!(file = %path.display(), "skipping undecodable packet: {msg}");
                if skipped > 16 {
                    return Err(AudioError::Decode {
                        path: path.to_path_buf(),
                        format: fmt_name,
                        message: format!("too many damaged packets (last: {msg})"),
                    });
                }
                continue;
            }
            Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(sym_error(path, &fmt_name, e)),
        };
        let spec = *decoded.spec();
        let n_ch = spec.channels.count();
        if n_ch == 0 {
            return Err(AudioError::BadLayout {
                path: path.to_path_buf(),
                reason: "stream has zero channels".into(),
            });
        }
        if channels.is_empty() {
            channels = (0..n_ch).map(|_| Vec::new()).collect();
            sample_rate = spec.rate;
        } else if channels.len() != n_ch || sample_rate != spec.rate {
            return Err(AudioError::BadLayout {
                path: path.to_path_buf(),
                reason: format!(
                    "stream changes from {} channels at {sample_rate} Hz to {n_ch} at {} Hz",
                    channels.len(),
                    spec.rate
                ),
            });
        }
        let frames = decoded.frames();
        if frames == 0 {
            continue;
        }
        total = total.saturating_add(frames * n_ch);
        if total > MAX_DECODED_SAMPLES {
            return Err(AudioError::Decode {
                path: path.to_path_buf(),
                format: fmt_name,
                message: format!("more than {MAX_DECODED_SAMPLES} samples"),
            });
        }
        let mut buf = SampleBuffer::<f32>::new(decoded.capacity() as u64, spec);
        buf.copy_interleaved_ref(decoded);
        for (i, s) in buf.samples().iter().enumerate() {
            channels[i % n_ch].push(*s);
        }
    }
    Ok(DecodedAudio {
        sample_rate,
        channels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav_bytes(
        spec: hound::WavSpec,
        write: impl Fn(&mut hound::WavWriter<&mut std::io::Cursor<Vec<u8>>>),
    ) -> Vec<u8> {
        let mut cur = std::io::Cursor::new(Vec::new());
        {
            let mut w = hound::WavWriter::new(&mut cur, spec).unwrap();
            write(&mut w);
            w.finalize().unwrap();
        }
        cur.into_inner()
    }

    #[test]
    fn pcm_depths_are_scaled_like_torchaudio() {
        for (bits, value, expected) in [
            (8u16, -128i32, -1.0f32),
            (8, 127, 127.0 / 128.0),
            (16, -32768, -1.0),
            (16, 12345, 12345.0 / 32768.0),
            (24, 8388607, 8388607.0 / 8388608.0),
            (24, -1, -1.0 / 8388608.0),
            (32, 1 << 30, 0.5),
        ] {
            let spec = hound::WavSpec {
                channels: 1,
                sample_rate: 8000,
                bits_per_sample: bits,
                sample_format: hound::SampleFormat::Int,
            };
            let bytes = wav_bytes(spec, |w| {
                if bits == 8 {
                    w.write_sample(value as i8).unwrap()
                } else if bits == 16 {
                    w.write_sample(value as i16).unwrap()
                } else {
                    w.write_sample(value).unwrap()
                }
            });
            let a = decode_bytes(&bytes, Path::new("t.wav"), None).unwrap();
            assert_eq!(a.channels[0], vec![expected], "{bits}-bit");
        }
    }

    #[test]
    fn float_wav_keeps_its_bits_and_rejects_nan() {
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44100,
            bits_per_sample: 32,
            sample_format: hound::SampleFormat::Float,
        };
        let x = 1.234_567_9e-5f32;
        let bytes = wav_bytes(spec, |w| {
            w.write_sample(x).unwrap();
            w.write_sample(-x).unwrap();
        });
        let a = decode_bytes(&bytes, Path::new("f.wav"), None).unwrap();
        assert_eq!(a.channels, vec![vec![x], vec![-x]]);
        assert_eq!(a.to_mono(), vec![0.0]);
        let bytes = wav_bytes(spec, |w| {
            w.write_sample(0.5f32).unwrap();
            w.write_sample(f32::NAN).unwrap();
        });
        let e = decode_bytes(&bytes, Path::new("nan.wav"), None).unwrap_err();
        assert!(matches!(e, AudioError::NonFinite { channel: 1, .. }), "{e}");
        assert!(e.to_string().contains("nan.wav"));
    }

    #[test]
    fn garbage_is_unsupported_and_empty_is_empty() {
        let e =
            decode_bytes(b"hello, this is not audio at all", Path::new("x.bin"), None).unwrap_err();
        assert!(matches!(e, AudioError::UnsupportedFormat { .. }), "{e}");
        let e = decode_bytes(b"", Path::new("e.wav"), None).unwrap_err();
        assert!(matches!(e, AudioError::EmptyFile { .. }), "{e}");
    }
}
