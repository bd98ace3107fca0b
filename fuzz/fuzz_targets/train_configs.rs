//! Arbitrary text as a stage-1, stage-2 or tune config (first byte picks): a config loads or
//! is a typed error naming the file.

#![no_main]

#[path = "common/mod.rs"]
mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let p = common::file("stage.json", rest);
    let err = match pick % 3 {
        0 => sonic_train::config::Stage1Config::from_file(&p)
            .err()
            .map(|e| e.to_string()),
        1 => sonic_train::config::Stage2Config::from_file(&p)
            .err()
            .map(|e| e.to_string()),
        _ => sonic_tune::TuneConfig::from_file(&p)
            .err()
            .map(|e| e.to_string()),
    };
    if let Some(msg) = err {
        common::names(&msg, "stage.json");
    }
});
