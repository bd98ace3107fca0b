//! Each layer's alpha, as diffusers sets up PEFT when it loads a file.

use super::{LoraComponent, LoraLayer};
use std::collections::{BTreeMap, HashMap};

/// The LoraConfig values diffusers writes into a file's metadata, per component.
#[derive(Debug, Default)]
struct PeftMeta {
    /// Whether the metadata has any key for the component.
    present: bool,
    lora_alpha: Option<f64>,
    use_rslora: bool,
    alpha_pattern: BTreeMap<String, f64>,
}

fn read_meta(meta: &serde_json::Value, component: LoraComponent) -> PeftMeta {
    let get = |k: &str| meta.get(format!("{}.{k}", component.prefix()));
    let pattern = get("alpha_pattern")
        .and_then(|v| v.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_f64()?)))
                .collect()
        })
        .unwrap_or_default();
    let prefix = format!("{}.", component.prefix());
    PeftMeta {
        present: meta
            .as_object()
            .is_some_and(|o| o.keys().any(|k| k.starts_with(&prefix))),
        lora_alpha: get("lora_alpha").and_then(|v| v.as_f64()),
        use_rslora: get("use_rslora").and_then(|v| v.as_bool()).unwrap_or(false),
        alpha_pattern: pattern,
    }
}

/// Whether PEFT pattern `pattern` names `module` (the module itself or a dotted suffix).
fn pattern_matches(pattern: &str, module: &str) -> bool {
    module == pattern || module.ends_with(&format!(".{pattern}"))
}

/// Whether diffusers ignores this kohya layer's own alpha: it converts the attention
/// projections (the UNet's `attn1` / `attn2` under `transformer_blocks`, the text encoder's
/// `self_attn` projections) to its attention-processor names, whose alpha keys then match no
/// module, so they take the component's default alpha.
fn kohya_alpha_ignored(layer: &LoraLayer) -> bool {
    let m = &layer.module;
    match layer.component {
        LoraComponent::Unet => {
            m.contains("transformer_blocks") && (m.contains("attn1") || m.contains("attn2"))
        }
        LoraComponent::TextEncoder => {
            m.contains("self_attn")
                && ["q_proj", "k_proj", "v_proj", "out_proj"]
                    .iter()
                    .any(|p| m.ends_with(p))
        }
    }
}

/// Each layer's alpha, as diffusers (0.42) sets up PEFT when it loads the file:
/// - kohya layers: their own `.alpha`, except the attention projections
///   ([`kohya_alpha_ignored`]) and layers without one, which take the component's most common
///   alpha (ties: the first in key order); no alphas at all: `alpha = r`;
/// - other layers: a `<module>.alpha` key; else the file's LoraConfig metadata
///   (`alpha_pattern`, `lora_alpha`, PEFT's default 8; `use_rslora` as `alpha * sqrt(r)`);
///   else `alpha = r` (factor 1).
pub(super) fn resolve_alphas(
    pending: Vec<(LoraLayer, Option<f32>)>,
    meta: Option<&serde_json::Value>,
) -> Vec<LoraLayer> {
    let mut common: HashMap<LoraComponent, f32> = HashMap::new();
    for component in [LoraComponent::Unet, LoraComponent::TextEncoder] {
        // (alpha, count) in order of first appearance.
        let mut counts: Vec<(f32, usize)> = Vec::new();
        for (_, a) in pending
            .iter()
            .filter(|(l, _)| l.component == component && l.underscored)
        {
            if let Some(a) = a {
                match counts.iter_mut().find(|(v, _)| v == a) {
                    Some((_, n)) => *n += 1,
                    None => counts.push((*a, 1)),
                }
            }
        }
        let best = counts.iter().map(|(_, n)| *n).max().unwrap_or(0);
        if let Some((a, _)) = counts.iter().find(|(_, n)| *n == best) {
            common.insert(component, *a);
        }
    }
    pending
        .into_iter()
        .map(|(mut layer, own)| {
            let rank = layer.rank as f32;
            layer.alpha = if layer.underscored {
                let default = common.get(&layer.component).copied();
                match (own, default) {
                    (Some(a), _) if !kohya_alpha_ignored(&layer) => a,
                    (_, Some(d)) => d,
                    (_, None) => rank,
                }
            } else if let Some(a) = own {
                a
            } else if let Some(m) = meta
                .map(|m| read_meta(m, layer.component))
                .filter(|m| m.present)
            {
                let alpha = m
                    .alpha_pattern
                    .iter()
                    .find(|(p, _)| pattern_matches(p, &layer.module))
                    .map(|(_, a)| *a)
                    .or(m.lora_alpha)
                    .unwrap_or(8.0);
                if m.use_rslora {
                    // alpha / sqrt(r) as an equivalent alpha over r.
                    (alpha * (layer.rank as f64).sqrt()) as f32
                } else {
                    alpha as f32
                }
            } else {
                rank
            };
            layer
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_patterns_match_whole_segments() {
        assert!(pattern_matches("to_q", "a.b.to_q"));
        assert!(pattern_matches("a.b.to_q", "a.b.to_q"));
        assert!(!pattern_matches("q", "a.b.to_q"));
    }
}
