//! The evaluation metrics of SonicDiffusion and AudioToken, on Burn: CLIP score, IIS (CLIP
//! image-image similarity), AIS (Wav2CLIP audio-image similarity), AIC (CLIP zero-shot
//! classification accuracy), FID (pytorch-fid's InceptionV3 and Frechet distance) and LPIPS
//! (structure preservation of edits).
//!
//! Each model is equal to the reference package's (transformers' CLIP towers, the `wav2clip`,
//! `pytorch-fid` and `lpips` PyPI packages), checked by `sonic parity`.

pub mod error;
pub mod evaluate;
pub mod fid;
pub mod images;
pub mod inception;
pub mod lpips;
pub mod metrics;
pub mod report;
pub mod wav2clip;

pub use error::EvalError;
