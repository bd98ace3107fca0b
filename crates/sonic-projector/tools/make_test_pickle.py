#!/usr/bin/env python3
"""Generates the test data of `sonic-projector` (crates/sonic-projector/tests/data/).

Everything is produced with PyTorch's own modules (nn.Conv1d, nn.ConvTranspose1d,
nn.LayerNorm over two dims, nn.Linear, exact GELU) laid out exactly as the official
SonicDiffusion `Adapter` (ldm/modules/encoders/audio_projector_res.py), so the key names
are the release's.

Writes:
    sonic_tiny_projector.pth
        The sonic-tiny fixture's projector.safetensors as a torch state-dict pickle
        (`torch.save(dict)`, float32, the same format as the released
        `audio_projector_*.pth`). Before writing, the script loads it into its own torch
        `Adapter` and checks the fixture's reference output bit for bit, which validates the
        module layout used for the variant below.
    mismatched_projector.pth
        A small state dict that does not fit the tiny projector: one shape mismatch, one
        unexpected key, everything else missing (for the error-path tests).
    variant64/
        A projector of another shape (64 audio tokens, audio_dim 40 -> context 30,
        3 heads x 8, 3 layers) in the fixture layout: config.json (section `projector`),
        projector.safetensors (float16, so the file is small and the f16 -> f32 cast path is
        exercised; the reference is computed from the same f16 values in float32),
        projector.pth (the same weights as a float16 torch pickle), and
        reference/{cases.json, tensors.safetensors} with a batch-3 faithful case (all
        intermediates) and a chained-mode case (`"mode": "chained"`).

Run from the workspace root with the torch venv:

    /var/tmp/torch-venv/bin/python crates/sonic-projector/tools/make_test_pickle.py

Options: --fixtures DIR (default $SONIC_FIXTURES or ../shared/fixtures), --out DIR
(default crates/sonic-projector/tests/data). Deterministic: torch runs on the CPU with one
thread from a fixed seed.
"""

import argparse
import json
import math
import os
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

torch.set_num_threads(1)


class SelfAttention(nn.Module):
    """`MyCrossAttention` of the release: self-attention without output projection."""

    def __init__(self, context_dim, heads, dim_head):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.to_q_adapter = nn.Linear(context_dim, inner, bias=False)
        self.to_k_adapter = nn.Linear(context_dim, inner, bias=False)
        self.to_v_adapter = nn.Linear(context_dim, inner, bias=False)

    def forward(self, x):
        b, n, _ = x.shape
        h = self.heads

        def split(t):
            return t.reshape(b, n, h, -1).permute(0, 2, 1, 3).reshape(b * h, n, -1)

        q, k, v = (split(f(x)) for f in (self.to_q_adapter, self.to_k_adapter, self.to_v_adapter))
        sim = torch.einsum("bid,bjd->bij", q, k) * self.scale
        out = torch.einsum("bij,bjd->bid", sim.softmax(dim=-1), v)
        return out.reshape(b, h, n, -1).permute(0, 2, 1, 3).reshape(b, n, -1)


class Adapter(nn.Module):
    """The official projector layout, sizes as arguments."""

    def __init__(self, audio_dim, tokens, heads, dim_head, layers, kernel=17):
        super().__init__()
        t = tokens
        up_len = (audio_dim - 1) * 3 - 2 * 7 + kernel
        context_dim = (up_len + 2 * 7 - kernel) // 4 + 1
        self.context_dim = context_dim
        inner = heads * dim_head
        self.audio_emb_projection = nn.Sequential(
            nn.Conv1d(1, t, kernel_size=kernel, stride=1, padding=8),
            nn.GELU(),
            nn.Conv1d(t, t, kernel_size=kernel, stride=1, padding=8),
            nn.GELU(),
            nn.LayerNorm([t, audio_dim]),
            nn.Conv1d(t, t, kernel_size=kernel, stride=1, padding=8),
            nn.GELU(),
            nn.LayerNorm([t, audio_dim]),
            nn.ConvTranspose1d(t, t, kernel_size=kernel, stride=3, padding=7),
            nn.GELU(),
            nn.LayerNorm([t, up_len]),
            nn.GELU(),
            nn.Conv1d(t, t, kernel_size=kernel, stride=4, padding=7),
            nn.Dropout(0.0),
        )
        self.cross_attention = nn.ModuleList(
            [SelfAttention(context_dim, heads, dim_head) for _ in range(layers)]
        )
        self.between_attention = nn.ModuleList(
            [
                nn.Sequential(
                    nn.Linear(inner, inner), nn.GELU(), nn.Linear(inner, context_dim), nn.Dropout(0.0)
                )
                for _ in range(layers)
            ]
        )
        self.to_out_adapter = nn.Sequential(nn.Linear(context_dim, context_dim), nn.Dropout(0.0))

    def forward(self, embeddings, chained=False):
        """Returns (output, intermediates dict) for [B, audio_dim] embeddings."""
        inter = {}
        x = embeddings.unsqueeze(1)
        for i, layer in enumerate(self.audio_emb_projection):
            x = layer(x)
            inter[f"emb_projection.{i}"] = x
        proj = x
        h = proj
        out = None
        for i, (attn, between) in enumerate(zip(self.cross_attention, self.between_attention)):
            src = h if chained else proj
            a = attn(src)
            out = between(a) + src
            inter[f"block.{i}.attn"] = a
            inter[f"block.{i}.out"] = out
            h = out
        return self.to_out_adapter(out), inter


def check_tiny(fixtures: Path):
    """Loads the tiny fixture into this script's Adapter and checks the reference output."""
    cfg = json.loads((fixtures / "sonic-tiny" / "config.json").read_text())["projector"]
    sd = load_file(fixtures / "sonic-tiny" / "projector.safetensors")
    model = Adapter(cfg["audio_dim"], cfg["tokens"], cfg["heads"], cfg["dim_head"], cfg["layers"])
    model.load_state_dict(sd, strict=True)
    model.eval()
    ref = load_file(fixtures / "sonic-tiny" / "reference" / "tensors.safetensors")
    with torch.no_grad():
        out, inter = model(ref["projector.embeddings"])
    diff = (out - ref["projector.out"]).abs().max().item()
    worst = max(
        (inter[k] - ref[f"projector.inter.{k}"]).abs().max().item()
        for k in inter
        if f"projector.inter.{k}" in ref
    )
    print(f"sonic-tiny self-check: out max|diff| = {diff:.3g}, intermediates {worst:.3g}")
    assert diff < 1e-6 and worst < 1e-6, "this script's Adapter does not match the fixture"
    return sd


def main():
    here = Path(__file__).resolve().parent
    default_fixtures = os.environ.get("SONIC_FIXTURES") or str(here.parents[2] / ".." / "shared" / "fixtures")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--fixtures", default=default_fixtures)
    ap.add_argument("--out", default=str(here.parent / "tests" / "data"))
    args = ap.parse_args()
    fixtures = Path(args.fixtures).resolve()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    # 1. The tiny projector as a state-dict pickle.
    sd = check_tiny(fixtures)
    torch.save({k: v.contiguous() for k, v in sorted(sd.items())}, out / "sonic_tiny_projector.pth")

    # 2. A pickle that does not fit the tiny projector.
    bad = {
        "to_out_adapter.0.weight": torch.zeros(32, 32),
        "to_out_adapter.0.bias": torch.zeros(31),
        "audio_emb_projection.3.weight": torch.zeros(2),
    }
    torch.save(bad, out / "mismatched_projector.pth")

    # 3. A projector of another shape, with references.
    torch.manual_seed(64)
    audio_dim, tokens, heads, dim_head, layers = 40, 64, 3, 8, 3
    model = Adapter(audio_dim, tokens, heads, dim_head, layers)
    with torch.no_grad():
        for name, p in model.named_parameters():
            # Non-trivial norms and larger attention weights, so every parameter matters.
            if name.startswith("audio_emb_projection.") and name.split(".")[1] in ("4", "7", "10"):
                p.add_(0.2 * torch.randn_like(p))
            elif "_adapter." in name and "to_out" not in name:
                p.mul_(3.0)
        # Round every weight to float16 so the f16 files hold exactly the values used.
        half = {k: v.detach().to(torch.float16) for k, v in model.state_dict().items()}
        model.load_state_dict({k: v.float() for k, v in half.items()}, strict=True)
    model.eval()
    var_dir = out / "variant64"
    (var_dir / "reference").mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in half.items()}, var_dir / "projector.safetensors")
    torch.save({k: v.contiguous() for k, v in sorted(half.items())}, var_dir / "projector.pth")
    emb = torch.randn(3, audio_dim)
    emb = emb / emb.norm(dim=-1, keepdim=True)
    emb[2] = 0.0
    tensors = {"projector.embeddings": emb.contiguous()}
    keep = [f"emb_projection.{i}" for i in (0, 4, 8, 10, 12, 13)]
    keep += [f"block.{i}.{w}" for i in range(layers) for w in ("attn", "out")]
    cases = []
    with torch.no_grad():
        for mode in ("faithful", "chained"):
            o, inter = model(emb, chained=(mode == "chained"))
            tensors[f"projector.{mode}.out"] = o.clone().contiguous()
            names = {}
            # The projection stage is the same in both modes: the chained case keeps blocks only.
            for k in keep if mode == "faithful" else [k for k in keep if k.startswith("block.")]:
                tensors[f"projector.{mode}.inter.{k}"] = inter[k].clone().contiguous()
                names[k] = f"projector.{mode}.inter.{k}"
            cases.append(
                {
                    "mode": mode,
                    "rows": ["random unit vector", "random unit vector", "null embedding zeros(audio_dim)"],
                    "embeddings": "projector.embeddings",
                    "input_layout": "embeddings.unsqueeze(1) -> [B, 1, audio_dim]",
                    "out": f"projector.{mode}.out",
                    "intermediates": names,
                }
            )
    save_file(tensors, var_dir / "reference" / "tensors.safetensors")
    for f in var_dir.rglob("*"):
        if f.is_file():
            f.chmod(0o644)
    cases_json = {
        "_doc": {
            "about": "Generated by crates/sonic-projector/tools/make_test_pickle.py in the schema "
            "of the fixtures' projector section; `mode` selects faithful (official) or chained "
            "blocks. Weights are float16 values; outputs float32 from torch on the CPU.",
        },
        "versions": {"torch": torch.__version__, "torch_threads": 1},
        "projector": cases,
        "tensors": {k: {"shape": list(v.shape), "dtype": "float32"} for k, v in sorted(tensors.items())},
    }
    (var_dir / "reference" / "cases.json").write_text(json.dumps(cases_json, indent=1) + "\n")
    config = {
        "projector": {
            "audio_dim": audio_dim,
            "tokens": tokens,
            "context_dim": model.context_dim,
            "heads": heads,
            "dim_head": dim_head,
            "layers": layers,
            "inner_dim": heads * dim_head,
            "initial_channel_dim": 1,
            "kernel_size": 17,
            "layer_norm_eps": 1e-05,
            "gelu": "exact (erf)",
            "attention_scale": dim_head ** -0.5,
            "context_dim_rule": "floor((3 * audio_dim - 3) / 4) + 1",
        }
    }
    (var_dir / "config.json").write_text(json.dumps(config, indent=1) + "\n")
    print(f"wrote {out} (variant context_dim {model.context_dim}, "
          f"{sum(p.numel() for p in model.parameters())} parameters)")
    assert model.context_dim == math.floor((3 * audio_dim - 3) / 4) + 1


if __name__ == "__main__":
    main()
