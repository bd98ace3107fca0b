//! Test data shared by the CLI tests: a tiny training set.

use std::path::{Path, PathBuf};

/// Five clips of the sonic-tiny fixture, two classes, a PNG each, and a manifest.
pub fn dataset(dir: &Path) -> PathBuf {
    let refs = sonic_core::fixtures::fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("fixtures")
        .join("sonic-tiny/reference");
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
