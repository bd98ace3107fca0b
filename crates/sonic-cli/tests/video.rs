//! End-to-end tests of `sonic video` on the tiny fixtures: the MP4 has fps x duration frames
//! and the whole sound (checked with ffprobe when installed, and by our own box walk), the
//! same seed gives the same bytes, photo edits work in both modes, bad input leaves no file.

mod common;

use common::tiny_models;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A mono 16 kHz WAV whose sound changes every 2 s (tone, noise, clicks).
fn long_wav(dir: &Path, seconds: f64) -> PathBuf {
    let rate = 16000u32;
    let n = (seconds * rate as f64) as usize;
    let mut state = 7u32;
    let samples: Vec<i16> = (0..n)
        .map(|i| {
            let t = i as f64 / rate as f64;
            let v = match (t / 2.0) as usize % 3 {
                0 => 0.5 * (2.0 * std::f64::consts::PI * 440.0 * t).sin(),
                1 => {
                    state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    (state >> 8) as f64 / (1u32 << 24) as f64 - 0.5
                }
                _ => {
                    if i % 1600 < 40 {
                        0.8
                    } else {
                        0.0
                    }
                }
            };
            (v * 32767.0) as i16
        })
        .collect();
    let mut wav = Vec::new();
    let data_len = (samples.len() * 2) as u32;
    wav.extend_from_slice(b"RIFF");
    wav.extend_from_slice(&(36 + data_len).to_le_bytes());
    wav.extend_from_slice(b"WAVEfmt ");
    wav.extend_from_slice(&16u32.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&1u16.to_le_bytes());
    wav.extend_from_slice(&rate.to_le_bytes());
    wav.extend_from_slice(&(rate * 2).to_le_bytes());
    wav.extend_from_slice(&2u16.to_le_bytes());
    wav.extend_from_slice(&16u16.to_le_bytes());
    wav.extend_from_slice(b"data");
    wav.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        wav.extend_from_slice(&s.to_le_bytes());
    }
    let p = dir.join("long.wav");
    std::fs::write(&p, wav).unwrap();
    p
}

fn video(audio: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sonic"))
        .arg("video")
        .arg("--audio")
        .arg(audio)
        .args(["--steps", "2"])
        .args(tiny_models())
        .arg("--out")
        .arg(out)
        .args(extra)
        .args(if extra.contains(&"--seed") {
            &[][..]
        } else {
            &["--seed", "11"][..]
        })
        .output()
        .unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The sample counts and durations (seconds) of the file's tracks, from its `stsz` and `mdhd`
/// boxes.
fn tracks(bytes: &[u8]) -> Vec<(usize, f64)> {
    let find = |kind: &[u8]| -> Vec<usize> {
        bytes
            .windows(4)
            .enumerate()
            .filter(|(_, w)| *w == kind)
            .map(|(i, _)| i + 4)
            .collect()
    };
    let u32_at = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    let counts: Vec<usize> = find(b"stsz")
        .iter()
        .map(|&o| u32_at(o + 8) as usize)
        .collect();
    let secs: Vec<f64> = find(b"mdhd")
        .iter()
        .map(|&o| u32_at(o + 16) as f64 / u32_at(o + 12) as f64)
        .collect();
    counts.into_iter().zip(secs).collect()
}

fn ffprobe(path: &Path, stream: &str) -> Option<String> {
    let o = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", stream, "-count_frames"])
        .args([
            "-show_entries",
            "stream=codec_name,nb_read_frames,duration,width,height",
        ])
        .args(["-of", "default=nw=1"])
        .arg(path)
        .output();
    let Ok(o) = o else {
        assert!(
            std::env::var("SONIC_REQUIRE_SYSTEM_MEDIA").as_deref() != Ok("1"),
            "ffprobe is required (SONIC_REQUIRE_SYSTEM_MEDIA=1): install ffmpeg"
        );
        return None;
    };
    assert!(o.status.success(), "{}", stderr(&o));
    Some(String::from_utf8(o.stdout).unwrap())
}

#[test]
fn video_has_a_frame_per_tick_and_the_whole_sound() {
    let dir = tempfile::tempdir().unwrap();
    let wav = long_wav(dir.path(), 6.5);
    let out = dir.path().join("clip.mp4");
    let frames = dir.path().join("frames");
    let o = video(
        &wav,
        &out,
        &[
            "--fps",
            "4",
            "--keyframe-every",
            "3",
            "--frames",
            frames.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("clip.mp4"));
    let bytes = std::fs::read(&out).unwrap();
    let t = tracks(&bytes);
    assert_eq!(t.len(), 2, "video and audio tracks");
    assert_eq!(t[0].0, 26, "6.5 s at 4 fps");
    assert!((t[0].1 - 6.5).abs() < 1e-9);
    assert!((t[1].1 - 6.5).abs() < 1e-9, "audio {} s", t[1].1);
    assert_eq!(std::fs::read_dir(&frames).unwrap().count(), 26);
    assert!(frames.join("frame-00025.png").is_file());
    // The parameters are in the file.
    assert!(bytes.windows(7).any(|w| w == b"seed=11"));
    if let Some(v) = ffprobe(&out, "v:0") {
        assert!(
            v.contains("codec_name=h264") && v.contains("nb_read_frames=26"),
            "{v}"
        );
        let a = ffprobe(&out, "a:0").unwrap();
        assert!(
            a.contains("codec_name=flac") && a.contains("duration=6.5"),
            "{a}"
        );
    }
    // The same seed gives the same file.
    let again = dir.path().join("again.mp4");
    let o = video(&wav, &again, &["--fps", "4", "--keyframe-every", "3"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(bytes, std::fs::read(&again).unwrap());
    // Another seed, another picture.
    let other = dir.path().join("other.mp4");
    let o = video(
        &wav,
        &other,
        &["--fps", "4", "--keyframe-every", "3", "--seed", "12"],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_ne!(bytes, std::fs::read(&other).unwrap());
}

#[test]
fn photo_edits_and_coherence_options() {
    let dir = tempfile::tempdir().unwrap();
    let wav = long_wav(dir.path(), 3.0);
    let img = image::RgbImage::from_fn(70, 50, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 4) as u8, 90])
    });
    let photo = dir.path().join("photo.png");
    img.save(&photo).unwrap();
    for (name, extra, frames) in [
        (
            "pnp",
            vec!["--image", photo.to_str().unwrap(), "--fps", "2"],
            6,
        ),
        (
            "sdedit-reuse",
            vec![
                "--image",
                photo.to_str().unwrap(),
                "--mode",
                "sdedit",
                "--strength",
                "0.5",
                "--reuse-previous",
                "0.5",
                "--fps",
                "2",
            ],
            6,
        ),
        (
            "drift",
            vec![
                "--noise",
                "drift",
                "--drift-seconds",
                "1",
                "--fps",
                "3",
                "--batch",
                "4",
                "--width",
                "48",
                "--height",
                "32",
            ],
            9,
        ),
    ] {
        let out = dir.path().join(format!("{name}.mp4"));
        let o = video(&wav, &out, &extra);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let t = tracks(&std::fs::read(&out).unwrap());
        assert_eq!(t[0].0, frames, "{name}");
        assert!((t[1].1 - 3.0).abs() < 1e-9, "{name}");
    }
    // Photo edits keep the photo's size (cropped to multiples of 8): 64 x 48.
    let bytes = std::fs::read(dir.path().join("pnp.mp4")).unwrap();
    let tkhd = bytes.windows(4).position(|w| w == b"tkhd").unwrap() + 4;
    let w = u32::from_be_bytes(bytes[tkhd + 76..tkhd + 80].try_into().unwrap()) >> 16;
    let h = u32::from_be_bytes(bytes[tkhd + 80..tkhd + 84].try_into().unwrap()) >> 16;
    assert_eq!((w, h), (64, 48));
}

#[test]
fn bad_input_fails_without_output() {
    let dir = tempfile::tempdir().unwrap();
    let wav = long_wav(dir.path(), 1.0);
    let junk = dir.path().join("junk.wav");
    std::fs::write(&junk, b"RIFF not really").unwrap();
    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, b"").unwrap();
    let out = dir.path().join("x.mp4");
    for (audio, extra, needle) in [
        (&junk, vec![], "junk.wav"),
        (&empty, vec![], "empty.wav"),
        (&wav, vec!["--fps", "0"], "fps"),
        (&wav, vec!["--fps", "nan"], "fps"),
        (&wav, vec!["--window=-1"], "window"),
        (&wav, vec!["--reuse-previous", "2"], "reuse"),
        (&wav, vec!["--width", "60"], "60"),
        (&wav, vec!["--image", "missing.png"], "missing.png"),
        (
            &wav,
            vec!["--image", "p.png", "--reuse-previous", "0.5"],
            "reuse-previous",
        ),
        (
            &wav,
            vec!["--noise", "drift", "--drift-seconds", "0"],
            "drift-seconds",
        ),
    ] {
        let o = video(audio, &out, &extra);
        assert!(!o.status.success(), "{extra:?}");
        let e = stderr(&o);
        assert!(e.contains(needle), "{extra:?}: {e}");
        assert!(!e.contains("panicked"), "{e}");
        assert!(!out.exists(), "{extra:?} left a file");
    }
    let o = video(&wav, &dir.path().join("x.gif"), &[]);
    assert!(!o.status.success() && stderr(&o).contains(".mp4"));
}
