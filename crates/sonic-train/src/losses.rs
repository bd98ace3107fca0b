//! The training losses.
//!
//! - [`info_nce`]: contrastive loss of stage 1. Each anchor's representation is compared with
//!   one positive (another clip of the same class) and a pool of negatives (clips of other
//!   classes) by cosine similarity over a temperature `τ`:
//!   `L = mean_b [ -log( exp(s⁺_b/τ) / (exp(s⁺_b/τ) + Σ_{n not masked} exp(s_bn/τ)) ) ]`.
//!   In the stage-1 trainer the representation of a clip is its audio tokens `[T, D]`
//!   flattened to one vector (**ours**: the release does not say which vector it contrasts).
//! - [`weighted_token_mse`]: stage 1's regression of the audio tokens onto the CLIP text
//!   embedding of the paired image's caption, weighted per token index `k = 0..T-1` by the
//!   decreasing ("reverse") sigmoid [`token_weights`]:
//!   `w_k = 1 / (1 + exp((k - centre) / width))`, and normalised:
//!   `L = Σ_b s_b Σ_k w_k · mean_d (a_bkd - t_bkd)² / (Σ_b s_b · Σ_k w_k)` with `s_b ∈ {0, 1}`
//!   selecting the samples whose caption term is kept (0 when none is).
//! - [`ddpm_loss`]: stage 2's denoising loss, the mean squared error between the UNet output
//!   and the target of the scheduler's prediction type (the noise for `epsilon`, the velocity
//!   `sqrt(ᾱ_t)·ε - sqrt(1-ᾱ_t)·x₀` for `v_prediction`, `x₀` for `sample`), see
//!   [`sonic_schedulers::DdpmSchedule::training_target`].

use crate::error::{Result, TrainError};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Bool, Tensor, TensorData};
use sonic_schedulers::ddpm::DdpmSchedule;

/// Rows divided by their L2 norm (`eps` guards zero rows).
pub fn l2_normalize(x: Tensor<2>, eps: f64) -> Tensor<2> {
    let norm = x.clone().square().sum_dim(1).sqrt().add_scalar(eps);
    x / norm
}

/// InfoNCE over cosine similarities (see the module docs).
///
/// `anchors` and `positives` are `[B, E]`, `negatives` `[N, E]` (a pool shared by the batch),
/// `exclude` (optional, `[B][N]`) marks negatives to leave out for an anchor (e.g. of the
/// anchor's own class). Returns the mean loss over the batch as a `[1]` tensor.
pub fn info_nce(
    anchors: Tensor<2>,
    positives: Tensor<2>,
    negatives: Tensor<2>,
    exclude: Option<&[Vec<bool>]>,
    temperature: f64,
) -> Result<Tensor<1>> {
    let [b, e] = anchors.dims();
    let [n, en] = negatives.dims();
    if positives.dims() != [b, e] || en != e || b == 0 || n == 0 {
        return Err(TrainError::bad_input(
            "InfoNCE inputs",
            format!("anchors [B, E] = positives, negatives [N >= 1, E], B >= 1; B = {b}"),
            (positives.dims(), negatives.dims()),
        ));
    }
    if !(temperature > 0.0 && temperature.is_finite()) {
        return Err(TrainError::bad_input(
            "InfoNCE temperature",
            "a positive number",
            temperature,
        ));
    }
    let device = anchors.device();
    let a = l2_normalize(anchors, 1e-12);
    let p = l2_normalize(positives, 1e-12);
    let neg = l2_normalize(negatives, 1e-12);
    let s_pos = (a.clone() * p).sum_dim(1); // [B, 1]
    let mut s_neg = a.matmul(neg.transpose()); // [B, N]
    if let Some(mask) = exclude {
        if mask.len() != b || mask.iter().any(|r| r.len() != n) {
            return Err(TrainError::bad_input(
                "InfoNCE exclusion mask",
                format!("[{b}][{n}]"),
                (mask.len(), mask.first().map(|r| r.len())),
            ));
        }
        let flat: Vec<bool> = mask.iter().flatten().copied().collect();
        let m = Tensor::<2, Bool>::from_data(TensorData::new(flat, [b, n]), &device);
        // exp(-1e4 / τ) underflows to exactly 0 in float32 for any τ <= 1.
        s_neg = s_neg.mask_fill(m, -1.0e4);
    }
    let logits = Tensor::cat(vec![s_pos, s_neg], 1).div_scalar(temperature);
    let logp = log_softmax(logits, 1).narrow(1, 0, 1); // [B, 1]
    Ok(logp.mean().neg())
}

/// The decreasing sigmoid token weights `w_k = 1 / (1 + exp((k - centre) / width))`,
/// `k = 0..tokens-1`.
pub fn token_weights(tokens: usize, centre: f64, width: f64) -> Vec<f32> {
    (0..tokens)
        .map(|k| (1.0 / (1.0 + ((k as f64 - centre) / width).exp())) as f32)
        .collect()
}

/// The per-token weighted MSE between audio tokens and text embeddings, both `[B, T, D]`
/// (see the module docs); `weights` has `T` entries, `keep` one flag per sample.
pub fn weighted_token_mse(
    audio: Tensor<3>,
    text: Tensor<3>,
    weights: &[f32],
    keep: &[bool],
) -> Result<Tensor<1>> {
    let [b, t, d] = audio.dims();
    if text.dims() != [b, t, d] || weights.len() != t || keep.len() != b {
        return Err(TrainError::bad_input(
            "weighted token MSE inputs",
            format!(
                "audio = text = [B, T, D] = {:?}, {t} weights, {b} keep flags",
                [b, t, d]
            ),
            (text.dims(), weights.len(), keep.len()),
        ));
    }
    let kept = keep.iter().filter(|&&k| k).count();
    let wsum: f64 = weights.iter().map(|&w| w as f64).sum();
    let device = audio.device();
    let mut w = Vec::with_capacity(b * t);
    for &k in keep {
        for &wk in weights {
            w.push(if k && kept > 0 && wsum > 0.0 {
                (wk as f64 / (kept as f64 * wsum)) as f32
            } else {
                0.0
            });
        }
    }
    let w = Tensor::<2>::from_data(TensorData::new(w, [b, t]), &device);
    let per_token = (audio - text).square().mean_dim(2).reshape([b, t]); // [B, T]
    Ok((per_token * w).sum())
}

/// Mean squared error over every element.
pub fn mse<const D: usize>(prediction: Tensor<D>, target: Tensor<D>) -> Result<Tensor<1>> {
    if prediction.dims() != target.dims() {
        return Err(TrainError::bad_input(
            "MSE inputs",
            format!("equal shapes, prediction {:?}", prediction.dims()),
            target.dims(),
        ));
    }
    Ok((prediction - target).square().mean())
}

/// The DDPM loss: `mse(prediction, target)` with the target of `schedule`'s prediction type
/// for clean latents `clean`, the `noise` that was added and the per-sample `timesteps`.
pub fn ddpm_loss(
    schedule: &DdpmSchedule,
    prediction: Tensor<4>,
    clean: Tensor<4>,
    noise: Tensor<4>,
    timesteps: &[usize],
) -> Result<Tensor<1>> {
    let target = schedule.training_target(clean, noise, timesteps)?;
    mse(prediction, target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Device;

    fn host(t: Tensor<1>) -> f32 {
        t.into_scalar::<f32>()
    }

    /// `sin(0.37 i + phase)` values, the same generator as the numpy reference below.
    fn wave(n: usize, phase: f32) -> Vec<f32> {
        (0..n).map(|i| (0.37 * i as f32 + phase).sin()).collect()
    }

    fn t2(v: Vec<f32>, shape: [usize; 2], d: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(v, shape), d)
    }

    // Reference values from numpy (float64), e.g. for InfoNCE:
    //   w = lambda n, ph: np.sin(0.37*np.arange(n) + ph)
    //   a = w(8,0).reshape(2,4); p = w(8,1).reshape(2,4); n = w(12,2).reshape(3,4)
    //   norm = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    //   a, p, n = norm(a), norm(p), norm(n)
    //   logits = np.concatenate([(a*p).sum(1, keepdims=True), a @ n.T], 1) / 0.5
    //   (-(logits[:,0] - np.log(np.exp(logits).sum(1)))).mean()
    #[test]
    fn info_nce_matches_numpy() {
        let d = Device::default();
        let a = t2(wave(8, 0.0), [2, 4], &d);
        let p = t2(wave(8, 1.0), [2, 4], &d);
        let n = t2(wave(12, 2.0), [3, 4], &d);
        let l = host(info_nce(a.clone(), p.clone(), n.clone(), None, 0.5).unwrap());
        assert!((l - 0.875_636_9).abs() < 1e-5, "{l}");
        // Excluding negative 1 for anchor 0 and negative 2 for anchor 1:
        //   logits[0,2] = -inf; logits[1,3] = -inf
        let mask = vec![vec![false, true, false], vec![false, false, true]];
        let l = host(info_nce(a, p, n, Some(&mask), 0.5).unwrap());
        assert!((l - 0.858_564_6).abs() < 1e-5, "{l}");
    }

    #[test]
    fn info_nce_rejects_bad_shapes() {
        let d = Device::default();
        let a = t2(wave(8, 0.0), [2, 4], &d);
        let n = t2(wave(9, 2.0), [3, 3], &d);
        assert!(matches!(
            info_nce(a.clone(), a.clone(), n, None, 0.1),
            Err(TrainError::BadInput { .. })
        ));
        let n = t2(wave(12, 2.0), [3, 4], &d);
        assert!(info_nce(a.clone(), a, n, None, 0.0).is_err());
    }

    // numpy: k = np.arange(5); 1/(1+np.exp((k-2)/0.5))
    #[test]
    fn token_weights_are_a_reverse_sigmoid() {
        let w = token_weights(5, 2.0, 0.5);
        let expect = [0.982_014_2, 0.880_797_1, 0.5, 0.119_202_92, 0.017_985_78];
        for (a, b) in w.iter().zip(expect) {
            assert!((a - b).abs() < 1e-6, "{w:?}");
        }
    }

    // numpy: a = w(24,0).reshape(2,3,4); t = w(24,0.5).reshape(2,3,4)
    //   wt = 1/(1+np.exp((np.arange(3)-1)/0.7)); per = ((a-t)**2).mean(2)
    //   both kept: (per*wt).sum()/(2*wt.sum()); only sample 1: (per[1]*wt).sum()/wt.sum()
    #[test]
    fn weighted_token_mse_matches_numpy() {
        let d = Device::default();
        let a = Tensor::<3>::from_data(TensorData::new(wave(24, 0.0), [2, 3, 4]), &d);
        let t = Tensor::<3>::from_data(TensorData::new(wave(24, 0.5), [2, 3, 4]), &d);
        let w = token_weights(3, 1.0, 0.7);
        let l = host(weighted_token_mse(a.clone(), t.clone(), &w, &[true, true]).unwrap());
        assert!((l - 0.115_052_66).abs() < 1e-6, "{l}");
        let l = host(weighted_token_mse(a.clone(), t.clone(), &w, &[false, true]).unwrap());
        assert!((l - 0.109_993_23).abs() < 1e-6, "{l}");
        let l = host(weighted_token_mse(a, t, &w, &[false, false]).unwrap());
        assert_eq!(l, 0.0);
    }

    // numpy with diffusers' SD1 betas (scaled_linear 0.00085..0.012, 1000 steps):
    //   ac = np.cumprod(1 - np.linspace(0.00085**0.5, 0.012**0.5, 1000)**2)
    //   x0 = w(8,0).reshape(2,1,2,2); eps = w(8,1).reshape(2,1,2,2); pred = w(8,2)...; t = [10, 700]
    //   v = sqrt(ac[t]) eps - sqrt(1-ac[t]) x0 ; mean((pred - v)**2), mean((pred - eps)**2)
    #[test]
    fn ddpm_loss_matches_numpy() {
        let d = Device::default();
        let shape = [2, 1, 2, 2];
        let x0 = Tensor::<4>::from_data(TensorData::new(wave(8, 0.0), shape), &d);
        let eps = Tensor::<4>::from_data(TensorData::new(wave(8, 1.0), shape), &d);
        let pred = Tensor::<4>::from_data(TensorData::new(wave(8, 2.0), shape), &d);
        let base = serde_json::json!({
            "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
            "num_train_timesteps": 1000});
        let mut v_cfg = base.clone();
        v_cfg["prediction_type"] = "v_prediction".into();
        let eps_s = DdpmSchedule::from_json(&base).unwrap();
        let v_s = DdpmSchedule::from_json(&v_cfg).unwrap();
        let le =
            host(ddpm_loss(&eps_s, pred.clone(), x0.clone(), eps.clone(), &[10, 700]).unwrap());
        let lv = host(ddpm_loss(&v_s, pred, x0, eps, &[10, 700]).unwrap());
        assert!((le - 0.481_772_23).abs() < 1e-5, "{le}");
        assert!((lv - 0.156_922_45).abs() < 1e-5, "{lv}");
    }
}
