//! Test data shared by the CLI tests: the tiny models' arguments, a sound, a tiny training set.
//! (Each test binary uses part of it.)
#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The fixtures folder.
pub fn fixtures() -> PathBuf {
    sonic_core::fixtures::fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("fixtures")
}

/// The repository's example thunder clip.
pub fn thunder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/assets/thunder.wav")
}

/// `--model ... --clap ... --projector ... --projector-config ... --adapters ...` of the tiny
/// SonicDiffusion fixtures (sd15-tiny with sonic-tiny's audio parts).
pub fn tiny_models() -> Vec<OsString> {
    let f = fixtures();
    let s = f.join("sonic-tiny");
    [
        ("--model", f.join("sd15-tiny")),
        ("--clap", s.join("clap.safetensors")),
        ("--projector", s.join("projector.safetensors")),
        ("--projector-config", s.join("config.json")),
        ("--adapters", s.join("adapters.safetensors")),
    ]
    .into_iter()
    .flat_map(|(flag, path)| [OsString::from(flag), path.into_os_string()])
    .collect()
}

/// Five clips of the sonic-tiny fixture, two classes, a PNG each, and a manifest.
pub fn dataset(dir: &Path) -> PathBuf {
    let refs = fixtures().join("sonic-tiny/reference");
    let mut csv = String::from("audio,image,caption,label\n");
    for (i, (clip, label)) in [("a", "x"), ("b", "x"), ("c", "y"), ("d", "y"), ("e", "y")]
        .iter()
        .enumerate()
    {
        let wav = dir.join(format!("{clip}.wav"));
        std::fs::copy(refs.join(format!("clip_{clip}.wav")), &wav).unwrap();
        let rgb: Vec<u8> = (0..64 * 64 * 3)
            .map(|k| ((k * (i + 3)) % 251) as u8)
            .collect();
        let png = sonic_pipeline::output::encode_png(64, 64, &rgb, &[]).unwrap();
        std::fs::write(dir.join(format!("{clip}.png")), png).unwrap();
        csv.push_str(&format!(
            "{clip}.wav,{clip}.png,\"a photo, number {i}\",{label}\n"
        ));
    }
    let m = dir.join("manifest.csv");
    std::fs::write(&m, csv).unwrap();
    m
}

/// The PNG's iTXt entries (keyword, text).
pub fn itxt(path: &Path) -> Vec<(String, String)> {
    let dec = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
    let mut reader = dec.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    reader.next_frame(&mut buf).unwrap();
    reader
        .info()
        .utf8_text
        .iter()
        .map(|c| (c.keyword.clone(), c.get_text().unwrap()))
        .collect()
}

/// One iTXt entry of the PNG.
pub fn meta(path: &Path, key: &str) -> Option<String> {
    itxt(path)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// Starts `sonic serve --port 0` on the tiny models (plus `extra`); returns the child (stderr
/// piped) and the URL it printed (`listening on URL`).
pub fn start_server(extra: &[&str]) -> (std::process::Child, String) {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_sonic"))
        .args(["serve", "--port", "0"])
        .args(tiny_models())
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
        .to_string();
    (child, url)
}
