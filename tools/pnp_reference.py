#!/usr/bin/env python3
"""One SonicDiffusion Plug-and-Play edit in PyTorch (diffusers), the reference for our Rust edit.

Runs the official editing method (pnp-diffusers' `preprocess.py` + `pnp.py`, as adapted by the
SonicDiffusion release) on the tiny fixtures: ../shared/fixtures/sd15-tiny (VAE, CLIP text
encoder, UNet, DDIM scheduler config) plus the gated audio adapters of
../shared/fixtures/sonic-tiny/adapters.safetensors. Written from the behaviour of those
scripts, not copied; the points that decide the numbers:

1. Source latent: VAE posterior mean x scaling factor of a deterministic 64x64 picture.
2. DDIM inversion (preprocess.py `ddim_inversion`): the *plain* SD UNet (the official
   preprocess loads the stock diffusers UNet: no adapters), conditioned on the inversion
   prompt, no guidance. Step j (ascending timesteps t_j) runs the UNet at t_j on the latent of
   level t_{j-1} (the scheduler's final alpha for j = 0) and moves it to level t_j:
       x0 = (x - sqrt(1 - a_prev) eps) / sqrt(a_prev);  x = sqrt(a_t) x0 + sqrt(1 - a_t) eps
   and keeps the latent of every level ("noisy_latents_{t}").
3. PnP sampling (pnp.py `denoise_step`), DDIM eta 0 over the same timesteps, from the latent
   of the noisiest level, with the batch [source, uncond, cond]:
     - latents: [stored inverted latent of this step's t, x, x];
     - text: ["" (pnp_guidance_embeds: always the EMPTY prompt, not the inversion prompt),
       negative prompt, prompt];
     - audio tokens: [null, null, audio] with the adapters at f_multiplier f (default 1);
     - eps = eps_uncond + guidance (eps_cond - eps_uncond).
   Injection (pnp_utils.py `register_*_control_efficient`): during the first
   int(T * pnp_f_t) steps (floor: Python int() of the product) the conv2 output (before the
   skip add) of the chosen resnets, and during the first int(T * pnp_attn_t) steps the
   self-attention (attn1) to_q / to_k outputs (before the head split) of the chosen
   attentions, have their uncond and cond rows replaced by the source rows.
   Layers: SonicDiffusion's pnp_utils injects up_blocks[1].resnets[1, 2] (pnp-diffusers:
   resnets[1] only) and attn1 of up_blocks[1].attentions[1, 2], up_blocks[2].attentions[0..2],
   up_blocks[3].attentions[0..2]. The tiny UNet has no up_blocks[3] (its cross-attention up
   blocks are 1 and 2), so the layers that exist are injected -- the same rule ("every
   decoder self-attention of the cross-attention up blocks except the first at the lowest
   resolution") as on SD 1.x, and the same names our Rust `PnpOptions::default()` keeps.

The gated adapter (crates/sonic-unet/src/adapter.rs; official attention_custom.py), in every
BasicTransformerBlock of the mid block and the up blocks, after the attn2 residual and before
norm3:  h = (attn_adapter(norm_adapter(h), audio_tokens) * tanh(gate_adapter)) * f + h,
attn_adapter = diffusers Attention(C, cross_attention_dim = token width, the block's heads and
head size, no q/k/v bias, to_out bias). The script checks its adapter UNet against the
sonic-tiny reference (`unet.f1.out`) before running the edit.

Audio: the fixed audio tokens of the sonic-tiny pipeline case (clip c: the official projector
applied to the CLAP embedding `pipe.clap_embedding_l2x2`, and the null tokens
projector(zeros)), taken from sonic-tiny/reference/tensors.safetensors, so both sides use the
identical tokens; the embedding is saved too.

Output folder (created): inputs.safetensors (image, clap_embedding, audio_tokens,
null_tokens), reference.safetensors (source_latent, text embeddings, inversion latents per
step, sampling latents per step, final_latent), case.json (every parameter and the index).

Run from the workspace root (about 8 s on the CPU, mostly imports):

    /var/tmp/torch-venv/bin/python tools/pnp_reference.py tests-data/pnp-reference

Options: --fixtures DIR (default $SONIC_FIXTURES or ../shared/fixtures), --steps, --pnp-f-t,
--pnp-attn-t, --guidance, --prompt, --negative-prompt, --inversion-prompt, --f.
Deterministic: CPU, one thread, float32, no random numbers (the picture is analytic).
"""

import argparse
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

import diffusers
import transformers
from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel
from diffusers.models.attention_processor import Attention
from transformers import CLIPTextModel, CLIPTokenizer


def default_fixtures():
    env = os.environ.get("SONIC_FIXTURES")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    return os.path.normpath(os.path.join(here, "..", "..", "shared", "fixtures"))


# ---------------------------------------------------------------- gated adapters


class GatedAdapter(torch.nn.Module):
    """norm_adapter + attn_adapter + gate_adapter of one BasicTransformerBlock."""

    def __init__(self, dim, context_dim, heads, dim_head, eps):
        super().__init__()
        self.attn_adapter = Attention(
            query_dim=dim,
            cross_attention_dim=context_dim,
            heads=heads,
            dim_head=dim_head,
            bias=False,
            out_bias=True,
        )
        self.norm_adapter = torch.nn.LayerNorm(dim, eps=eps)
        self.gate_adapter = torch.nn.Parameter(torch.zeros(1))


class AudioState:
    """What the patched blocks read: the audio tokens per batch row and the strength f
    (None: adapters off, the plain UNet of the official preprocess)."""

    def __init__(self):
        self.tokens = None
        self.f = 1.0


def patch_block(block, adapter, state):
    """Replaces `block.forward` with the layer-norm BasicTransformerBlock of SD plus the
    gated adapter (the only configuration SD 1.x uses: no ada-norm, no positional embedding,
    no GLIGEN, attn1 self-attention)."""

    assert block.norm_type == "layer_norm" and block.pos_embed is None
    assert not block.only_cross_attention and block._chunk_size is None

    def forward(hidden_states, attention_mask=None, encoder_hidden_states=None,
                encoder_attention_mask=None, timestep=None, cross_attention_kwargs=None,
                class_labels=None, added_cond_kwargs=None):
        h = hidden_states
        h = block.attn1(block.norm1(h), attention_mask=attention_mask) + h
        h = block.attn2(block.norm2(h), encoder_hidden_states=encoder_hidden_states,
                        attention_mask=encoder_attention_mask) + h
        if state.tokens is not None:
            a = adapter.attn_adapter(adapter.norm_adapter(h), encoder_hidden_states=state.tokens)
            h = (a * torch.tanh(adapter.gate_adapter)) * state.f + h
        h = block.ff(block.norm3(h)) + h
        return h

    block.forward = forward


def attach_adapters(unet, adapters_path, state):
    sd = load_file(adapters_path)
    prefixes = sorted({k.split(".attn_adapter.")[0] for k in sd if ".attn_adapter." in k})
    modules = dict(unet.named_modules())
    holders = {}
    for p in prefixes:
        block = modules[p]
        heads = block.attn2.heads
        dim = block.norm1.normalized_shape[0]
        ctx = sd[f"{p}.attn_adapter.to_k.weight"].shape[1]
        ad = GatedAdapter(dim, ctx, heads, dim // heads, block.norm3.eps)
        own = {k[len(p) + 1:]: v for k, v in sd.items() if k.startswith(p + ".")}
        ad.load_state_dict(own, strict=True)
        ad.eval()
        patch_block(block, ad, state)
        holders[p] = ad
    used = sum(len([k for k in sd if k.startswith(p + ".")]) for p in prefixes)
    assert used == len(sd), f"unused adapter keys in {adapters_path}"
    return holders


# ---------------------------------------------------------------- PnP injection hooks


class Injection:
    """Row replacement [source | uncond | cond] -> [source | source | source] on module outputs."""

    def __init__(self):
        self.resnets_on = False
        self.attention_on = False
        self.calls = {"resnet": 0, "attention": 0}

    def resnet(self, out):
        if not self.resnets_on:
            return out
        self.calls["resnet"] += 1
        return self.spread(out)

    def qk(self, out):
        if not self.attention_on:
            return out
        self.calls["attention"] += 1
        return self.spread(out)

    @staticmethod
    def spread(out):
        n = out.shape[0] // 3
        assert out.shape[0] == 3 * n
        out = out.clone()
        out[n:2 * n] = out[:n]
        out[2 * n:] = out[:n]
        return out


def register_injection(unet, resnets, attentions, inj):
    modules = dict(unet.named_modules())
    used_res = [r for r in resnets if r in modules]
    used_attn = [a for a in attentions if a in modules]
    for r in used_res:
        # conv2 output = the residual branch before the skip add (dropout is identity in eval).
        modules[r].conv2.register_forward_hook(lambda _m, _i, out: inj.resnet(out))
    for a in used_attn:
        attn = modules[a]
        assert attn.is_cross_attention is False
        for proj in (attn.to_q, attn.to_k):
            proj.register_forward_hook(lambda _m, _i, out: inj.qk(out))
    return used_res, used_attn


# ---------------------------------------------------------------- inputs


def test_picture(h=64, w=64):
    """A smooth deterministic picture in [-1, 1]: colour gradients and a soft disc."""
    y = torch.arange(h, dtype=torch.float64).view(h, 1).expand(h, w) / (h - 1)
    x = torch.arange(w, dtype=torch.float64).view(1, w).expand(h, w) / (w - 1)
    d = torch.sqrt((x - 0.55) ** 2 + (y - 0.45) ** 2)
    disc = torch.sigmoid((0.25 - d) * 40.0)
    r = 0.8 * x + 0.2 * disc
    g = 0.3 + 0.6 * y * (1 - disc)
    b = 0.2 + 0.7 * disc
    img = torch.stack([r, g, b]).clamp(0, 1) * 2 - 1
    return img.unsqueeze(0).to(torch.float32)


@torch.no_grad()
def encode_prompt(tokenizer, text_encoder, prompt):
    ids = tokenizer(prompt, padding="max_length", max_length=tokenizer.model_max_length,
                    truncation=True, return_tensors="pt").input_ids
    return text_encoder(ids)[0]


def rel_err(a, b):
    return ((a - b).abs().max() / b.abs().max()).item()


# ---------------------------------------------------------------- main


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out", help="output folder (e.g. tests-data/pnp-reference)")
    ap.add_argument("--fixtures", default=default_fixtures())
    ap.add_argument("--steps", type=int, default=10)
    # 0.75 and 0.55: int(T * t) and round(T * t) differ for T = 10 (7 vs 8, 5 vs 6), so the
    # reference pins the threshold rule.
    ap.add_argument("--pnp-f-t", type=float, default=0.75)
    ap.add_argument("--pnp-attn-t", type=float, default=0.55)
    ap.add_argument("--guidance", type=float, default=7.5)
    ap.add_argument("--prompt", default="a stormy sea at night, lightning")
    ap.add_argument("--negative-prompt", default="")
    # Not "": the official source branch uses "" whatever the inversion prompt, so a
    # non-empty inversion prompt pins that choice.
    ap.add_argument("--inversion-prompt", default="a photo of a lighthouse on a hill")
    ap.add_argument("--f", type=float, default=1.0, help="adapter strength f_multiplier")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    sd_dir = os.path.join(args.fixtures, "sd15-tiny")
    sonic_dir = os.path.join(args.fixtures, "sonic-tiny")

    tokenizer = CLIPTokenizer.from_pretrained(os.path.join(sd_dir, "tokenizer"))
    text_encoder = CLIPTextModel.from_pretrained(os.path.join(sd_dir, "text_encoder")).eval()
    vae = AutoencoderKL.from_pretrained(os.path.join(sd_dir, "vae")).eval()
    unet = UNet2DConditionModel.from_pretrained(os.path.join(sd_dir, "unet")).eval()
    scheduler = DDIMScheduler.from_pretrained(os.path.join(sd_dir, "scheduler"))

    audio = AudioState()
    attach_adapters(unet, os.path.join(sonic_dir, "adapters.safetensors"), audio)

    # Self-check of the adapter UNet against the sonic-tiny fixture reference.
    ref = load_file(os.path.join(sonic_dir, "reference", "tensors.safetensors"))
    audio.tokens, audio.f = ref["unet.audio_tokens"], 1.0
    out = unet(ref["unet.sample"], ref["unet.timesteps"],
               encoder_hidden_states=ref["unet.encoder_hidden_states"]).sample
    check = rel_err(out, ref["unet.f1.out"])
    print(f"adapter UNet vs sonic-tiny reference unet.f1.out: max rel err {check:.3e}")
    if check > 1e-5:
        sys.exit(f"the PyTorch adapter UNet disagrees with the fixture ({check:.3e})")

    # Inputs.
    image = test_picture()
    audio_tokens = ref["pipe.audio_tokens"].clone()
    null_tokens = ref["pipe.null_tokens"].clone()
    clap_embedding = ref["pipe.clap_embedding_l2x2"].clone()

    text_inv = encode_prompt(tokenizer, text_encoder, args.inversion_prompt)
    text_src = encode_prompt(tokenizer, text_encoder, "")
    text_unc = encode_prompt(tokenizer, text_encoder, args.negative_prompt)
    text_cond = encode_prompt(tokenizer, text_encoder, args.prompt)

    # 1. Source latent.
    latent = vae.encode(image).latent_dist.mean * vae.config.scaling_factor

    # 2. DDIM inversion with the plain UNet.
    scheduler.set_timesteps(args.steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    ac = scheduler.alphas_cumprod
    audio.tokens = None
    x = latent.clone()
    per_t = {}
    rising = list(reversed(timesteps))
    for j, t in enumerate(rising):
        a_t = ac[t]
        a_prev = ac[rising[j - 1]] if j > 0 else scheduler.final_alpha_cumprod
        eps = unet(x, t, encoder_hidden_states=text_inv).sample
        x0 = (x - (1 - a_prev) ** 0.5 * eps) / a_prev ** 0.5
        x = a_t ** 0.5 * x0 + (1 - a_t) ** 0.5 * eps
        per_t[t] = x.clone()
    inversion = torch.stack([per_t[t] for t in timesteps])  # sampling order, [T, 1, 4, h, w]

    # 3. PnP sampling.
    n_res = int(args.steps * args.pnp_f_t)
    n_attn = int(args.steps * args.pnp_attn_t)
    resnets_default = ["up_blocks.1.resnets.1", "up_blocks.1.resnets.2"]
    attn_default = [f"up_blocks.{b}.attentions.{a}.transformer_blocks.0.attn1"
                    for b, a in [(1, 1), (1, 2), (2, 0), (2, 1), (2, 2), (3, 0), (3, 1), (3, 2)]]
    inj = Injection()
    used_res, used_attn = register_injection(unet, resnets_default, attn_default, inj)
    audio.tokens = torch.cat([null_tokens, null_tokens, audio_tokens])
    audio.f = args.f
    text = torch.cat([text_src, text_unc, text_cond])
    x = per_t[timesteps[0]].clone()
    sampled = []
    for i, t in enumerate(timesteps):
        inj.resnets_on = i < n_res
        inj.attention_on = i < n_attn
        inp = torch.cat([per_t[t], x, x])
        eps = unet(inp, t, encoder_hidden_states=text).sample
        _, eps_u, eps_c = eps.chunk(3)
        eps = eps_u + args.guidance * (eps_c - eps_u)
        x = scheduler.step(eps, t, x).prev_sample
        sampled.append(x.clone())
    final = x
    inj.resnets_on = inj.attention_on = False
    # Every injection point fired on exactly its steps (q and k: two calls per attention).
    assert inj.calls["resnet"] == n_res * len(used_res), inj.calls
    assert inj.calls["attention"] == 2 * n_attn * len(used_attn), inj.calls

    os.makedirs(args.out, exist_ok=True)
    save_file({
        "image": image.contiguous(),
        "clap_embedding": clap_embedding.contiguous(),
        "audio_tokens": audio_tokens.contiguous(),
        "null_tokens": null_tokens.contiguous(),
    }, os.path.join(args.out, "inputs.safetensors"))
    save_file({
        "source_latent": latent.contiguous(),
        "text.inversion": text_inv.contiguous(),
        "text.source": text_src.contiguous(),
        "text.uncond": text_unc.contiguous(),
        "text.cond": text_cond.contiguous(),
        "inversion": inversion.contiguous(),
        "sampled": torch.stack(sampled).contiguous(),
        "final_latent": final.contiguous(),
    }, os.path.join(args.out, "reference.safetensors"))
    case = {
        "_doc": __doc__.split("\n\n")[0] + " See tools/pnp_reference.py for the method.",
        "fixtures": {"sd": "sd15-tiny", "adapters": "sonic-tiny/adapters.safetensors"},
        "inputs": {
            "image": "inputs.safetensors:image [1, 3, 64, 64] in [-1, 1] (analytic picture)",
            "audio_tokens": "inputs.safetensors:audio_tokens = sonic-tiny reference pipe.audio_tokens",
            "null_tokens": "inputs.safetensors:null_tokens = sonic-tiny reference pipe.null_tokens",
            "clap_embedding": "inputs.safetensors:clap_embedding = sonic-tiny reference pipe.clap_embedding_l2x2 (projector input of audio_tokens)",
        },
        "steps": args.steps,
        "timesteps": timesteps,
        "pnp_f_t": args.pnp_f_t,
        "pnp_attn_t": args.pnp_attn_t,
        "resnet_injection_steps": n_res,
        "attention_injection_steps": n_attn,
        "threshold_rule": "int(steps * pnp_t) (floor), injection while step index < that count",
        "guidance_scale": args.guidance,
        "prompt": args.prompt,
        "negative_prompt": args.negative_prompt,
        "inversion_prompt": args.inversion_prompt,
        "source_branch_prompt": "",
        "f_multiplier": args.f,
        "inversion_unet": "plain (adapters off), inversion prompt, no guidance",
        "batch_order": ["source: (stored latent, \"\" text, null tokens)",
                        "uncond: (x, negative prompt, null tokens)",
                        "cond: (x, prompt, audio tokens)"],
        "injected_resnets": used_res,
        "injected_attentions": used_attn,
        "requested_resnets": resnets_default,
        "requested_attentions": attn_default,
        "reference": {
            "source_latent": "VAE posterior mean x scaling factor [1, 4, 8, 8]",
            "inversion": "[T, 1, 4, 8, 8]: inversion[i] is the inverted latent at timesteps[i] (inversion[0] = x_T)",
            "sampled": "[T, 1, 4, 8, 8]: the latent after sampling step i",
            "final_latent": "[1, 4, 8, 8] = sampled[T - 1]",
            "text.*": "CLIP text embeddings [1, 77, 32] of the inversion / source (\"\") / negative / prompt",
        },
        "adapter_unet_self_check_rel_err": check,
        "versions": {"torch": torch.__version__, "diffusers": diffusers.__version__,
                     "transformers": transformers.__version__, "torch_threads": 1},
    }
    with open(os.path.join(args.out, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
        f.write("\n")
    print(f"timesteps {timesteps}; injection: resnets {n_res} steps, attention {n_attn} steps")
    print(f"injected resnets {used_res}")
    print(f"injected attentions {used_attn}")
    print(f"source latent max |.| {latent.abs().max().item():.4e}; x_T max |.| "
          f"{inversion[0].abs().max().item():.4e}; final max |.| {final.abs().max().item():.4e}")
    print(f"wrote {args.out}/inputs.safetensors, reference.safetensors, case.json")


if __name__ == "__main__":
    main()
