//! Arbitrary prompts (any bytes, lossily UTF-8) into the CLIP tokenizer of the sd15-tiny
//! fixture (`$SONIC_FIXTURES`, default `../../shared/fixtures`): ids are always 77 long,
//! start with BOS, and every id is inside the vocabulary.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sonic_clip::tokenizer::ClipTokenizer;
use std::sync::OnceLock;

fn tokenizer() -> &'static ClipTokenizer {
    static T: OnceLock<ClipTokenizer> = OnceLock::new();
    T.get_or_init(|| {
        let root = std::env::var("SONIC_FIXTURES").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/fixtures").into()
        });
        ClipTokenizer::from_dir(std::path::Path::new(&root).join("sd15-tiny/tokenizer"))
            .expect("the sd15-tiny tokenizer (set SONIC_FIXTURES)")
    })
}

fuzz_target!(|data: &[u8]| {
    let prompt = String::from_utf8_lossy(data);
    let t = tokenizer();
    if let Ok(p) = t.encode(&prompt) {
        let ids = p.ids_i64();
        assert_eq!(ids.len(), 77);
        assert!(ids.iter().all(|&i| i >= 0 && (i as usize) < t.vocab_size()));
    }
});
