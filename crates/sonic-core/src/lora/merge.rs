//! Merging a LoRA file into a module's weights, and restoring them.

use super::{LoraComponent, LoraFile, lora_err};
use crate::error::{CoreError, Result};
use crate::weights::LoadOptions;
use crate::weights::expected_tensors;
use crate::weights::names::ParamPath;
use crate::weights::remap::CompiledRemaps;
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor, TensorData};
use std::collections::HashMap;

/// The weights a merge changed, with their originals when kept.
#[derive(Debug)]
pub struct MergedLora {
    changed: Vec<String>,
    originals: Option<HashMap<String, Tensor<1>>>,
}

impl LoraFile {
    /// Merges the layers for `component` into `module`'s weights at `scale` (diffusers'
    /// `set_adapters` weight): every targeted weight `W` becomes
    /// `W + scale * alpha / r * up @ down`. With `keep_originals` the changed weights'
    /// originals are kept (memory: those weights once more) so that
    /// [`MergedLora::unmerge`] restores them bit for bit. At scale 0 nothing changes.
    /// `names` are the module's weight-name rewrites (its [`LoadOptions::remaps`] from
    /// diffusers' names to the module's, and their inverse [`LoadOptions::file_key`]), so
    /// that the LoRA's diffusers names find the module's weights.
    ///
    /// Errors, before any weight changes, when a layer targets a module the model lacks or
    /// whose weight has another size.
    pub fn merge_into<M: Module>(
        &self,
        module: M,
        component: LoraComponent,
        scale: f32,
        keep_originals: bool,
        names: &LoadOptions,
    ) -> Result<(M, MergedLora)> {
        if !scale.is_finite() {
            return Err(lora_err(
                self.path(),
                "(scale)",
                format!("{scale} is not finite"),
            ));
        }
        let deltas = self.plan(&module, component, names)?;
        let mut merged = MergedLora {
            changed: Vec::new(),
            originals: keep_originals.then(HashMap::new),
        };
        if scale == 0.0 || deltas.is_empty() {
            return Ok((module, merged));
        }
        let mut mapper = Merger {
            at: ParamPath::default(),
            file: self,
            deltas: &deltas,
            scale,
            merged: &mut merged,
            error: None,
        };
        let module = module.map(&mut mapper);
        if let Some(e) = mapper.error {
            return Err(e);
        }
        Ok((module, merged))
    }

    /// Resolves the layers for `component` against the module's weights: weight name ->
    /// (layer, PyTorch weight shape).
    fn plan<M: Module>(
        &self,
        module: &M,
        component: LoraComponent,
        names: &LoadOptions,
    ) -> Result<HashMap<String, (usize, Vec<usize>)>> {
        let remaps = CompiledRemaps::new(&names.remaps, self.path())?;
        let tensors = expected_tensors(module);
        let weights: HashMap<&str, &Vec<usize>> = tensors
            .iter()
            .filter_map(|(k, s)| Some((k.strip_suffix(".weight")?, s)))
            .filter(|(_, s)| s.len() == 2 || s.len() == 4)
            .collect();
        // kohya's names are diffusers' module paths with `_` for `.`.
        let underscored: HashMap<String, &str> = weights
            .keys()
            .map(|m| {
                let weight = format!("{m}.weight");
                let file = names
                    .file_key
                    .map_or_else(|| weight.clone(), |f| f(&weight));
                let file = file.strip_suffix(".weight").unwrap_or(&file);
                (file.replace('.', "_"), *m)
            })
            .collect();
        let mut plan = HashMap::new();
        for (i, layer) in self.layers.iter().enumerate() {
            if layer.component != component {
                continue;
            }
            let target = if layer.underscored {
                let name = layer.module.as_str();
                let name = name.strip_prefix("text_model_").unwrap_or(name);
                underscored.get(name).copied()
            } else {
                let mapped = remaps.apply(&format!("{}.weight", layer.module));
                let mapped = mapped.strip_suffix(".weight").unwrap_or(&mapped);
                weights.get_key_value(mapped).map(|(k, _)| *k)
            };
            let Some(target) = target else {
                return Err(lora_err(
                    self.path(),
                    &layer.down_key,
                    format!(
                        "targets `{}`, which the {} does not have (a LoRA for another model?)",
                        layer.module,
                        match component {
                            LoraComponent::Unet => "UNet",
                            LoraComponent::TextEncoder => "text encoder",
                        }
                    ),
                ));
            };
            let shape = weights[target].clone();
            let ds = self.checkpoint.shape(&layer.down_key).unwrap_or_default();
            let us = self.checkpoint.shape(&layer.up_key).unwrap_or_default();
            let fan_in: usize = ds[1..].iter().product();
            let numel: usize = shape.iter().product();
            if us[0] != shape[0] || us[0] * fan_in != numel {
                return Err(lora_err(
                    self.path(),
                    &layer.down_key,
                    format!(
                        "down {ds:?} / up {us:?} do not fit `{target}.weight` of shape {shape:?}"
                    ),
                ));
            }
            if plan
                .insert(format!("{target}.weight"), (i, shape))
                .is_some()
            {
                return Err(lora_err(
                    self.path(),
                    &layer.down_key,
                    format!("`{target}` is targeted twice"),
                ));
            }
        }
        Ok(plan)
    }

    /// The delta `alpha / r * up @ down` of layer `i` as `[out, fan_in]`, on `device`.
    fn delta(&self, i: usize, device: &Device) -> Result<Tensor<2>> {
        let layer = &self.layers[i];
        let read = |k: &str| -> Result<(Vec<usize>, Vec<f32>)> {
            self.checkpoint
                .read_f32(k)?
                .ok_or_else(|| lora_err(self.path(), k, "cannot be read"))
        };
        let (ds, down) = read(&layer.down_key)?;
        let (us, up) = read(&layer.up_key)?;
        if let Some(k) = [(&layer.down_key, &down), (&layer.up_key, &up)]
            .iter()
            .find(|(_, v)| v.iter().any(|x| !x.is_finite()))
            .map(|(k, _)| *k)
        {
            return Err(lora_err(self.path(), k, "holds NaN or infinite values"));
        }
        let r = layer.rank;
        let fan_in: usize = ds[1..].iter().product();
        let down = Tensor::<2>::from_data(TensorData::new(down, [r, fan_in]), device);
        let up = Tensor::<2>::from_data(TensorData::new(up, [us[0], r]), device);
        Ok(up.matmul(down).mul_scalar(layer.alpha / r as f32))
    }
}

impl MergedLora {
    /// How many weights the merge changed.
    pub fn len(&self) -> usize {
        self.changed.len()
    }

    /// Whether it changed none (scale 0, or no layer for the component).
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty()
    }

    /// The changed weights, in PyTorch naming.
    pub fn changed(&self) -> &[String] {
        &self.changed
    }

    /// Whether the originals were kept, so that [`MergedLora::unmerge`] can restore them.
    pub fn can_unmerge(&self) -> bool {
        self.originals.is_some()
    }

    /// Puts the original weights back (bit for bit). Without kept originals the module is
    /// returned unchanged, with a warning in the log.
    pub fn unmerge<M: Module>(self, module: M) -> M {
        let Some(originals) = self.originals else {
            tracing::warn!("LoRA merged without keeping the originals: nothing to unmerge");
            return module;
        };
        let mut mapper = Restorer {
            at: ParamPath::default(),
            originals,
        };
        module.map(&mut mapper)
    }
}

struct Merger<'a> {
    at: ParamPath,
    file: &'a LoraFile,
    deltas: &'a HashMap<String, (usize, Vec<usize>)>,
    scale: f32,
    merged: &'a mut MergedLora,
    error: Option<CoreError>,
}

impl ModuleMapper for Merger<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if self.error.is_some() {
            return param;
        }
        let dims = param.lazy_shape().to_vec();
        let (name, _) = self.at.pytorch(&dims);
        let Some((layer, pt_shape)) = self.deltas.get(&name) else {
            return param;
        };
        let device = param.lazy_device();
        let delta = match self.file.delta(*layer, &device) {
            Ok(d) => d.mul_scalar(self.scale),
            Err(e) => {
                self.error = Some(e);
                return param;
            }
        };
        let linear = self.at.is_linear_weight(D);
        let delta = if linear {
            // Burn keeps Linear weights as [in, out].
            delta.transpose()
        } else {
            delta
        };
        debug_assert_eq!(
            pt_shape.iter().product::<usize>(),
            dims.iter().product::<usize>()
        );
        self.merged.changed.push(name.clone());
        let originals = self.merged.originals.as_mut();
        param.map(|w| {
            if let Some(o) = originals {
                let n = w.shape().num_elements();
                o.insert(name, w.clone().reshape([n]));
            }
            let shape = w.shape();
            w + delta.reshape(shape)
        })
    }
}

struct Restorer {
    at: ParamPath,
    originals: HashMap<String, Tensor<1>>,
}

impl ModuleMapper for Restorer {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }

    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let dims = param.lazy_shape();
        let (name, _) = self.at.pytorch(&dims.to_vec());
        match self.originals.remove(&name) {
            Some(o) => param.map(|_| o.reshape(dims)),
            None => param,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::LoraLayout;
    use crate::weights::tensor_file::{NamedTensor, write_safetensors_f32};
    use burn::nn::conv::{Conv2d, Conv2dConfig};
    use burn::nn::{Linear, LinearConfig};
    use std::path::Path;

    #[derive(Module, Debug)]
    struct Tiny {
        proj: Linear,
        conv: Conv2d,
    }

    fn tiny(device: &Device) -> Tiny {
        Tiny {
            proj: LinearConfig::new(3, 2).init(device),
            conv: Conv2dConfig::new([2, 4], [3, 3]).init(device),
        }
    }

    fn t(name: &str, shape: &[usize], data: Vec<f32>) -> NamedTensor {
        NamedTensor {
            name: name.into(),
            shape: shape.to_vec(),
            data,
        }
    }

    fn ramp(n: usize, k: f32) -> Vec<f32> {
        (0..n).map(|i| (i as f32 - n as f32 / 2.0) * k).collect()
    }

    fn write(dir: &Path, name: &str, tensors: &[NamedTensor]) -> std::path::PathBuf {
        let path = dir.join(name);
        write_safetensors_f32(&path, tensors, None).unwrap();
        path
    }

    fn values<const D: usize>(x: Tensor<D>) -> Vec<f32> {
        x.into_data().try_into_vec::<f32>().unwrap()
    }

    /// The merged weights are `W + scale * alpha / r * up @ down`, in PyTorch's layout for a
    /// linear layer (Burn keeps it transposed) and a 3x3 convolution (kohya's `[r, in, 3, 3]`
    /// down, `[out, r, 1, 1]` up).
    #[test]
    fn merging_adds_the_scaled_low_rank_product() {
        let device = Device::default();
        let dir = tempfile::tempdir().unwrap();
        let base = tiny(&device);
        let (down, up) = (ramp(2 * 3, 0.1), ramp(2 * 2, 0.3));
        let (cdown, cup) = (ramp(18, 0.05), ramp(4, 0.2));
        let path = write(
            dir.path(),
            "k.safetensors",
            &[
                t("lora_unet_proj.lora_down.weight", &[2, 3], down.clone()),
                t("lora_unet_proj.lora_up.weight", &[2, 2], up.clone()),
                t("lora_unet_proj.alpha", &[], vec![1.0]),
                t(
                    "lora_unet_conv.lora_down.weight",
                    &[1, 2, 3, 3],
                    cdown.clone(),
                ),
                t("lora_unet_conv.lora_up.weight", &[4, 1, 1, 1], cup.clone()),
                t("lora_unet_conv.alpha", &[], vec![3.0]),
            ],
        );
        let lora = LoraFile::open(&path).unwrap();
        assert_eq!(lora.layout(), LoraLayout::Kohya);
        let w0 = values(base.proj.weight.val()); // [in 3, out 2]
        let c0 = values(base.conv.weight.val()); // [4, 2, 3, 3]
        let (merged, m) = lora
            .merge_into(
                base,
                LoraComponent::Unet,
                0.5,
                false,
                &LoadOptions::default(),
            )
            .unwrap();
        assert_eq!(m.len(), 2);
        let w = values(merged.proj.weight.val());
        for o in 0..2 {
            for i in 0..3 {
                let delta: f32 = (0..2).map(|r| up[o * 2 + r] * down[r * 3 + i]).sum();
                let want = w0[i * 2 + o] + 0.5 * (1.0 / 2.0) * delta;
                assert!((w[i * 2 + o] - want).abs() < 1e-6, "proj [{o},{i}]");
            }
        }
        let c = values(merged.conv.weight.val());
        for o in 0..4 {
            for j in 0..18 {
                let want = c0[o * 18 + j] + 0.5 * 3.0 * cup[o] * cdown[j];
                assert!((c[o * 18 + j] - want).abs() < 1e-6, "conv [{o},{j}]");
            }
        }
    }

    #[test]
    fn bad_files_are_typed_errors_naming_file_and_key() {
        let device = Device::default();
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(&str, Vec<NamedTensor>, &str, &str)> = vec![
            (
                "missing_target",
                vec![
                    t("unet.nope.lora_A.weight", &[1, 3], vec![0.1; 3]),
                    t("unet.nope.lora_B.weight", &[2, 1], vec![0.1; 2]),
                ],
                "unet.nope.lora_A.weight",
                "does not have",
            ),
            (
                "wrong_shape",
                vec![
                    t("unet.proj.lora_A.weight", &[1, 5], vec![0.1; 5]),
                    t("unet.proj.lora_B.weight", &[2, 1], vec![0.1; 2]),
                ],
                "unet.proj.lora_A.weight",
                "do not fit",
            ),
            (
                "no_up",
                vec![t("unet.proj.lora_A.weight", &[1, 3], vec![0.1; 3])],
                "unet.proj.lora_A.weight",
                "no matching",
            ),
            (
                "rank_mismatch",
                vec![
                    t("unet.proj.lora_A.weight", &[2, 3], vec![0.1; 6]),
                    t("unet.proj.lora_B.weight", &[2, 1], vec![0.1; 2]),
                ],
                "unet.proj.lora_A.weight",
                "rank-r pair",
            ),
            (
                "not_lora",
                vec![t("proj.weight", &[2, 3], vec![0.1; 6])],
                "proj.weight",
                "not a LoRA tensor",
            ),
            (
                "nan",
                vec![
                    t("unet.proj.lora_A.weight", &[1, 3], vec![f32::NAN; 3]),
                    t("unet.proj.lora_B.weight", &[2, 1], vec![0.1; 2]),
                ],
                "unet.proj.lora_A.weight",
                "NaN",
            ),
            (
                "dora",
                vec![t("lora_unet_proj.dora_scale", &[2, 1], vec![0.1; 2])],
                "lora_unet_proj.dora_scale",
                "DoRA",
            ),
        ];
        for (name, tensors, key, what) in cases {
            let path = write(dir.path(), &format!("{name}.safetensors"), &tensors);
            let result = LoraFile::open(&path).and_then(|l| {
                l.merge_into(
                    tiny(&device),
                    LoraComponent::Unet,
                    1.0,
                    false,
                    &LoadOptions::default(),
                )
            });
            let e = result.err().unwrap_or_else(|| panic!("{name}: no error"));
            let msg = e.to_string();
            assert!(
                matches!(e, CoreError::Lora { .. })
                    && msg.contains(key)
                    && msg.contains(what)
                    && msg.contains(&format!("{name}.safetensors")),
                "{name}: {msg}"
            );
        }
        // An empty or garbage file is an error of the reader, naming the file.
        let path = dir.path().join("garbage.safetensors");
        std::fs::write(&path, b"not a tensor file").unwrap();
        let e = LoraFile::open(&path).unwrap_err().to_string();
        assert!(e.contains("garbage.safetensors"), "{e}");
    }
}
