//! The MP4 writer, the H.264 and FLAC encoders, checked against independent decoders: our
//! own box walk, symphonia's FLAC decoder, OpenH264's decoder, and `ffprobe` where it is
//! installed (`.ci/run` installs it).

use sonic_video::flac::{FlacStream, to_i16};
use sonic_video::h264::{H264Options, encode_frames};
use sonic_video::mp4::{Mp4Options, mux};
use std::path::Path;

/// Walks boxes: (path, offset of body, body length).
fn walk(data: &[u8], prefix: &str, out: &mut Vec<(String, usize, usize)>, base: usize) {
    let containers = ["moov", "trak", "mdia", "minf", "stbl", "udta", "dinf"];
    let mut i = 0;
    while i + 8 <= data.len() {
        let size = u32::from_be_bytes(data[i..i + 4].try_into().unwrap()) as usize;
        assert!(
            size >= 8 && i + size <= data.len(),
            "box at {} overruns",
            base + i
        );
        let kind = String::from_utf8_lossy(&data[i + 4..i + 8]).to_string();
        let path = format!("{prefix}/{kind}");
        out.push((path.clone(), base + i + 8, size - 8));
        if containers.contains(&kind.as_str()) {
            walk(&data[i + 8..i + size], &path, out, base + i + 8);
        }
        i += size;
    }
    assert_eq!(i, data.len(), "trailing bytes under {prefix}");
}

fn u32_at(d: &[u8], i: usize) -> u32 {
    u32::from_be_bytes(d[i..i + 4].try_into().unwrap())
}

fn frames(w: usize, h: usize, n: usize) -> Vec<Vec<u8>> {
    (0..n)
        .map(|f| {
            let mut v = Vec::with_capacity(w * h * 3);
            for y in 0..h {
                for x in 0..w {
                    v.push(((x * 255) / w) as u8);
                    v.push(((y * 255) / h) as u8);
                    v.push(((f * 37) % 256) as u8);
                }
            }
            v
        })
        .collect()
}

fn tone(n: usize, rate: u32, hz: f32) -> Vec<f32> {
    (0..n)
        .map(|i| 0.5 * (2.0 * std::f32::consts::PI * hz * i as f32 / rate as f32).sin())
        .collect()
}

#[test]
fn flac_round_trips_through_symphonia() {
    let rate = 22050;
    let mut noise = 12345u32;
    let white: Vec<f32> = (0..9000)
        .map(|_| {
            noise = noise.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (noise >> 8) as f32 / (1 << 24) as f32 - 0.5
        })
        .collect();
    for (name, chans) in [
        ("tone", vec![tone(10_000, rate, 440.0)]),
        (
            "stereo",
            vec![tone(4097, rate, 200.0), white[..4097].to_vec()],
        ),
        ("noise", vec![white.clone()]),
        ("silence", vec![vec![0.0; 5000]]),
        (
            "short",
            vec![(0..17).map(|i| i as f32 / 20.0 - 0.4).collect()],
        ),
        ("clipped", vec![vec![2.0, -3.0, f32::NAN, 0.1]]),
    ] {
        let ints: Vec<Vec<i32>> = chans.iter().map(|c| to_i16(c)).collect();
        let stream = FlacStream::encode(&ints, rate).unwrap();
        let file = stream.to_flac_file();
        let decoded = sonic_audio::decode_bytes(&file, Path::new(name), Some("flac")).unwrap();
        assert_eq!(decoded.sample_rate, rate, "{name}");
        assert_eq!(decoded.channels.len(), ints.len(), "{name}");
        for (c, (got, want)) in decoded.channels.iter().zip(&ints).enumerate() {
            let got: Vec<i32> = got.iter().map(|v| (v * 32768.0).round() as i32).collect();
            assert_eq!(&got, want, "{name} channel {c}");
        }
        if name == "tone" {
            // The fixed predictors compress a tone well below 16 bits per sample.
            let bytes: usize = stream.frames.iter().map(|f| f.0.len()).sum();
            assert!(bytes < 10_000 * 2 / 2, "{name}: {bytes} bytes");
        }
    }
}

#[test]
fn mp4_tables_describe_the_samples() {
    let (w, h, n, fps) = (48, 32, 10, 4.0);
    let f = frames(w, h, n);
    let video = encode_frames(f.iter().map(Vec::as_slice), w, h, &H264Options::default()).unwrap();
    let rate = 16000;
    let sound = tone(rate as usize * 5 / 2, rate, 300.0); // 2.5 s
    let audio = FlacStream::encode(&[to_i16(&sound)], rate).unwrap();
    let options = Mp4Options {
        fps,
        comment: Some("seed=7 prompt=storm".into()),
        tool: Some("sonic-video test".into()),
    };
    let bytes = mux(&video, Some(&audio), &options).unwrap();
    assert_eq!(
        bytes,
        mux(&video, Some(&audio), &options).unwrap(),
        "deterministic"
    );
    let mut boxes = Vec::new();
    walk(&bytes, "", &mut boxes, 0);
    let find = |p: &str| {
        boxes
            .iter()
            .filter(|b| b.0 == p)
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(boxes[0].0, "/ftyp");
    assert_eq!(boxes[1].0, "/moov", "moov before mdat (fast start)");
    let stsz = find("/moov/trak/mdia/minf/stbl/stsz");
    let stco = find("/moov/trak/mdia/minf/stbl/stco");
    assert_eq!(stsz.len(), 2);
    let mdat = find("/mdat")[0].clone();
    let tracks = [
        (
            n,
            &video
                .frames
                .iter()
                .map(|f| f.data.clone())
                .collect::<Vec<_>>(),
        ),
        (
            audio.frames.len(),
            &audio.frames.iter().map(|f| f.0.clone()).collect(),
        ),
    ];
    for (t, (count, samples)) in tracks.iter().enumerate() {
        let (_, sz, _) = stsz[t];
        let (_, co, _) = stco[t];
        assert_eq!(u32_at(&bytes, sz + 8) as usize, *count);
        assert_eq!(u32_at(&bytes, co + 4) as usize, *count);
        for (i, s) in samples.iter().enumerate() {
            let size = u32_at(&bytes, sz + 12 + 4 * i) as usize;
            let off = u32_at(&bytes, co + 8 + 4 * i) as usize;
            assert_eq!(size, s.len());
            assert!(off >= mdat.1 && off + size <= mdat.1 + mdat.2);
            assert_eq!(
                &bytes[off..off + size],
                s.as_slice(),
                "track {t} sample {i}"
            );
        }
    }
    // Durations: 10 frames at 4 fps = 2.5 s; the sound 2.5 s.
    let mdhd = find("/moov/trak/mdia/mdhd");
    let secs = |(_, o, _): &(String, usize, usize)| {
        u32_at(&bytes, o + 16) as f64 / u32_at(&bytes, o + 12) as f64
    };
    assert!((secs(&mdhd[0]) - 2.5).abs() < 1e-9);
    assert!((secs(&mdhd[1]) - 2.5).abs() < 1e-9);
    // The comment is stored.
    assert!(bytes.windows(19).any(|x| x == b"seed=7 prompt=storm"));

    // The frames decode with OpenH264's decoder, close to the originals.
    let mut decoder = openh264_decoder();
    let mut sps_pps = Vec::new();
    for p in [&video.sps, &video.pps] {
        sps_pps.extend_from_slice(&[0, 0, 0, 1]);
        sps_pps.extend_from_slice(p);
    }
    let _ = decoder.decode(&sps_pps);
    for (i, frame) in video.frames.iter().enumerate() {
        let mut annex_b = Vec::new();
        let mut j = 0;
        while j < frame.data.len() {
            let len = u32_at(&frame.data, j) as usize;
            annex_b.extend_from_slice(&[0, 0, 0, 1]);
            annex_b.extend_from_slice(&frame.data[j + 4..j + 4 + len]);
            j += 4 + len;
        }
        let yuv = decoder
            .decode(&annex_b)
            .unwrap()
            .expect("a picture per access unit");
        let mut rgb = vec![0u8; w * h * 3];
        use openh264::formats::YUVSource;
        assert_eq!(yuv.dimensions(), (w, h));
        yuv.write_rgb8(&mut rgb);
        let mse: f64 = rgb
            .iter()
            .zip(&f[i])
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum::<f64>()
            / rgb.len() as f64;
        let psnr = 10.0 * (255.0f64 * 255.0 / mse.max(1e-9)).log10();
        assert!(psnr > 30.0, "frame {i}: PSNR {psnr:.1} dB");
    }
}

fn openh264_decoder() -> openh264::decoder::Decoder {
    openh264::decoder::Decoder::new().unwrap()
}

/// `ffprobe` on the file, when installed.
#[test]
fn ffprobe_reads_frames_and_sound() {
    let Ok(out) = std::process::Command::new("ffprobe")
        .arg("-version")
        .output()
    else {
        eprintln!("ffprobe not installed: skipped (.ci/run installs ffmpeg)");
        return;
    };
    assert!(out.status.success());
    let (w, h, n, fps) = (64, 48, 13, 5.0);
    let f = frames(w, h, n);
    let video = encode_frames(f.iter().map(Vec::as_slice), w, h, &H264Options::default()).unwrap();
    let rate = 44100;
    let sound = tone(rate as usize * 13 / 5, rate, 440.0);
    let audio = FlacStream::encode(&[to_i16(&sound), to_i16(&sound)], rate).unwrap();
    let bytes = mux(
        &video,
        Some(&audio),
        &Mp4Options {
            fps,
            ..Mp4Options::default()
        },
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v.mp4");
    std::fs::write(&path, &bytes).unwrap();
    let probe = |stream: &str, entries: &str| {
        let o = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                stream,
                "-count_frames",
                "-show_entries",
            ])
            .arg(entries)
            .args(["-of", "default=nw=1"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(
            o.stderr.is_empty(),
            "ffprobe complained: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let v = probe(
        "v:0",
        "stream=codec_name,width,height,nb_read_frames,duration",
    );
    assert!(v.contains("codec_name=h264"), "{v}");
    assert!(v.contains(&format!("nb_read_frames={n}")), "{v}");
    assert!(v.contains("width=64") && v.contains("height=48"), "{v}");
    let a = probe("a:0", "stream=codec_name,sample_rate,channels,duration");
    assert!(
        a.contains("codec_name=flac") && a.contains("channels=2"),
        "{a}"
    );
    let d: f64 = a
        .lines()
        .find_map(|l| l.strip_prefix("duration="))
        .unwrap()
        .parse()
        .unwrap();
    assert!((d - 2.6).abs() < 0.01, "audio {d} s");
    // ffmpeg decodes every audio sample exactly.
    let o = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&path)
        .args(["-map", "0:a", "-f", "s16le", "-"])
        .output()
        .unwrap();
    assert!(o.status.success());
    let pcm: Vec<i16> = o
        .stdout
        .chunks(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    let want = to_i16(&sound);
    assert_eq!(pcm.len(), want.len() * 2);
    assert!(
        pcm.iter()
            .step_by(2)
            .zip(&want)
            .all(|(a, b)| *a as i32 == *b)
    );
}
