//! Arbitrary bytes as a PyTorch checkpoint (`.pt`: a zip with a pickle, or a legacy pickle):
//! indexing its tensors (what every `.pt` / `.pth` / `.bin` load does first, format detected
//! from the bytes) returns them or a
//! typed error naming the file.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use sonic_core::checkpoint::Checkpoint;

fuzz_target!(|data: &[u8]| {
    let p = common::file("w.pt", data);
    if let Err(e) = Checkpoint::open(&p) {
        common::names(&e.to_string(), "w.pt");
    }
});
