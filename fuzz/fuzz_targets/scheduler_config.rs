//! Arbitrary text as `scheduler/scheduler_config.json` (Python JSON: NaN, Infinity allowed):
//! every scheduler class is built from it and, when that succeeds, set to a step count drawn
//! from the first byte and stepped once on a tiny tensor. Errors are typed; nothing panics.

#![no_main]

use burn::tensor::{Device, Tensor};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&steps, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let Ok(config) = sonic_schedulers::parse_python_json(text, "scheduler_config.json") else {
        return;
    };
    let device = Device::flex();
    for name in sonic_schedulers::SCHEDULER_NAMES {
        let Ok(mut s) = sonic_schedulers::scheduler_by_name(name, &config) else {
            continue;
        };
        if s.set_timesteps(steps as usize).is_ok() && !s.timesteps().is_empty() {
            let x = Tensor::<4>::ones([1, 1, 2, 2], &device);
            let _ = s.step(x.clone(), 0, x);
        }
    }
});
