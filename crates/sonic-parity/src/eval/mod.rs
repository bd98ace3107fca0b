//! The sections of the evaluation fixtures (`eval-tiny` and `tests-data/eval-metrics`): the
//! CLIP towers and CLIP score, pytorch-fid's InceptionV3 and the Frechet distance, Wav2CLIP and
//! LPIPS.

pub mod clip;
pub mod fid;
pub mod lpips;
pub mod wav2clip;
