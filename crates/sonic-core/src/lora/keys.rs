//! Splitting a LoRA file's keys into (component, module, part), whatever the layout.

use super::{LoraComponent, LoraLayout};

/// Which tensor of a layer a key holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Part {
    Down,
    Up,
    Alpha,
}

/// A key split into (component, module, part, underscored).
pub(super) type Parsed = (LoraComponent, String, Part, bool);

/// Splits a kohya key (`lora_unet_<name>.lora_down.weight`).
pub(super) fn parse_kohya(key: &str) -> std::result::Result<Option<Parsed>, String> {
    let Some((name, rest)) = key.split_once('.') else {
        return Ok(None);
    };
    let (component, module) = if let Some(m) = name.strip_prefix("lora_unet_") {
        (LoraComponent::Unet, m)
    } else if let Some(m) = name.strip_prefix("lora_te_") {
        (LoraComponent::TextEncoder, m)
    } else if name.starts_with("lora_te1_") || name.starts_with("lora_te2_") {
        return Err("SDXL's second text encoder (lora_te1_ / lora_te2_) is not supported".into());
    } else {
        return Ok(None);
    };
    let part = match rest {
        "lora_down.weight" => Part::Down,
        "lora_up.weight" => Part::Up,
        "alpha" => Part::Alpha,
        other => return Err(unsupported_part(other)),
    };
    Ok(Some((component, module.to_string(), part, true)))
}

fn unsupported_part(part: &str) -> String {
    if part.contains("dora") || part.contains("magnitude") {
        "DoRA weights are not supported".into()
    } else if part.contains("hada") || part.contains("lokr") {
        "LyCORIS (LoHa / LoKr) layers are not supported".into()
    } else {
        format!("unknown LoRA tensor `{part}`")
    }
}

/// Splits a diffusers or PEFT key.
pub(super) fn parse_dotted(key: &str) -> std::result::Result<Option<(Parsed, LoraLayout)>, String> {
    let key = key.strip_prefix("base_model.model.").unwrap_or(key);
    let (component, rest) = if let Some(r) = key.strip_prefix("unet.") {
        (LoraComponent::Unet, r)
    } else if let Some(r) = key.strip_prefix("text_encoder.") {
        (LoraComponent::TextEncoder, r)
    } else if key.starts_with("text_encoder_2.") {
        return Err("SDXL's second text encoder is not supported".into());
    } else {
        (LoraComponent::Unet, key)
    };
    const SUFFIXES: [(&str, Part, LoraLayout); 7] = [
        (".lora.down.weight", Part::Down, LoraLayout::Diffusers),
        (".lora.up.weight", Part::Up, LoraLayout::Diffusers),
        (
            ".lora_linear_layer.down.weight",
            Part::Down,
            LoraLayout::Diffusers,
        ),
        (
            ".lora_linear_layer.up.weight",
            Part::Up,
            LoraLayout::Diffusers,
        ),
        (".lora_A.weight", Part::Down, LoraLayout::Peft),
        (".lora_B.weight", Part::Up, LoraLayout::Peft),
        (".alpha", Part::Alpha, LoraLayout::Diffusers),
    ];
    for (suffix, part, layout) in SUFFIXES {
        if let Some(module) = rest.strip_suffix(suffix) {
            let module = module.strip_prefix("text_model.").unwrap_or(module);
            return Ok(Some(((component, module.to_string(), part, false), layout)));
        }
    }
    // The attention-processor layout: `<attn>.processor.to_q_lora.down.weight`.
    for (suffix, part) in [
        ("_lora.down.weight", Part::Down),
        ("_lora.up.weight", Part::Up),
    ] {
        if let Some(stem) = rest.strip_suffix(suffix)
            && let Some((attn, proj)) = stem.rsplit_once(".processor.")
        {
            let proj = if proj == "to_out" { "to_out.0" } else { proj };
            let module = format!("{attn}.{proj}");
            return Ok(Some((
                (component, module, part, false),
                LoraLayout::Diffusers,
            )));
        }
    }
    if rest.contains("lora") || rest.contains("dora") {
        let tail = rest.rsplit('.').take(2).collect::<Vec<_>>().join(".");
        return Err(unsupported_part(&tail));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_every_layout_split_into_module_and_part() {
        let k = parse_kohya("lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight")
            .unwrap()
            .unwrap();
        assert_eq!(
            (k.0, k.1.as_str(), k.2, k.3),
            (
                LoraComponent::Unet,
                "down_blocks_0_attentions_0_proj_in",
                Part::Down,
                true
            )
        );
        assert!(parse_kohya("lora_te2_x.alpha").is_err());
        assert!(parse_kohya("lora_unet_x.hada_w1_a").is_err());
        let ((c, m, p, _), l) = parse_dotted(
            "text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_linear_layer.up.weight",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (c, m.as_str(), p, l),
            (
                LoraComponent::TextEncoder,
                "encoder.layers.0.self_attn.q_proj",
                Part::Up,
                LoraLayout::Diffusers
            )
        );
        let ((_, m, p, _), l) = parse_dotted("unet.mid_block.attentions.0.proj_in.lora_A.weight")
            .unwrap()
            .unwrap();
        assert_eq!(
            (m.as_str(), p, l),
            (
                "mid_block.attentions.0.proj_in",
                Part::Down,
                LoraLayout::Peft
            )
        );
        let ((_, m, _, _), _) = parse_dotted(
            "unet.up_blocks.1.attentions.0.transformer_blocks.0.attn2.processor.to_out_lora.down.weight",
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            m,
            "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_out.0"
        );
        assert!(parse_dotted("unet.x.lora_magnitude_vector").is_err());
        assert!(parse_dotted("unet.conv_in.weight").unwrap().is_none());
    }
}
