//! The finiteness check of loaded weights: a NaN or an infinity in a weight is an error naming
//! the file and the tensor, found with one pass over each tensor (in place on flex).

use super::names::ParamPath;
use crate::error::{CoreError, Result};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Tensor, TensorData};
use std::path::Path;

/// For each float parameter whose PyTorch name `select` accepts, a one-element tensor that is
/// 0 when the parameter is finite and NaN when it holds a NaN or an infinity.
struct FiniteProbe<'a> {
    at: ParamPath,
    select: &'a dyn Fn(&str) -> bool,
    probes: Vec<(String, Tensor<1>)>,
}

impl ModuleVisitor for FiniteProbe<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (name, _) = self.at.pytorch(&param.lazy_shape().to_vec());
        if !param.is_initialized() || !(self.select)(&name) {
            return;
        }
        let value = param.val();
        let probe = match sonic_kernels::reduce::all_finite(&value) {
            // Read in place on flex: no copy of the weight.
            Some(finite) => {
                let v = if finite { 0.0 } else { f32::NAN };
                Tensor::<1>::from_data(TensorData::new(vec![v], [1]), &value.device())
            }
            // x * 0 is exactly 0 for finite x and NaN for NaN or ±inf; the sum keeps any NaN.
            None => value.mul_scalar(0.0).sum(),
        };
        self.probes.push((name, probe));
    }
}

/// Checks that every loaded float parameter of `module` that `select` accepts (by PyTorch
/// name) is finite: one elementwise pass and one reduction per tensor, read back together. The
/// first non-finite tensor is a [`CoreError::NonFiniteWeight`] naming `path` and its key
/// (`file_key` maps a module name back to the file's name).
pub fn check_finite<M: Module>(
    module: &M,
    path: &Path,
    select: &dyn Fn(&str) -> bool,
    file_key: &dyn Fn(&str) -> String,
) -> Result<()> {
    let mut probe = FiniteProbe {
        at: ParamPath::default(),
        select,
        probes: Vec::new(),
    };
    module.visit(&mut probe);
    if probe.probes.is_empty() {
        return Ok(());
    }
    let (names, probes): (Vec<String>, Vec<Tensor<1>>) = probe.probes.into_iter().unzip();
    let values = Tensor::cat(probes, 0)
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| CoreError::Readback(format!("{e:?}")))?;
    let Some(bad) = values.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let name = &names[bad];
    let mut count = 0;
    let mut numel = 0;
    let mut counter = NonFiniteCounter {
        at: ParamPath::default(),
        name,
        count: &mut count,
        numel: &mut numel,
    };
    module.visit(&mut counter);
    Err(CoreError::NonFiniteWeight {
        path: path.to_path_buf(),
        key: file_key(name),
        count,
        numel,
    })
}

/// Counts the non-finite values of the one parameter named `name`.
struct NonFiniteCounter<'a> {
    at: ParamPath,
    name: &'a str,
    count: &'a mut usize,
    numel: &'a mut usize,
}

impl ModuleVisitor for NonFiniteCounter<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let (name, shape) = self.at.pytorch(&param.lazy_shape().to_vec());
        if name != self.name {
            return;
        }
        *self.numel = shape.iter().product();
        let finite = param.val().is_finite().int().sum().into_scalar::<i64>();
        let finite = usize::try_from(finite).unwrap_or(0);
        *self.count = self.numel.saturating_sub(finite);
    }
}
