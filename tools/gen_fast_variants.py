#!/usr/bin/env python3
"""Held-out variants for the fast-generation parts (#20): LoRA, LCM, the tiny autoencoder.

The `fast-tiny` reference fixture covers one LoRA shape (rank 4 on the attention projections,
no metadata), two LCM loops with SD's config and one AutoencoderTiny. This script builds other
cases with diffusers + peft and records them in the same schema (`reference/cases.json` +
`reference/tensors.safetensors`), so `sonic parity` and the Rust tests replay them:

- unet/: a 2-level UNet with linear projections (SD 2.x style), its own widths;
- unet_lora: LoRA files in the three layouts with other ranks, alphas and targets:
  * kohya, rank 2, per-layer alphas (1, 2, 3, 5 in turn), on the resnets' 3x3 convolutions
    (down [r, in, 3, 3], up [out, r, 1, 1]), their time_emb_proj, the transformer's proj_in /
    proj_out, the feed-forward (ff.net.0.proj, ff.net.2) and the attention projections;
  * PEFT with diffusers' `lora_adapter_metadata` (r 3, lora_alpha 6, an alpha_pattern);
  * diffusers layout with mixed ranks and no alphas (diffusers then takes the rank of the
    first layer as alpha for all: scale first_rank / rank);
- text_encoder_lora: a small CLIPTextModel (text_encoder/) with a PEFT LoRA on q/k/v/out_proj
  and fc1/fc2 and a kohya one (`lora_te_...`), loaded by load_lora_into_text_encoder;
  out = last_hidden_state for given ids;
- vae_tiny: an AutoencoderTiny with 3 levels of width 12, other block counts and silu;
- schedulers: LCM loops with v-prediction, original_inference_steps 20, 3 and 5 steps,
  set_alpha_to_one false, timestep_scaling 5, clip_sample (range 0.8);
- lcm_pipeline: diffusers' StableDiffusionPipeline end to end with the kohya LoRA (scale 0.8)
  on unet/, LCMScheduler (4 steps, no guidance) and the tiny autoencoder, from given latents
  and prompt embeddings; the noise each LCM step drew is recorded (`noise`), the final latents
  (`out_latents`, from callback_on_step_end) and the image (output_type "pt").

Output: tests-data/fast-variants/ (committed; about 1 MB). Run from the workspace root with
the fixture venv (scripts/fixtures.sh --setup):

    $VENV/bin/python tools/gen_fast_variants.py [OUT_DIR]

Deterministic: torch on the CPU, one thread, seeded generators.
"""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import common  # noqa: E402  (torch threads / determinism, tools/ on sys.path)

import diffusers  # noqa: E402
import fast_tiny  # noqa: E402
import gen_sd_variants as sdv  # noqa: E402
import peft  # noqa: E402
import safetensors.torch  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402

SEED = 2020
UNET = dict(
    sample_size=8, in_channels=4, out_channels=4, block_out_channels=[16, 32],
    layers_per_block=1, down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"], norm_num_groups=8,
    attention_head_dim=[2, 4], cross_attention_dim=24, use_linear_projection=True,
)
TEXT = dict(vocab_size=300, max_position_embeddings=77, num_attention_heads=2, hidden_size=24,
            intermediate_size=40, num_hidden_layers=2, hidden_act="quick_gelu",
            projection_dim=24, bos_token_id=1, eos_token_id=2, pad_token_id=2,
            layer_norm_eps=1e-5)
TAE = dict(in_channels=3, out_channels=3, encoder_block_out_channels=[12, 12, 12],
           decoder_block_out_channels=[12, 12, 12], act_fn="silu", upsample_fn="nearest",
           latent_channels=4, num_encoder_blocks=[1, 2, 1], num_decoder_blocks=[1, 2, 1],
           latent_magnitude=3, latent_shift=0.5, scaling_factor=1.0)
LCM = [
    ("lcm_v_20_3", dict(prediction_type="v_prediction", original_inference_steps=20), 3),
    ("lcm_edge_5", dict(set_alpha_to_one=False, timestep_scaling=5.0, clip_sample=True,
                        clip_sample_range=0.8, original_inference_steps=30), 5),
]
LCM_PIPE = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                set_alpha_to_one=False, original_inference_steps=50)
UNET_TARGETS = ("conv1", "conv2", "time_emb_proj", "proj_in", "proj_out", "ff.net.0.proj",
                "ff.net.2", "to_q", "to_k", "to_v", "to_out.0")
TE_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2")


def targets(model, names):
    for name, module in model.named_modules():
        if any(name.endswith("." + t) for t in names) and isinstance(
                module, (torch.nn.Linear, torch.nn.Conv2d)):
            yield name, module


def pair(module, rank, gen):
    """(down, up) for a Linear or Conv2d, kohya / PEFT shapes."""
    if isinstance(module, torch.nn.Conv2d):
        k = module.kernel_size
        down = torch.randn(rank, module.in_channels, *k, generator=gen) * 0.2
        up = torch.randn(module.out_channels, rank, 1, 1, generator=gen) * 0.2
    else:
        down = torch.randn(rank, module.in_features, generator=gen) * 0.2
        up = torch.randn(module.out_features, rank, generator=gen) * 0.2
    return down, up


def unet_loras(unet, out, gen):
    kohya, peft_sd, mixed = {}, {}, {}
    alphas = [1.0, 2.0, 3.0, 5.0]
    for i, (name, module) in enumerate(targets(unet, UNET_TARGETS)):
        down, up = pair(module, 2, gen)
        k = "lora_unet_" + name.replace(".", "_")
        kohya[f"{k}.lora_down.weight"] = down
        kohya[f"{k}.lora_up.weight"] = up
        kohya[f"{k}.alpha"] = torch.tensor(alphas[i % len(alphas)])
    pattern_module = None
    for name, module in targets(unet, ("to_q", "to_k", "to_v", "to_out.0", "proj_in")):
        down, up = pair(module, 3, gen)
        peft_sd[f"unet.{name}.lora_A.weight"] = down
        peft_sd[f"unet.{name}.lora_B.weight"] = up
        if name.endswith("attn2.to_k"):
            pattern_module = name
    meta = {"unet.r": 3, "unet.lora_alpha": 6, "unet.target_modules": ["to_q", "to_k", "to_v",
            "to_out.0", "proj_in"], "unet.alpha_pattern": {pattern_module: 1.5},
            "unet.rank_pattern": {}}
    for i, (name, module) in enumerate(targets(unet, ("to_q", "to_v", "ff.net.2"))):
        down, up = pair(module, 2 + (i % 2), gen)
        mixed[f"unet.{name}.lora.down.weight"] = down
        mixed[f"unet.{name}.lora.up.weight"] = up
    common.save_tensors(out / "lora_kohya" / "lora.safetensors", kohya)
    path = out / "lora_peft" / "pytorch_lora_weights.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    safetensors.torch.save_file(
        {k: v.contiguous() for k, v in sorted(peft_sd.items())}, str(path),
        metadata={"format": "pt", "lora_adapter_metadata": json.dumps(meta, sort_keys=True)})
    common.save_tensors(out / "lora_mixed" / "pytorch_lora_weights.safetensors", mixed)
    return [("kohya", "lora_kohya/lora.safetensors"),
            ("peft_meta", "lora_peft/pytorch_lora_weights.safetensors"),
            ("diffusers_mixed", "lora_mixed/pytorch_lora_weights.safetensors")]


def te_loras(te, out, gen):
    peft_sd, kohya = {}, {}
    for i, (name, module) in enumerate(targets(te, TE_TARGETS)):
        down, up = pair(module, 2, gen)
        peft_sd[f"text_encoder.{name}.lora_A.weight"] = down
        peft_sd[f"text_encoder.{name}.lora_B.weight"] = up
        k = "lora_te_" + name.replace(".", "_")
        kohya[f"{k}.lora_down.weight"] = down
        kohya[f"{k}.lora_up.weight"] = up
        kohya[f"{k}.alpha"] = torch.tensor(1.0 + i % 3)
    common.save_tensors(out / "lora_te_peft" / "pytorch_lora_weights.safetensors", peft_sd)
    common.save_tensors(out / "lora_te_kohya" / "lora.safetensors", kohya)
    return [("peft", "lora_te_peft/pytorch_lora_weights.safetensors"),
            ("kohya", "lora_te_kohya/lora.safetensors")]


def lcm_cases(tensors, gen, noise_gen):
    return [fast_tiny.lcm_case(name, steps, tensors, noise_gen, config=cfg, gen=gen)
            for name, cfg, steps in LCM]


def pipeline_case(out, tae, tensors, gen):
    """diffusers' pipeline with LCM, a LoRA and the tiny autoencoder; LCM's noise recorded."""
    from diffusers.schedulers import scheduling_lcm

    unet = diffusers.UNet2DConditionModel.from_pretrained(out / "unet").eval()
    sched = diffusers.LCMScheduler(**LCM_PIPE)
    pipe = diffusers.StableDiffusionPipeline(
        vae=tae, text_encoder=None, tokenizer=None, unet=unet, scheduler=sched,
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    lora = "lora_kohya/lora.safetensors"
    pipe.load_lora_weights(str(out / lora), adapter_name="fx")
    pipe.set_adapters(["fx"], adapter_weights=[0.8])
    latents = torch.randn(1, 4, 8, 8, generator=gen)
    embeds = torch.randn(1, 77, UNET["cross_attention_dim"], generator=gen)
    drawn, last = [], {}
    original = scheduling_lcm.randn_tensor

    def record(*args, **kwargs):
        x = original(*args, **kwargs)
        drawn.append(x.clone())
        return x

    def on_step_end(_pipe, _i, _t, kwargs):
        last["latents"] = kwargs["latents"].clone()
        return kwargs

    scheduling_lcm.randn_tensor = record
    try:
        with torch.no_grad():
            image = pipe(prompt_embeds=embeds, latents=latents.clone(), num_inference_steps=4,
                         guidance_scale=1.0, output_type="pt", height=64, width=64,
                         generator=torch.Generator().manual_seed(7),
                         callback_on_step_end=on_step_end).images
    finally:
        scheduling_lcm.randn_tensor = original
    tensors["pipe.latents"], tensors["pipe.embeds"] = latents, embeds
    tensors["pipe.out_latents"], tensors["pipe.image"] = last["latents"], image
    noise = []
    for i, x in enumerate(drawn):
        tensors[f"pipe.noise.{i}"] = x
        noise.append(f"pipe.noise.{i}")
    return [{"id": "lcm_lora_tiny", "lora": lora, "lora_scale": 0.8,
             "config": common.scheduler_config(sched), "num_inference_steps": 4,
             "latents": "pipe.latents", "prompt_embeds": "pipe.embeds", "noise": noise,
             "out_latents": "pipe.out_latents", "image": "pipe.image", "tol": 1e-3}]


def generate(out):
    out = common.fresh_dir(out)
    torch.manual_seed(SEED)
    gen = torch.Generator().manual_seed(SEED)
    noise_gen = torch.Generator().manual_seed(SEED + 1)
    tensors = {}

    unet = sdv.build_unet(UNET, gen)
    sdv.save_model(unet, out / "unet")
    sample = torch.randn(2, 4, 8, 8, generator=gen)
    ehs = torch.randn(2, 77, UNET["cross_attention_dim"], generator=gen)
    tensors["lora.sample"], tensors["lora.ehs"] = sample, ehs
    timestep = 433.0
    unet_cases = []
    for layout, path in unet_loras(unet, out, gen):
        for scale in (1.0, 0.7):
            key = f"lora.{layout}.{scale}"
            print(f"  unet LoRA {layout} at {scale}", flush=True)
            # As StableDiffusionPipeline.load_lora_weights: the state dict, the network
            # alphas and the file's LoraConfig metadata.
            state, alphas, meta = diffusers.StableDiffusionPipeline.lora_state_dict(
                str(out / path), return_lora_metadata=True)
            diffusers.StableDiffusionPipeline.load_lora_into_unet(
                state, alphas, unet=unet, adapter_name="fx", metadata=meta)
            unet.set_adapters(["fx"], weights=[scale])
            with torch.no_grad():
                tensors[key] = unet(sample, torch.tensor(timestep),
                                    encoder_hidden_states=ehs).sample
            unet.delete_adapters("fx")
            unet_cases.append({"id": f"{layout}_{scale}", "file": path, "layout": layout,
                               "scale": scale, "sample": "lora.sample", "timestep": timestep,
                               "encoder_hidden_states": "lora.ehs", "out": key, "tol": 1e-4})

    te = transformers.CLIPTextModel(transformers.CLIPTextConfig(**TEXT))
    sdv.randomize_1d(te, gen)
    te.eval()
    te.save_pretrained(out / "text_encoder", safe_serialization=True)
    ids = torch.randint(3, TEXT["vocab_size"], (2, 77), generator=gen)
    ids[:, 0] = TEXT["bos_token_id"]
    ids[0, 9:] = TEXT["eos_token_id"]
    ids[1, 40:] = TEXT["eos_token_id"]
    tensors["te.ids"] = ids
    with torch.no_grad():
        tensors["te.base"] = te(ids).last_hidden_state
    te_cases = [{"id": "base", "file": None, "scale": 0.0, "input_ids": "te.ids",
                 "out": "te.base", "tol": 1e-4}]
    for layout, path in te_loras(te, out, gen):
        for scale in (1.0, 0.4):
            key = f"te.{layout}.{scale}"
            # A fresh copy per case (transformers' delete_adapter needs a newer peft).
            te = transformers.CLIPTextModel.from_pretrained(out / "text_encoder").eval()
            state, alphas, meta = diffusers.StableDiffusionPipeline.lora_state_dict(
                str(out / path), return_lora_metadata=True)
            diffusers.StableDiffusionPipeline.load_lora_into_text_encoder(
                state, alphas, text_encoder=te, adapter_name="fx", metadata=meta)
            diffusers.utils.set_weights_and_activate_adapters(te, ["fx"], [scale])
            with torch.no_grad():
                tensors[key] = te(ids).last_hidden_state
            te_cases.append({"id": f"{layout}_{scale}", "file": path, "layout": layout,
                             "scale": scale, "input_ids": "te.ids", "out": key, "tol": 1e-4})

    tae = diffusers.AutoencoderTiny(**TAE)
    sdv.randomize_1d(tae, gen)
    tae.eval()
    sdv.save_model(tae, out / "vae_tiny")
    image = torch.rand(2, 3, 32, 40, generator=gen) * 2.0 - 1.0
    z = torch.randn(2, 4, 6, 5, generator=gen)
    with torch.no_grad():
        tensors["tae.latents"] = tae.encode(image).latents
        tensors["tae.decoded"] = tae.decode(z).sample
    tensors["tae.image"], tensors["tae.z"] = image, z
    vae_tiny = [{"id": "silu_3level", "image": "tae.image", "latents": "tae.latents",
                 "z": "tae.z", "decoded": "tae.decoded", "tol": 1e-4}]

    schedulers = lcm_cases(tensors, gen, noise_gen)
    lcm_pipeline = pipeline_case(out, tae, tensors, gen)
    doc = {
        "about": "Held-out fast-generation variants made by tools/gen_fast_variants.py; the "
                 "schemas of fast-tiny's cases.json, plus `text_encoder_lora` (the "
                 "CLIPTextModel in text_encoder/ with a LoRA loaded by "
                 "load_lora_into_text_encoder from `file` at `scale`; input_ids -> "
                 "out = last_hidden_state).",
        "vae_tiny": "encode(image).latents -> `latents`; decode(z).sample -> `decoded`",
        "lcm_pipeline": "StableDiffusionPipeline(unet/ + LoRA `lora` at `lora_scale`, "
                        "LCMScheduler from `config`, AutoencoderTiny vae_tiny/)(prompt_embeds, "
                        "latents, num_inference_steps, guidance_scale 1, output_type 'pt'); "
                        "`noise`: the tensor LCM's step i drew (steps but the last); "
                        "`out_latents`: the latents after the last step; `image` in [0, 1]",
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "peft": peft.__version__},
    }
    common.write_json(out / "reference" / "cases.json", {
        "variant": "fast-variants", "dtype": "float32", "_doc": doc, "schedulers": schedulers,
        "vae_tiny": vae_tiny, "unet_lora": unet_cases, "text_encoder_lora": te_cases,
        "lcm_pipeline": lcm_pipeline})
    common.save_tensors(out / "reference" / "tensors.safetensors", tensors)
    print(f"fast-variants: {len(tensors)} tensors -> {out}", flush=True)


if __name__ == "__main__":
    generate(Path(sys.argv[1]) if len(sys.argv) > 1 else common.ROOT / "tests-data" / "fast-variants")
