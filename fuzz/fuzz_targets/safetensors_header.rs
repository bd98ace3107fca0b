//! Arbitrary bytes as a `.safetensors` file: the header reader, the checkpoint index and the
//! LoRA reader (key layouts, ranks, alphas, metadata) must return the tensors or a typed error
//! naming the file, never panic or allocate what the header claims.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use sonic_core::checkpoint::{Checkpoint, read_safetensors_header};

fuzz_target!(|data: &[u8]| {
    let p = common::file("w.safetensors", data);
    match read_safetensors_header(&p) {
        Ok(entries) => {
            // A header that passed must describe data inside the file.
            let len = data.len() as u128;
            for e in entries.values() {
                let n: u128 = e.shape.iter().map(|&d| d as u128).product();
                assert!(n <= len * 8, "{e:?} in a {len}-byte file");
            }
        }
        Err(e) => common::names(&e.to_string(), "w.safetensors"),
    }
    if let Err(e) = Checkpoint::open(&p) {
        common::names(&e.to_string(), "w.safetensors");
    }
    if let Err(e) = sonic_core::lora::LoraFile::open(&p) {
        common::names(&e.to_string(), "w.safetensors");
    }
});
