//! Arbitrary bytes as a training manifest: `.csv`, `.jsonl`, or the official layout's
//! `labels.csv` (the first byte picks). The scratch folder holds `a.wav`, `b.wav`, `i.png` and
//! `a.png` so records naming them get past the existence check. Every error names the manifest.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use std::sync::Once;

fuzz_target!(|data: &[u8]| {
    static FILES: Once = Once::new();
    FILES.call_once(|| {
        for f in ["a.wav", "b.wav", "i.png", "a.png", "b.jpg"] {
            common::file(f, b"");
        }
    });
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let (name, opened) = match pick % 3 {
        0 => {
            let p = common::file("m.csv", rest);
            ("m.csv", sonic_train::Dataset::open(&p))
        }
        1 => {
            let p = common::file("m.jsonl", rest);
            ("m.jsonl", sonic_train::Dataset::open(&p))
        }
        _ => {
            let p = common::file("labels.csv", rest);
            let folder = p.parent().expect("scratch folder");
            (
                "labels.csv",
                sonic_train::Dataset::import_labels_csv(folder),
            )
        }
    };
    match opened {
        Ok(d) => {
            // Whatever opened can be split and labelled without a panic.
            let _ = d.split(0.5, 1);
            let _ = d.split(0.0, 2);
            let _ = d.class_indices();
        }
        Err(e) => common::names(&e.to_string(), name),
    }
});
