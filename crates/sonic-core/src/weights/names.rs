//! Module-side names and shapes: the PyTorch name and shape of every parameter of a Burn
//! module, and the comparison of a file's tensors with them.

use crate::error::{CoreError, MAX_LISTED_MISMATCHES, Result, WeightMismatch};
use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Bool, Int, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// Where a module traversal stands: the module path (enum variants skipped, as the stores
/// do) and the container types, so a parameter gets its PyTorch name and layout.
#[derive(Default)]
pub(crate) struct ParamPath {
    path: Vec<String>,
    containers: Vec<String>,
}

impl ParamPath {
    pub(crate) fn enter(&mut self, name: &str, container_type: &str) {
        self.containers.push(container_type.to_string());
        if !container_type.starts_with("Enum:") {
            self.path.push(name.to_string());
        }
    }

    pub(crate) fn exit(&mut self, container_type: &str) {
        self.containers.pop();
        if !container_type.starts_with("Enum:") {
            self.path.pop();
        }
    }

    /// The innermost user-defined module holding the parameter (`Struct:Linear`, ...).
    fn module_type(&self) -> Option<&str> {
        self.containers
            .iter()
            .rev()
            .find(|c| c.starts_with("Struct:") || c.starts_with("Enum:"))
            .map(String::as_str)
    }

    /// Whether the parameter here is a `Linear` weight (stored `[in, out]` by Burn, the
    /// transpose of PyTorch's `[out, in]`).
    pub(crate) fn is_linear_weight(&self, ndims: usize) -> bool {
        self.module_type() == Some("Struct:Linear")
            && ndims == 2
            && self.path.last().is_some_and(|l| l == "weight")
    }

    /// The parameter's PyTorch name and shape given its Burn shape: norms' `gamma` / `beta`
    /// are `weight` / `bias`, linear weights are `[out, in]` (burn-store's
    /// `BurnToPyTorchAdapter`, without touching the data).
    pub(crate) fn pytorch(&self, shape: &[usize]) -> (String, Vec<usize>) {
        let module = self.module_type().unwrap_or_default();
        let mut path = self.path.clone();
        let mut shape = shape.to_vec();
        if let Some(last) = path.last_mut() {
            let norm = matches!(
                module,
                "Struct:BatchNorm" | "Struct:LayerNorm" | "Struct:GroupNorm" | "Struct:RmsNorm"
            );
            if module == "Struct:Linear" && last == "weight" && shape.len() == 2 {
                shape.swap(0, 1);
            } else if norm && last == "gamma" {
                *last = "weight".into();
            } else if norm && last == "beta" {
                *last = "bias".into();
            }
        }
        (path.join("."), shape)
    }
}

/// Collects parameter shapes without initialising lazily created parameters.
#[derive(Default)]
struct ShapeCollector {
    at: ParamPath,
    shapes: BTreeMap<String, Vec<usize>>,
}

impl ShapeCollector {
    fn add(&mut self, shape: burn::tensor::Shape) {
        let (name, shape) = self.at.pytorch(&shape.to_vec());
        self.shapes.insert(name, shape);
    }
}

impl ModuleVisitor for ShapeCollector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.at.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, container_type: &str) {
        self.at.exit(container_type);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.add(param.lazy_shape());
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        self.add(param.lazy_shape());
    }
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        self.add(param.lazy_shape());
    }
}

/// The tensors a module expects, in PyTorch naming and layout: path -> shape.
///
/// Reads each parameter's shape without initialising it: a module built from a config is not
/// allocated until its weights are applied, so a config that disagrees with a weights file
/// (or implies terabytes) is caught by [`check_tensors`] before any memory is taken.
pub fn expected_tensors<M: Module>(module: &M) -> BTreeMap<String, Vec<usize>> {
    let mut collector = ShapeCollector::default();
    module.visit(&mut collector);
    collector.shapes
}

/// Checks a file's tensors (name -> shape, already remapped to module paths) against a module's
/// expected tensors. One problem is reported as its own variant ([`CoreError::ShapeMismatch`],
/// [`CoreError::MissingTensor`], [`CoreError::UnexpectedTensor`]); several as
/// [`CoreError::WeightsMismatch`] listing the first [`MAX_LISTED_MISMATCHES`] (shape
/// mismatches, then missing, then unexpected tensors, each in key order).
pub fn check_tensors(
    path: &Path,
    expected: &BTreeMap<String, Vec<usize>>,
    found: &BTreeMap<String, Vec<usize>>,
) -> Result<()> {
    check_tensors_named(path, expected, found, &|key| key.to_string())
}

/// [`check_tensors`] with the keys of the errors spelt by `file_key` (from a module path to
/// the key as the file spells it, or would spell it).
pub fn check_tensors_named(
    path: &Path,
    expected: &BTreeMap<String, Vec<usize>>,
    found: &BTreeMap<String, Vec<usize>>,
    file_key: &dyn Fn(&str) -> String,
) -> Result<()> {
    let mismatch =
        |key: &str, expected: Option<&Vec<usize>>, found: Option<&Vec<usize>>| WeightMismatch {
            key: file_key(key),
            expected: expected.cloned(),
            found: found.cloned(),
        };
    let mut problems = Vec::new();
    for (key, exp) in expected {
        if let Some(f) = found.get(key)
            && f != exp
        {
            problems.push(mismatch(key, Some(exp), Some(f)));
        }
    }
    for (key, exp) in expected.iter().filter(|(k, _)| !found.contains_key(*k)) {
        problems.push(mismatch(key, Some(exp), None));
    }
    for (key, f) in found.iter().filter(|(k, _)| !expected.contains_key(*k)) {
        problems.push(mismatch(key, None, Some(f)));
    }
    let path = path.to_path_buf();
    let total = problems.len();
    if total == 0 {
        return Ok(());
    }
    if total > 1 {
        problems.truncate(MAX_LISTED_MISMATCHES);
        return Err(CoreError::WeightsMismatch {
            path,
            total,
            first: problems,
        });
    }
    let WeightMismatch {
        key,
        expected,
        found,
    } = problems.remove(0);
    Err(match (expected, found) {
        (Some(expected), Some(found)) => CoreError::ShapeMismatch {
            path,
            key,
            expected,
            found,
        },
        (Some(expected), None) => CoreError::MissingTensor {
            path,
            key,
            expected,
        },
        (None, found) => CoreError::UnexpectedTensor {
            path,
            key,
            found: found.unwrap_or_default(),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_reports_mismatch_missing_unexpected() {
        let p = Path::new("m.safetensors");
        let exp: BTreeMap<_, _> = [("a.weight".to_string(), vec![2, 3])].into();
        let bad_shape: BTreeMap<_, _> = [("a.weight".to_string(), vec![3, 2])].into();
        let e = check_tensors(p, &exp, &bad_shape).unwrap_err();
        assert!(matches!(e, CoreError::ShapeMismatch { .. }));
        let msg = e.to_string();
        assert!(msg.contains("a.weight") && msg.contains("[2, 3]") && msg.contains("[3, 2]"));
        let e = check_tensors(p, &exp, &BTreeMap::new()).unwrap_err();
        assert!(matches!(e, CoreError::MissingTensor { .. }), "{e}");
        let extra: BTreeMap<_, _> = [
            ("a.weight".to_string(), vec![2, 3]),
            ("b".to_string(), vec![1]),
        ]
        .into();
        let e = check_tensors(p, &exp, &extra).unwrap_err();
        assert!(matches!(e, CoreError::UnexpectedTensor { ref key, .. } if key == "b"));
        let several: BTreeMap<_, _> = [
            ("a.weight".to_string(), vec![3, 2]),
            ("c".to_string(), vec![1]),
        ]
        .into();
        let e = check_tensors_named(p, &exp, &several, &|k| format!("sd.{k}")).unwrap_err();
        match &e {
            CoreError::WeightsMismatch { total, first, .. } => {
                assert_eq!(*total, 2);
                assert_eq!(
                    first[0],
                    WeightMismatch {
                        key: "sd.a.weight".into(),
                        expected: Some(vec![2, 3]),
                        found: Some(vec![3, 2]),
                    }
                );
                assert_eq!((first[1].key.as_str(), &first[1].expected), ("sd.c", &None));
            }
            other => panic!("wrong error {other:?}"),
        }
        let msg = e.to_string();
        assert!(msg.contains("m.safetensors"), "{msg}");
        assert!(msg.contains("`sd.c` [1] is not used by the model"), "{msg}");
    }
}
