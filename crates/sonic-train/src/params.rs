//! Which parameters train, and what the optimizer sees of them.
//!
//! Frozen parameters stay on the plain (non-autodiff) device: operations that only involve
//! them record nothing, so the activations of the frozen part of a network that runs before
//! the first trainable parameter are never kept for the backward pass. Trainable parameters
//! are moved to the autodiff device, marked `require_grad`, and given **deterministic**
//! [`ParamId`]s (a hash of their module path), so that an optimizer state saved by one process
//! (keyed by parameter id) loads into a freshly built model in another (resume).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;

/// FNV-1a hash of a module path (the deterministic parameter id). Ids are kept below 2^53 so
/// that they survive any JSON round trip.
pub fn path_id(path: &str) -> ParamId {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in path.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    ParamId::from(h & ((1u64 << 53) - 1))
}

struct Select<'a> {
    path: Vec<String>,
    trainable: &'a dyn Fn(&str) -> bool,
    count: usize,
    frozen_to_autodiff: bool,
}

impl ModuleMapper for Select<'_> {
    fn enter_module(&mut self, name: &str, _container_type: &str) {
        self.path.push(name.to_string());
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let path = self.path.join(".");
        if (self.trainable)(&path) {
            self.count += 1;
            let mut p = param
                .map(|t| t.without_autodiff().autodiff())
                .set_require_grad(true);
            p.id = path_id(&path);
            p
        } else if self.frozen_to_autodiff {
            // Only for comparisons (the "whole model tracked" baseline): frozen weights on
            // the autodiff device with gradients, as a naive trainer would keep them.
            param
                .map(|t| t.without_autodiff().autodiff())
                .set_require_grad(true)
        } else {
            param.map(|t| t.without_autodiff()).set_require_grad(false)
        }
    }
}

/// Moves the parameters whose module path satisfies `trainable` to the autodiff device with
/// `require_grad` and deterministic ids; every other parameter stays (or is moved back) off
/// autodiff and is not tracked. Returns the module and the number of trainable tensors.
pub fn select_trainable<M: Module>(module: M, trainable: &dyn Fn(&str) -> bool) -> (M, usize) {
    let mut m = Select {
        path: Vec::new(),
        trainable,
        count: 0,
        frozen_to_autodiff: false,
    };
    let module = module.map(&mut m);
    (module, m.count)
}

/// Like [`select_trainable`], but the frozen parameters are tracked too (they require
/// gradients; the optimizer is only ever given the trainable ones). Only useful to measure
/// what freezing saves.
pub fn select_trainable_tracking_all<M: Module>(
    module: M,
    trainable: &dyn Fn(&str) -> bool,
) -> (M, usize) {
    let mut m = Select {
        path: Vec::new(),
        trainable,
        count: 0,
        frozen_to_autodiff: true,
    };
    let module = module.map(&mut m);
    (module, m.count)
}

/// Moves every parameter off autodiff (for inference and saving).
pub fn untracked<M: Module>(module: M) -> M {
    select_trainable(module, &|_| false).0
}

/// Whether a module path belongs to a gated adapter (`attn_adapter`, `norm_adapter`,
/// `gate_adapter` segment).
pub fn is_adapter_path(path: &str) -> bool {
    path.split('.')
        .any(|s| matches!(s, "attn_adapter" | "norm_adapter" | "gate_adapter"))
}

struct SumSquares<'a> {
    grads: &'a GradientsParams,
    sum: f64,
}

impl ModuleVisitor for SumSquares<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.get::<D>(param.id) {
            self.sum += g.square().sum().into_scalar::<f32>() as f64;
        }
    }
}

struct Scale<'a> {
    grads: &'a mut GradientsParams,
    factor: f64,
}

impl ModuleVisitor for Scale<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        if let Some(g) = self.grads.remove::<D>(param.id) {
            self.grads
                .register::<D>(param.id, g.mul_scalar(self.factor));
        }
    }
}

/// The global L2 norm of every gradient in `grads` that belongs to a parameter of `module`.
pub fn global_grad_norm<M: Module>(module: &M, grads: &GradientsParams) -> f64 {
    let mut v = SumSquares { grads, sum: 0.0 };
    module.visit(&mut v);
    v.sum.sqrt()
}

/// Multiplies every gradient of `module`'s parameters in `grads` by `factor`.
pub fn scale_grads<M: Module>(module: &M, grads: &mut GradientsParams, factor: f64) {
    let mut v = Scale { grads, factor };
    module.visit(&mut v);
}

/// Clips `grads` to a global L2 norm of at most `max_norm` (PyTorch's `clip_grad_norm_`:
/// factor `max_norm / (norm + 1e-6)` when the norm exceeds `max_norm`). Returns the norm before
/// clipping.
pub fn clip_global_norm<M: Module>(module: &M, grads: &mut GradientsParams, max_norm: f64) -> f64 {
    let norm = global_grad_norm(module, grads);
    if norm.is_finite() && norm > max_norm {
        scale_grads(module, grads, max_norm / (norm + 1e-6));
    }
    norm
}

/// The number of scalar values in the parameters of `module` that satisfy `select`.
pub fn count_values<M: Module>(module: &M, select: &dyn Fn(&str) -> bool) -> usize {
    struct Count<'a> {
        path: Vec<String>,
        select: &'a dyn Fn(&str) -> bool,
        n: usize,
    }
    impl ModuleVisitor for Count<'_> {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if (self.select)(&self.path.join(".")) {
                self.n += param.val().shape().num_elements();
            }
        }
    }
    let mut c = Count {
        path: Vec::new(),
        select,
        n: 0,
    };
    module.visit(&mut c);
    c.n
}

/// Serialises seeded initialisations in this process (the backend's generator is global).
static INIT_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Runs `build` with `device`'s generator seeded by `seed` and materialises every (lazily
/// initialised) parameter at once, in module order, so the same seed gives the same weights.
/// Calls are serialised by a process-wide lock; random draws made elsewhere in the process at
/// the same time (e.g. `Tensor::random` on another thread) can still interleave, because the
/// backend's generator is global.
pub fn seeded_init<M: Module, E>(
    device: &burn::tensor::Device,
    seed: u64,
    build: impl FnOnce() -> std::result::Result<M, E>,
) -> std::result::Result<M, E> {
    let _guard = INIT_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    device.seed(seed);
    Ok(untracked(build()?))
}
