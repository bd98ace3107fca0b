//! Training for SonicDiffusion (DESIGN.md section 2, "Training"): datasets and manifests,
//! on-disk caches of frozen-model outputs, the stage-1 projector and stage-2 adapter trainers,
//! and hyperparameter search.

pub mod cache;
pub mod checkpoint;
pub mod config;
pub mod dataset;
pub mod error;
pub mod losses;
pub mod optim;
pub mod params;
pub mod prepare;
mod run_loop;
pub mod stage1;
pub mod stage2;
pub mod toy_world;
pub mod tune;

pub use dataset::{Dataset, Record};
pub use error::{Result, TrainError};
