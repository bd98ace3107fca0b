//! The training memory estimate against what the models actually hold: the adapter count
//! formula against the parameters `add_adapters` really creates (two UNet configs), and the
//! estimate's parts against the weight files and the batch size.

use burn::module::Module;
use burn::tensor::Device;
use sonic_core::fixtures::fixtures_root;
use sonic_train::memory::{new_adapter_values, stage1_step_values};
use sonic_unet::{AdapterPlacement, UNet2DConditionModel, UNetConfig};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR"))).expect("fixtures")
}

#[test]
fn new_adapter_values_counts_what_add_adapters_creates() {
    let device = Device::flex();
    // sd15-tiny (conv projections, one cross-attention width) and sd21-tiny (linear
    // projections, per-level head dims).
    for model in ["sd15-tiny", "sd21-tiny"] {
        let dir = root().join(model).join("unet");
        let config_path = dir.join("config.json");
        let config = UNetConfig::from_file(&config_path).unwrap();
        let unet = UNet2DConditionModel::new(&config, &device).unwrap();
        let before = unet.num_params() as u64;
        for context in [24usize, 32, 77] {
            let mut with = unet.clone();
            let n = with.add_adapters(AdapterPlacement::OFFICIAL, context, 0.0, &device);
            assert!(n > 0, "{model}: no adapter placed");
            let created = with.num_params() as u64 - before;
            let estimated = new_adapter_values(&config, context as u64, &config_path).unwrap();
            assert_eq!(
                estimated, created,
                "{model} context {context}: estimate {estimated} vs {created} created ({n} adapters)"
            );
        }
    }
}

#[test]
fn stage1_step_grows_with_the_batch_and_the_negatives() {
    let base = stage1_step_values(4, 16, 77, 768);
    assert!(stage1_step_values(8, 16, 77, 768) > base);
    assert!(stage1_step_values(4, 32, 77, 768) > base);
    // Saturates instead of wrapping on absurd sizes.
    assert_eq!(stage1_step_values(u64::MAX / 2, 1, 77, 768), u64::MAX);
}
