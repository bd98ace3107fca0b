//! Plumbing shared by every sonic-diffusion crate.
//!
//! - [`device`]: choosing a Burn [`Device`] from a string such as
//!   `flex`, `ndarray`, `wgpu` or `cuda:1`;
//! - [`checkpoint`]: the one reader of weights files ([`checkpoint::Checkpoint`]: safetensors
//!   or torch pickle detected from the bytes, nested state dicts found by an anchor key,
//!   metadata, lazy tensors);
//! - [`weights`]: loading them into Burn modules with key remapping and shape checks, turning
//!   every mismatch into a typed error that names the file and key;
//! - [`lora`]: LoRA files (diffusers, PEFT, kohya layouts) merged into a model's weights;
//! - [`config`]: reading a JSON config file into a typed struct;
//! - [`noise`]: seeded Gaussian noise, the same on every device;
//! - [`fixtures`]: locating and reading the PyTorch reference fixtures and comparing tensors;
//! - [`error`]: the crate's error type.
//!
//! ```no_run
//! use sonic_core::device::parse_device;
//! let device = parse_device("flex").expect("the flex backend is compiled in");
//! let x = burn::tensor::Tensor::<2>::zeros([2, 3], &device);
//! assert_eq!(x.dims(), [2, 3]);
//! ```

pub mod checkpoint;
pub mod config;
pub mod device;
pub mod error;
pub mod fixtures;
pub mod formula;
pub mod lora;
pub mod noise;
pub mod weights;

pub use error::CoreError;

/// The Burn tensor types used throughout the workspace.
pub use burn::tensor::{Device, Tensor, TensorData};
