//! Benchmarks of the whole SonicDiffusion recipe, kept apart from the training library they
//! exercise. [`toy_world`]: can a base model, stage 1 and stage 2 trained from scratch teach a
//! model to draw the picture that belongs to a sound, from the sound alone?
//!
//! ```no_run
//! use sonic_bench::toy_world::{self, ToyWorldOptions};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let device = sonic_core::device::default_device()?;
//! let options = ToyWorldOptions::quick("../shared/fixtures", device);
//! let report = toy_world::run(&options, &mut |p| eprintln!("{p:?}"))?;
//! println!("accuracy {}", report.accuracy);
//! # Ok(()) }
//! ```

pub mod toy_world;
