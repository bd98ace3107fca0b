#!/usr/bin/env python3
"""Generates tiny random Stable Diffusion *variants* with diffusers reference tensors.

The reference fixtures in ../shared/fixtures (sd15-tiny, sd21-tiny) cover one UNet / VAE
shape each. This script builds small random diffusers models with other configurations
(4-level UNet with one layer per block, 2-level UNet with per-level heads and transformer
depths, a 3-level VAE, non-square and odd sizes, batches > 1, other schedulers) and records
their outputs in the SAME schema as the fixtures' `reference/cases.json` +
`reference/tensors.safetensors`, so the Rust parity runners can replay them.

Output: tests-data/sd-variants/<name>/
    unet/, vae/                model folders (config.json + diffusion_pytorch_model.safetensors)
    scheduler/                 scheduler_config.json (pipeline variants)
    model_index.json           (pipeline variants)
    reference/cases.json       sections `unet`, `vae`, `pipeline` as in the fixtures, plus
                               `base` (the fixture whose text_encoder/ and tokenizer/ the
                               variant borrows), `versions` and `_doc`; VAE encode cases
                               whose image size is not a multiple of the VAE factor go to
                               `vae_unaligned` (same schema as `vae`)
    reference/tensors.safetensors

The text encoder and tokenizer are NOT stored (they are large and already tested on the
real fixtures): the variant's `base` names the fixture to copy `text_encoder/` and
`tokenizer/` from (crates/sonic-pipeline/tests/variants.rs does that into a temp dir).

Run (from the workspace root; needs the reference fixtures for the base text encoders):

    /var/tmp/torch-venv/bin/python tools/gen_sd_variants.py            # all variants
    /var/tmp/torch-venv/bin/python tools/gen_sd_variants.py vae-3level # one variant
    /var/tmp/torch-venv/bin/python tools/gen_sd_variants.py --check-base
        # self-test: recompute the sd15-tiny / sd21-tiny unet, vae and pipeline references
        # with this script's code and print the differences (validates the conventions)

Options: --fixtures DIR (default $SONIC_FIXTURES or ../shared/fixtures), --out DIR.

Deterministic: every variant seeds torch's generator before building anything, torch runs
on the CPU with one thread, and the same torch / diffusers / transformers versions (recorded
in cases.json `versions`) give byte-identical files. Generated with torch 2.15 (CPU),
diffusers 0.42.1, transformers 5.24.
"""

import argparse
import json
import os
import shutil
import sys
import warnings
from pathlib import Path

import torch

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
warnings.filterwarnings("ignore")

import diffusers  # noqa: E402
import transformers  # noqa: E402
from diffusers import AutoencoderKL, StableDiffusionPipeline, UNet2DConditionModel  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import CLIPTextModel, CLIPTokenizer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": diffusers.__version__,
    "feature_extractor": [None, None],
    "image_encoder": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "DDIMScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}

# SD 1.x's DDIM scheduler config (epsilon) and SD 2.x's (v-prediction), as the fixtures ship.
SCHED_SD1 = {
    "_class_name": "DDIMScheduler",
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "clip_sample": False,
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "timestep_spacing": "leading",
    "trained_betas": None,
}
SCHED_SD2 = dict(SCHED_SD1, prediction_type="v_prediction")

PROMPTS = [
    "a photograph of waves crashing on a rocky beach at sunset",
    "Rain falling on a tin roof, 4k, highly detailed!!",
    "a crackling campfire in a snowy forest; night",
]

# ---------------------------------------------------------------------------------------
# Variant definitions. Sizes are kept small (each variant ~2 MB on disk).
# ---------------------------------------------------------------------------------------

VARIANTS = {
    # 4-level UNet, one layer per block, int attention_head_dim (= number of heads in
    # diffusers), last down block without attention; latents not multiples of 2^3 so the
    # UNet forwards the skip sizes to the upsamplers (nearest-resize 2->3, 3->5, ...).
    "unet4-l1-nonsquare": dict(
        seed=1001,
        base="sd15-tiny",
        doc="4-level UNet [8,16,16,32] (norm groups 4), layers_per_block 1, down "
        "Cross,Cross,Cross,Down / up Up,Cross,Cross,Cross, attention_head_dim 2 (int: 2 heads "
        "per level), cross_attention_dim 32 (sd15-tiny's text encoder); UNet cases with "
        "non-square latents not divisible by 8 (forward_upsample_size path), batch 3; a 4-level "
        "VAE [8,8,16,16] (factor 8, norm groups 4); pipelines with batch 2/3, non-square, "
        "DDIM / Euler / DPM-Solver++ (built with from_config from the model's DDIM config).",
        unet=dict(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=[8, 16, 16, 32],
            norm_num_groups=4,
            layers_per_block=1,
            down_block_types=[
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "CrossAttnDownBlock2D",
                "DownBlock2D",
            ],
            up_block_types=[
                "UpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
                "CrossAttnUpBlock2D",
            ],
            attention_head_dim=2,
            cross_attention_dim=32,
        ),
        vae=dict(
            block_out_channels=[8, 8, 16, 16],
            norm_num_groups=4,
            layers_per_block=1,
            latent_channels=4,
            sample_size=64,
            scaling_factor=0.18215,
        ),
        scheduler=SCHED_SD1,
        # (batch, latent h, latent w, timesteps)
        unet_cases=[(3, 10, 12, [999, 500, 1]), (1, 8, 12, [250])],
        # encode: the image's shape; decode: the latents' shape
        vae_cases=[
            dict(image=(2, 3, 40, 56), latents=(2, 4, 5, 7)),
            dict(image=(1, 3, 40, 44), latents=(1, 4, 3, 5)),  # unaligned: 44 -> 22 -> 11 -> 5
        ],
        pipeline_cases=[
            dict(prompt=0, negative="", guidance=7.5, steps=4, scheduler="DDIMScheduler",
                 batch=2, h=10, w=12),
            dict(prompt=1, negative="blurry, low quality", guidance=5.0, steps=5,
                 scheduler="EulerDiscreteScheduler", batch=2, h=6, w=10),
            dict(prompt=2, negative="", guidance=1.0, steps=5,
                 scheduler="DPMSolverMultistepScheduler", batch=3, h=5, w=6),
            dict(prompt=0, negative="ugly", guidance=6.0, steps=4,
                 scheduler="DPMSolverMultistepScheduler", batch=1, h=7, w=9),
        ],
    ),
    # 2-level UNet, 3 layers per block, per-level heads and transformer depths, linear
    # projections and upcast attention (SD 2.x style), v-prediction scheduler, 2-level VAE.
    "unet2-l3-heads": dict(
        seed=2002,
        base="sd21-tiny",
        doc="2-level UNet [16,20] (norm groups 4), layers_per_block 3, down Cross,Cross / up "
        "Cross,Cross, attention_head_dim [2,4] (per-level heads: up blocks use them reversed), "
        "transformer_layers_per_block [1,2] (mid block 2), use_linear_projection, "
        "upcast_attention, cross_attention_dim 48 (sd21-tiny's text encoder); odd latent sizes; "
        "2-level VAE [8,16] (factor 2, norm groups 4, layers_per_block 2, scaling 0.13025) with "
        "a non-square image; pipelines with the SD2-style v-prediction DDIM config, batch 2, "
        "non-square, DDIM / Euler / DPM-Solver++.",
        unet=dict(
            sample_size=8,
            in_channels=4,
            out_channels=4,
            block_out_channels=[16, 20],
            norm_num_groups=4,
            layers_per_block=3,
            down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D"],
            up_block_types=["CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
            attention_head_dim=[2, 4],
            transformer_layers_per_block=[1, 2],
            use_linear_projection=True,
            upcast_attention=True,
            cross_attention_dim=48,
        ),
        vae=dict(
            block_out_channels=[8, 16],
            norm_num_groups=4,
            layers_per_block=2,
            latent_channels=4,
            sample_size=64,
            scaling_factor=0.13025,
        ),
        scheduler=SCHED_SD2,
        unet_cases=[(2, 9, 14, [999, 37]), (1, 16, 12, [500])],
        vae_cases=[
            dict(image=(2, 3, 40, 56), latents=(2, 4, 13, 10)),
            dict(image=(1, 3, 15, 22), latents=(1, 4, 3, 4)),  # unaligned: 15 -> 7
        ],
        pipeline_cases=[
            dict(prompt=0, negative="", guidance=7.5, steps=4, scheduler="DDIMScheduler",
                 batch=2, h=20, w=12),
            dict(prompt=1, negative="blurry, low quality", guidance=4.0, steps=4,
                 scheduler="EulerDiscreteScheduler", batch=1, h=12, w=16),
            dict(prompt=2, negative="", guidance=3.0, steps=4,
                 scheduler="DPMSolverMultistepScheduler", batch=2, h=8, w=20),
        ],
    ),
    # A VAE alone: 3 levels of different widths, 16 norm groups, batch 3, non-square and odd
    # sizes (the encoder's asymmetric downsampling pad on an odd size).
    "vae-3level": dict(
        seed=3003,
        base=None,
        doc="3-level VAE [16,32,48] (norm groups 16), layers_per_block 1, mid-block attention, "
        "factor 4; encodes a batch-3 36x52 image (52 -> 26 -> 13) and a 20x28 one, decodes "
        "non-square latents; `vae_unaligned` encodes 20x30 and 17x24 images (the asymmetric "
        "downsampling pad on odd sizes).",
        vae=dict(
            block_out_channels=[16, 32, 48],
            norm_num_groups=16,
            layers_per_block=1,
            latent_channels=4,
            sample_size=64,
            mid_block_add_attention=True,
            scaling_factor=0.18215,
        ),
        vae_cases=[
            dict(image=(3, 3, 36, 52), latents=(3, 4, 9, 13)),
            dict(image=(1, 3, 20, 28), latents=(1, 4, 7, 5)),
            dict(image=(1, 3, 20, 30), latents=(1, 4, 5, 3)),  # unaligned: 30 -> 15 -> 7
            dict(image=(2, 3, 17, 24), latents=(2, 4, 2, 2)),  # unaligned: 17 -> 8 -> 4
        ],
    ),
}


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------


def randomize_1d(model, gen):
    """Norm scales ~ 1 + 0.1 N(0,1), every other 1-D parameter (biases) ~ 0.05 N(0,1), so
    that norms and biases matter; >= 2-D weights keep PyTorch's default (seeded) init."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.ndim != 1:
                continue
            noise = torch.randn(p.shape, generator=gen, dtype=p.dtype)
            if name.endswith("weight"):
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.05 * noise)


def build_unet(cfg, gen):
    unet = UNet2DConditionModel(**cfg)
    randomize_1d(unet, gen)
    return unet.eval()


def build_vae(cfg, gen):
    n = len(cfg["block_out_channels"])
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * n,
        up_block_types=["UpDecoderBlock2D"] * n,
        **cfg,
    )
    randomize_1d(vae, gen)
    return vae.eval()


def block_hooks(unet, store):
    """Records diffusers' block outputs under the fixture names (down blocks: the first element
    of the returned tuple)."""
    handles = []

    def rec(name, first=False):
        def hook(_m, _i, out):
            store[name] = (out[0] if first else out).detach().clone()

        return hook

    handles.append(unet.time_embedding.register_forward_hook(rec("time_embedding")))
    handles.append(unet.conv_in.register_forward_hook(rec("conv_in")))
    for i, b in enumerate(unet.down_blocks):
        handles.append(b.register_forward_hook(rec(f"down_blocks.{i}", first=True)))
    handles.append(unet.mid_block.register_forward_hook(rec("mid_block")))
    for i, b in enumerate(unet.up_blocks):
        handles.append(b.register_forward_hook(rec(f"up_blocks.{i}")))
    return handles


def unet_case(unet, sample, timesteps, ehs, prefix, tensors):
    store = {}
    handles = block_hooks(unet, store)
    with torch.no_grad():
        out = unet(sample, timesteps, encoder_hidden_states=ehs).sample
    for h in handles:
        h.remove()
    order = ["time_embedding", "conv_in"]
    order += [f"down_blocks.{i}" for i in range(len(unet.down_blocks))]
    order += ["mid_block"]
    order += [f"up_blocks.{i}" for i in range(len(unet.up_blocks))]
    tensors[f"{prefix}.sample"] = sample
    tensors[f"{prefix}.timesteps"] = timesteps
    tensors[f"{prefix}.encoder_hidden_states"] = ehs
    tensors[f"{prefix}.out"] = out
    case = {
        "sample": f"{prefix}.sample",
        "timesteps": f"{prefix}.timesteps",
        "encoder_hidden_states": f"{prefix}.encoder_hidden_states",
        "out": f"{prefix}.out",
        "intermediates": {},
    }
    for name in order:
        key = f"{prefix}.inter.{name}"
        tensors[key] = store[name]
        case["intermediates"][name] = key
    return case


def vae_case(vae, image, latents, prefix, tensors):
    with torch.no_grad():
        dist = vae.encode(image).latent_dist
        decoded = vae.decode(latents).sample
    tensors[f"{prefix}.image"] = image
    tensors[f"{prefix}.latent_mean"] = dist.mean
    tensors[f"{prefix}.latent_logvar"] = dist.logvar
    tensors[f"{prefix}.latents"] = latents
    tensors[f"{prefix}.decoded"] = decoded
    return {
        "image": f"{prefix}.image",
        "latent_mean": f"{prefix}.latent_mean",
        "latent_logvar": f"{prefix}.latent_logvar",
        "latents": f"{prefix}.latents",
        "decoded": f"{prefix}.decoded",
    }


def make_pipe(unet, vae, base_dir, scheduler_config):
    text_encoder = CLIPTextModel.from_pretrained(base_dir / "text_encoder").eval()
    tokenizer = CLIPTokenizer.from_pretrained(base_dir / "tokenizer")
    scheduler = diffusers.DDIMScheduler.from_config(scheduler_config)
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def pipeline_run(pipe, base_sched_config, prompt, negative, guidance, steps, sched, latents):
    """out_latents (output_type="latent") and image (output_type="pt", in [0, 1]) of one run;
    the scheduler is `sched`.from_config(the model's scheduler config)."""
    b, _, h, w = latents.shape
    f = pipe.vae_scale_factor
    results = []
    for output_type in ("latent", "pt"):
        pipe.scheduler = getattr(diffusers, sched).from_config(base_sched_config)
        with torch.no_grad():
            out = pipe(
                prompt,
                negative_prompt=negative,
                guidance_scale=guidance,
                num_inference_steps=steps,
                num_images_per_prompt=b,
                height=h * f,
                width=w * f,
                latents=latents.clone(),
                output_type=output_type,
            ).images
        results.append(out)
    return results


def save_model(model, folder):
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder, safe_serialization=True)


def write_json(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        json.dump(value, fh, indent=1)
        fh.write("\n")


def versions():
    return {
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "transformers": transformers.__version__,
    }


# ---------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------


def generate(name, spec, fixtures, out_root):
    print(f"== {name}", flush=True)
    torch.manual_seed(spec["seed"])
    gen = torch.Generator().manual_seed(spec["seed"])
    out = out_root / name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    tensors = {}
    cases = {
        "variant": name,
        "dtype": "float32",
        "_doc": spec["doc"],
        "base": spec["base"],
        "versions": versions(),
    }

    unet = build_unet(spec["unet"], gen) if "unet" in spec else None
    vae = build_vae(spec["vae"], gen) if "vae" in spec else None
    if unet is not None:
        save_model(unet, out / "unet")
    if vae is not None:
        save_model(vae, out / "vae")

    if unet is not None:
        cases["unet"] = []
        width = spec["unet"]["cross_attention_dim"]
        for i, (b, h, w, ts) in enumerate(spec["unet_cases"]):
            sample = torch.randn(b, spec["unet"]["in_channels"], h, w, generator=gen)
            ehs = torch.randn(b, 77, width, generator=gen)
            timesteps = torch.tensor(ts, dtype=torch.int64)
            cases["unet"].append(unet_case(unet, sample, timesteps, ehs, f"unet.{i}", tensors))

    if vae is not None:
        # Images whose sizes are not multiples of the VAE factor go to `vae_unaligned` (same
        # schema): diffusers encodes them (asymmetric pad, floor), but pipelines never produce
        # them (VaeImageProcessor rounds sizes to the factor), so they are kept apart.
        factor = 2 ** (len(spec["vae"]["block_out_channels"]) - 1)
        for i, c in enumerate(spec["vae_cases"]):
            image = torch.rand(c["image"], generator=gen) * 2.0 - 1.0
            latents = torch.randn(c["latents"], generator=gen)
            aligned = c["image"][2] % factor == 0 and c["image"][3] % factor == 0
            section = "vae" if aligned else "vae_unaligned"
            prefix = f"{section}.{len(cases.get(section, []))}"
            cases.setdefault(section, []).append(vae_case(vae, image, latents, prefix, tensors))

    if spec.get("pipeline_cases"):
        base_dir = fixtures / spec["base"]
        sched_cfg = dict(spec["scheduler"])
        write_json(out / "scheduler" / "scheduler_config.json",
                   dict(sched_cfg, _diffusers_version=diffusers.__version__))
        write_json(out / "model_index.json", MODEL_INDEX)
        pipe = make_pipe(unet, vae, base_dir, sched_cfg)
        cfg = pipe.scheduler.config
        cases["pipeline"] = []
        for i, c in enumerate(spec["pipeline_cases"]):
            latents = torch.randn(c["batch"], spec["unet"]["in_channels"], c["h"], c["w"],
                                  generator=gen)
            prompt = PROMPTS[c["prompt"]]
            out_latents, image = pipeline_run(pipe, cfg, prompt, c["negative"], c["guidance"],
                                              c["steps"], c["scheduler"], latents)
            p = f"pipe.{i}"
            tensors[f"{p}.latents"] = latents
            tensors[f"{p}.out_latents"] = out_latents
            tensors[f"{p}.image"] = image
            cases["pipeline"].append({
                "prompt": prompt,
                "negative_prompt": c["negative"],
                "guidance_scale": c["guidance"],
                "num_inference_steps": c["steps"],
                "scheduler": c["scheduler"],
                "latents": f"{p}.latents",
                "out_latents": f"{p}.out_latents",
                "image": f"{p}.image",
            })

    (out / "reference").mkdir(exist_ok=True)
    write_json(out / "reference" / "cases.json", cases)
    save_file({k: v.contiguous() for k, v in sorted(tensors.items())},
              str(out / "reference" / "tensors.safetensors"))
    total = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"   {len(tensors)} tensors, {total / 1e6:.2f} MB", flush=True)


# ---------------------------------------------------------------------------------------
# Self-test against the real fixtures
# ---------------------------------------------------------------------------------------


def rel(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


def check_base(fixtures):
    """Recomputes the sd15-tiny / sd21-tiny unet, vae and pipeline references with this
    script's code; small differences confirm the schema conventions are the fixtures'."""
    for name in ("sd15-tiny", "sd21-tiny"):
        d = fixtures / name
        cases = json.load(open(d / "reference" / "cases.json"))
        t = load_file(str(d / "reference" / "tensors.safetensors"))
        unet = UNet2DConditionModel.from_pretrained(d / "unet").eval()
        vae = AutoencoderKL.from_pretrained(d / "vae").eval()
        worst = 0.0
        for c in cases["unet"]:
            tensors = {}
            mine = unet_case(unet, t[c["sample"]], t[c["timesteps"]],
                             t[c["encoder_hidden_states"]], "x", tensors)
            worst = max(worst, rel(tensors["x.out"], t[c["out"]]))
            for k, key in c["intermediates"].items():
                worst = max(worst, rel(tensors[mine["intermediates"][k]], t[key]))
        print(f"{name} unet worst rel {worst:.2e}")
        worst = 0.0
        for c in cases["vae"]:
            tensors = {}
            vae_case(vae, t[c["image"]], t[c["latents"]], "x", tensors)
            for k in ("latent_mean", "latent_logvar", "decoded"):
                worst = max(worst, rel(tensors[f"x.{k}"], t[c[k]]))
        print(f"{name} vae worst rel {worst:.2e}")
        sched_cfg = json.load(open(d / "scheduler" / "scheduler_config.json"))
        pipe = make_pipe(unet, vae, d, sched_cfg)
        for i, c in enumerate(cases["pipeline"]):
            lat, img = pipeline_run(pipe, pipe.scheduler.config, c["prompt"],
                                    c["negative_prompt"], c["guidance_scale"],
                                    c["num_inference_steps"], c["scheduler"], t[c["latents"]])
            print(f"{name} pipeline.{i} out_latents rel {rel(lat, t[c['out_latents']]):.2e} "
                  f"image rel {rel(img, t[c['image']]):.2e}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("names", nargs="*", help=f"variants (default all: {', '.join(VARIANTS)})")
    default_fixtures = os.environ.get("SONIC_FIXTURES") or str(ROOT.parent / "shared" / "fixtures")
    ap.add_argument("--fixtures", default=default_fixtures)
    ap.add_argument("--out", default=str(ROOT / "tests-data" / "sd-variants"))
    ap.add_argument("--check-base", action="store_true")
    args = ap.parse_args()
    fixtures = Path(args.fixtures)
    if args.check_base:
        check_base(fixtures)
        return
    names = args.names or list(VARIANTS)
    for n in names:
        if n not in VARIANTS:
            sys.exit(f"unknown variant {n!r}; known: {', '.join(VARIANTS)}")
    out_root = Path(args.out)
    for n in names:
        generate(n, VARIANTS[n], fixtures, out_root)


if __name__ == "__main__":
    main()
