//! Training for SonicDiffusion (docs/TRAINING.md): datasets and manifests,
//! on-disk caches of frozen-model outputs, the stage-1 projector and stage-2 adapter trainers,
//! and the objective of the hyperparameter search (the search itself is `sonic-tune`).
//!
//! The trainers work on in-memory tensors; the `sonic train` CLI builds them from a manifest
//! through the caches. Stage 1 on three clips of two classes, CLAP embeddings 43 wide, caption
//! embeddings 77 x 32:
//!
//! ```no_run
//! use burn::tensor::{Device, Distribution, Tensor};
//! use sonic_projector::ProjectorConfig;
//! use sonic_train::config::Stage1Config;
//! use sonic_train::stage1::{Stage1Data, Stage1Trainer, new_projector};
//!
//! # fn main() -> sonic_train::Result<()> {
//! let device = Device::default();
//! let clap = Tensor::<2>::random([3, 43], Distribution::Default, &device);
//! let text = Tensor::<3>::random([3, 77, 32], Distribution::Default, &device);
//! let data = Stage1Data::new(clap, vec![0, 0, 1], text)?;
//! let projector = new_projector(&ProjectorConfig::new(43, 77, 4, 8, 2), 7, &device)?;
//! let mut trainer = Stage1Trainer::new(Stage1Config::default(), projector, &device)?;
//! let summary = trainer.run(&data, None, Some("runs/s1".as_ref()), &mut |event| {
//!     println!("{event:?}");
//!     true // false cancels after a checkpoint
//! })?;
//! println!("{} steps, loss {}", summary.step, summary.loss);
//! # Ok(())
//! # }
//! ```
//!
//! The whole recipe end to end on a toy world trained from scratch (about 6 minutes on 2
//! cores) is `sonic_bench::toy_world::run`, also `sonic bench toy-world`.

pub mod cache;
pub mod caption;
pub mod checkpoint;
pub mod config;
pub mod dataset;
pub mod error;
pub mod losses;
pub mod memory;
pub mod optim;
pub mod params;
pub mod prepare;
mod run_loop;
pub mod stage1;
pub mod stage2;
pub mod tune;

pub use dataset::{Dataset, Record};
pub use error::{Result, TrainError};
