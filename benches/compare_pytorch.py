"""The PyTorch side of `benches/compare_pytorch`: one case per process, one JSON line out.

Same cases, shapes and timing rules as `sonic bench` (crates/sonic-cli/src/bench.rs): random
weights at SD 1.x sizes (diffusers / transformers default initialisation), `warmup` untimed
runs, then `runs` timed ones; the median and minimum are reported, with the process's peak
resident set size (VmHWM). The CLAP audio tower and the audio projector are written here in
plain torch with the architecture of crates/sonic-audio and crates/sonic-projector (the
official MS-CLAP Cnn14 + projection and the official SonicDiffusion `Adapter`); the gated
adapters are added to diffusers' transformer blocks the way the official release places them.
"""

import argparse
import json
import math
import os
import statistics
import sys
import time
import types

import torch
import torch.nn as nn
import torch.nn.functional as F

SD14_UNET = dict(
    act_fn="silu", attention_head_dim=8, block_out_channels=[320, 640, 1280, 1280],
    center_input_sample=False, cross_attention_dim=768,
    down_block_types=["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"],
    downsample_padding=1, flip_sin_to_cos=True, freq_shift=0, in_channels=4,
    layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-5, norm_num_groups=32,
    out_channels=4, sample_size=64,
    up_block_types=["UpBlock2D"] + ["CrossAttnUpBlock2D"] * 3,
)
SD14_VAE = dict(
    act_fn="silu", block_out_channels=[128, 256, 512, 512],
    down_block_types=["DownEncoderBlock2D"] * 4, in_channels=3, latent_channels=4,
    layers_per_block=2, norm_num_groups=32, out_channels=3, sample_size=512,
    up_block_types=["UpDecoderBlock2D"] * 4,
)
SD14_SCHEDULER = dict(
    beta_end=0.012, beta_schedule="scaled_linear", beta_start=0.00085,
    num_train_timesteps=1000, set_alpha_to_one=False, skip_prk_steps=True, steps_offset=1,
)


def sd14_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel
    cfg = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072,
                         num_attention_heads=12, num_hidden_layers=12,
                         max_position_embeddings=77, hidden_act="quick_gelu",
                         layer_norm_eps=1e-5)
    return CLIPTextModel(cfg)


def write_test_wav(path, seconds=10.0):
    """The signal of `sonic bench`'s audio case: a rising tone with a little noise, 16-bit
    mono 44.1 kHz."""
    import wave
    n = int(seconds * 44100)
    t = torch.arange(n, dtype=torch.float64) / 44100.0
    tone = torch.sin(2 * math.pi * (200.0 + 100.0 * t) * t) * 0.5
    noise = (torch.rand(n, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
             - 0.5) * 0.1
    pcm = ((tone + noise) * 32767.0).to(torch.int16)
    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(44100)
        w.writeframes(pcm.numpy().tobytes())


def read_wav_mono(path):
    import wave
    with wave.open(path, "rb") as w:
        raw = w.readframes(w.getnframes())
    return torch.frombuffer(bytearray(raw), dtype=torch.int16).to(torch.float32) / 32768.0


def peak_rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("/proc/self/status has no VmHWM line")


CPU_TIMES = []


def time_runs(runs, warmup, fn):
    """Wall seconds per timed run; the CPU seconds (all threads) go to CPU_TIMES."""
    with torch.inference_mode():
        for _ in range(warmup):
            fn()
        times = []
        CPU_TIMES.clear()
        for _ in range(runs):
            time_one(fn, times, CPU_TIMES)
    return times


def time_one(fn, times, cpu_times):
    c0 = time.process_time()
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
    cpu_times.append(time.process_time() - c0)


def time_alternating(runs, warmup, a, b):
    """Wall seconds of `a` and of `b`, timed in alternation (every other pair in the other
    order) so that neither is favoured by coming first; `b`'s CPU seconds go to CPU_TIMES."""
    with torch.inference_mode():
        for _ in range(warmup):
            a()
            b()
        ta, tb, ca = [], [], []
        CPU_TIMES.clear()
        for run in range(runs):
            pair = [(a, ta, ca), (b, tb, CPU_TIMES)]
            for fn, times, cpu in (pair if run % 2 == 0 else pair[::-1]):
                time_one(fn, times, cpu)
    return ta, tb


# --- CLAP audio tower (MS-CLAP 2022: torchlibrosa front end, Cnn14, projection) -----------

def hann_periodic(n):
    k = torch.arange(n, dtype=torch.float64)
    return 0.5 - 0.5 * torch.cos(2 * math.pi * k / n)


class ConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x, pool):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        if pool != (1, 1):
            x = F.avg_pool2d(x, pool)
        return x


class ClapAudio(nn.Module):
    def __init__(self, n_fft=1024, hop=320, mel_bins=64, widths=(64, 128, 256, 512, 1024, 2048),
                 out_emb=2048, d_proj=1024):
        super().__init__()
        self.n_fft, self.hop = n_fft, hop
        bins = n_fft // 2 + 1
        # STFT as a strided convolution with windowed DFT kernels (as torchlibrosa).
        w = hann_periodic(n_fft)
        k = torch.arange(bins, dtype=torch.float64)[:, None] * torch.arange(n_fft)[None, :]
        ang = 2 * math.pi * k / n_fft
        real = (torch.cos(ang) * w).float()
        imag = (-torch.sin(ang) * w).float()
        self.register_buffer("kernel", torch.cat([real, imag], 0)[:, None, :])
        self.register_buffer("mel_w", torch.rand(bins, mel_bins) * 0.01)
        self.bn0 = nn.BatchNorm2d(mel_bins)
        cins = (1,) + tuple(widths[:-1])
        self.blocks = nn.ModuleList([ConvBlock(a, b) for a, b in zip(cins, widths)])
        self.fc1 = nn.Linear(widths[-1], out_emb)
        self.linear1 = nn.Linear(out_emb, d_proj, bias=False)
        self.linear2 = nn.Linear(d_proj, d_proj, bias=False)
        self.layer_norm = nn.LayerNorm(d_proj)

    def forward(self, wave):
        b, n = wave.shape
        pad = self.n_fft // 2
        x = F.pad(wave[:, None, :], (pad, pad), mode="reflect")
        y = F.conv1d(x, self.kernel, stride=self.hop)
        bins = self.n_fft // 2 + 1
        power = y[:, :bins] ** 2 + y[:, bins:] ** 2  # [B, F, T]
        spec = power.transpose(1, 2)  # [B, T, F]
        mel = spec @ self.mel_w
        x = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))[:, None]  # [B, 1, T, M]
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        for i, blk in enumerate(self.blocks):
            x = blk(x, (2, 2) if i < 5 else (1, 1))
        x = x.mean(dim=3)
        x = x.max(dim=2).values + x.mean(dim=2)
        e = F.relu(self.fc1(x))
        e1 = self.linear1(e)
        e2 = self.linear2(F.gelu(e1))
        p = self.layer_norm(e1 + e2)
        p = F.normalize(p, dim=-1)
        return F.normalize(p, dim=-1)


# --- the official SonicDiffusion audio projector (`Adapter(77, 4)`) ---------------------------

class Projector(nn.Module):
    def __init__(self, audio_dim=1024, tokens=77, heads=8, dim_head=40, layers=4, ctx=768):
        super().__init__()
        t, k = tokens, 17
        self.audio_emb_projection = nn.Sequential(
            nn.Conv1d(1, t, k, padding=8), nn.GELU(), nn.Conv1d(t, t, k, padding=8), nn.GELU(),
            nn.LayerNorm([t, audio_dim]), nn.Conv1d(t, t, k, padding=8), nn.GELU(),
            nn.LayerNorm([t, audio_dim]),
            nn.ConvTranspose1d(t, t, k, stride=3, padding=7), nn.GELU(),
            nn.LayerNorm([t, 3 * audio_dim]), nn.GELU(),
            nn.Conv1d(t, t, k, stride=4, padding=7), nn.Dropout(0.1),
        )
        inner = heads * dim_head
        self.heads = heads
        self.q = nn.ModuleList([nn.Linear(ctx, inner, bias=False) for _ in range(layers)])
        self.k = nn.ModuleList([nn.Linear(ctx, inner, bias=False) for _ in range(layers)])
        self.v = nn.ModuleList([nn.Linear(ctx, inner, bias=False) for _ in range(layers)])
        self.between = nn.ModuleList([
            nn.Sequential(nn.Linear(inner, inner), nn.GELU(), nn.Linear(inner, ctx))
            for _ in range(layers)
        ])
        self.to_out = nn.Linear(ctx, ctx)

    def forward(self, e):
        x = self.audio_emb_projection(e[:, None, :])  # [B, 77, 768]
        out = x
        # The official loop: every block from the projection output, only the last kept.
        for q, k, v, mlp in zip(self.q, self.k, self.v, self.between):
            b, n, _ = x.shape
            split = lambda t: t.view(b, n, self.heads, -1).transpose(1, 2)
            a = F.scaled_dot_product_attention(split(q(x)), split(k(x)), split(v(x)))
            a = a.transpose(1, 2).reshape(b, n, -1)
            out = x + mlp(a)
        return self.to_out(out)


# --- gated adapters on diffusers' BasicTransformerBlock ----------------------------------------

def add_adapters(unet, ctx_dim=768):
    from diffusers.models.attention_processor import Attention

    blocks = []
    for part in [unet.mid_block] + list(unet.up_blocks):
        for attn in getattr(part, "attentions", []) or []:
            blocks.extend(attn.transformer_blocks)
    for blk in blocks:
        dim = blk.norm1.normalized_shape[0]
        heads = blk.attn1.heads
        blk.norm_adapter = nn.LayerNorm(dim)
        blk.attn_adapter = Attention(dim, cross_attention_dim=ctx_dim, heads=heads,
                                     dim_head=dim // heads, bias=False, out_bias=True)
        blk.gate_adapter = nn.Parameter(torch.tensor([0.5]))
        blk.audio_tokens = None

        def forward(self, hidden_states, attention_mask=None, encoder_hidden_states=None,
                    encoder_attention_mask=None, timestep=None, cross_attention_kwargs=None,
                    class_labels=None, added_cond_kwargs=None, **kw):
            h = hidden_states
            h = self.attn1(self.norm1(h)) + h
            h = self.attn2(self.norm2(h), encoder_hidden_states=encoder_hidden_states) + h
            if self.audio_tokens is not None:
                a = self.attn_adapter(self.norm_adapter(h), encoder_hidden_states=self.audio_tokens)
                h = h + torch.tanh(self.gate_adapter) * a
            return self.ff(self.norm3(h)) + h

        blk.forward = types.MethodType(forward, blk)
    return blocks


def cast(model, dtype):
    return model.to(dtype).eval()


def run_case(case, runs, warmup, dtype, fixtures, model=None):
    torch.manual_seed(0)
    extra = {}
    if case in ("unet-32", "unet-64"):
        from diffusers import UNet2DConditionModel
        L = 32 if case == "unet-32" else 64
        unet = cast(UNet2DConditionModel(**SD14_UNET), dtype)
        x = torch.randn(2, 4, L, L, dtype=dtype)
        ctx = torch.randn(2, 77, 768, dtype=dtype)
        t = torch.tensor(981)
        times = time_runs(runs, warmup, lambda: unet(x, t, encoder_hidden_states=ctx).sample)
    elif case == "vae-decode-64":
        from diffusers import AutoencoderKL
        vae = cast(AutoencoderKL(**SD14_VAE), dtype)
        z = torch.randn(1, 4, 64, 64, dtype=dtype)
        times = time_runs(runs, warmup, lambda: vae.decode(z).sample)
    elif case == "vae-encode-512":
        from diffusers import AutoencoderKL
        vae = cast(AutoencoderKL(**SD14_VAE), dtype)
        x = (torch.rand(1, 3, 512, 512) * 2 - 1).to(dtype)
        times = time_runs(runs, warmup, lambda: vae.encode(x).latent_dist.mean)
    elif case == "text-encoder":
        model = cast(sd14_text_encoder(), dtype)
        ids = torch.randint(0, 49406, (2, 77))
        ids[:, -1] = 49407
        times = time_runs(runs, warmup, lambda: model(ids)[0])
    elif case == "clap-10s":
        model = cast(ClapAudio(), dtype)
        wave = (torch.rand(1, 441000) - 0.5).to(dtype)
        times = time_runs(runs, warmup, lambda: model(wave))
    elif case == "projector":
        model = cast(Projector(), dtype)
        e = torch.randn(1, 1024, dtype=dtype)
        times = time_runs(runs, warmup, lambda: model(e))
    elif case == "adapters":
        from diffusers import UNet2DConditionModel
        unet = UNet2DConditionModel(**SD14_UNET)
        blocks = add_adapters(unet)
        if len(blocks) != 10:
            raise RuntimeError(f"SD1.4 should get 10 adapters, got {len(blocks)}")
        unet = cast(unet, dtype)
        x = torch.randn(2, 4, 32, 32, dtype=dtype)
        ctx = torch.randn(2, 77, 768, dtype=dtype)
        tokens = torch.randn(2, 77, 768, dtype=dtype)
        t = torch.tensor(981)
        def step(audio):
            for b in blocks:
                b.audio_tokens = audio
            return unet(x, t, encoder_hidden_states=ctx).sample
        # Alternated, so that neither comes first (see `time_alternating`).
        without, times = time_alternating(runs, warmup, lambda: step(None), lambda: step(tokens))
        extra = dict(adapters=len(blocks), latent=32,
                     without_median_s=statistics.median(without), without_min_s=min(without),
                     overhead=statistics.median(times) / statistics.median(without) - 1.0)
    elif case == "tiny-pipeline":
        from diffusers import DDIMScheduler, StableDiffusionPipeline
        d = os.path.join(fixtures, "sd15-tiny")
        pipe = StableDiffusionPipeline.from_pretrained(d, safety_checker=None,
                                                       requires_safety_checker=False,
                                                       torch_dtype=dtype)
        pipe.scheduler = DDIMScheduler.from_config(pipe.scheduler.config)
        pipe.set_progress_bar_config(disable=True)
        prompt = "a photograph of an astronaut riding a horse"
        times = time_runs(runs, warmup, lambda: pipe(
            prompt, num_inference_steps=20, guidance_scale=7.5, output_type="latent",
            generator=torch.Generator().manual_seed(0)).images)
    elif case == "load-sd":
        # The model folder to ready UNet + VAE + text encoder + tokenizer, as diffusers loads a
        # pipeline (no safety checker).
        from diffusers import StableDiffusionPipeline
        if not model:
            raise SystemExit("load-sd needs --model DIR")

        def load():
            pipe = StableDiffusionPipeline.from_pretrained(
                model, safety_checker=None, requires_safety_checker=False,
                torch_dtype=dtype)
            del pipe

        times = time_runs(runs, warmup, load)
        extra = dict(model=model)
    elif case in ("audio-to-image-512", "audio-to-image-512-fast"):
        # The whole wait of `sonic generate --audio clip.wav --steps 10`: read the WAV, CLAP,
        # projector (and its null tokens), 10 PNDM steps of the UNet with the 10 adapters under
        # guidance 7.5 (batch 2), VAE decode to 512x512, as diffusers' pipeline loop does.
        # `-fast`: `generate --fast`'s settings: 4 LCM steps without guidance (batch 1), TAESD
        # (AutoencoderTiny) decode.
        import tempfile
        from diffusers import (AutoencoderKL, AutoencoderTiny, LCMScheduler, PNDMScheduler,
                               UNet2DConditionModel)
        from transformers import CLIPTokenizer
        fast = case.endswith("-fast")
        steps = 4 if fast else 10
        unet = UNet2DConditionModel(**SD14_UNET)
        blocks = add_adapters(unet)
        if len(blocks) != 10:
            raise RuntimeError(f"SD1.4 should get 10 adapters, got {len(blocks)}")
        unet = cast(unet, dtype)
        vae = cast(AutoencoderTiny() if fast else AutoencoderKL(**SD14_VAE), dtype)
        scaling = 1.0 if fast else 0.18215
        text = cast(sd14_text_encoder(), dtype)
        tok = CLIPTokenizer.from_pretrained(os.path.join(fixtures, "sd15-tiny", "tokenizer"))
        clap = cast(ClapAudio(), dtype)
        proj = cast(Projector(), dtype)
        sched = PNDMScheduler(**SD14_SCHEDULER)
        if fast:
            # As a diffusers user switches: the model's scheduler config, the LCM class.
            sched = LCMScheduler.from_config(sched.config)
        folder = tempfile.mkdtemp()
        path = os.path.join(folder, "clip.wav")
        write_test_wav(path)

        def run():
            wave = read_wav_mono(path)[None].to(dtype)
            e = clap(wave)
            tokens = proj(e)
            null = proj(torch.zeros_like(e))
            prompts = [""] if fast else ["", ""]
            ids = tok(prompts, padding="max_length", max_length=77, truncation=True,
                      return_tensors="pt").input_ids
            ctx = text(ids)[0]
            for b in blocks:
                b.audio_tokens = tokens if fast else torch.cat([null, tokens])
            sched.set_timesteps(steps)
            gen = torch.Generator().manual_seed(0)
            lat = torch.randn(1, 4, 64, 64, generator=gen)
            lat = (lat * sched.init_noise_sigma).to(dtype)
            for t in sched.timesteps:
                if fast:
                    eps = unet(sched.scale_model_input(lat, t), t, encoder_hidden_states=ctx).sample
                    lat = sched.step(eps, t, lat, generator=gen).prev_sample
                else:
                    inp = sched.scale_model_input(torch.cat([lat, lat]), t)
                    eps = unet(inp, t, encoder_hidden_states=ctx).sample
                    u, c = eps.chunk(2)
                    lat = sched.step(u + 7.5 * (c - u), t, lat).prev_sample
            img = vae.decode(lat / scaling).sample
            return (img / 2 + 0.5).clamp(0, 1)

        times = time_runs(runs, warmup, run)
        extra = dict(steps=steps, adapters=len(blocks))
    else:
        raise SystemExit(f"unknown case {case}")
    out = dict(case=case, impl="pytorch", torch=torch.__version__,
               dtype="bf16" if dtype == torch.bfloat16 else "f32",
               threads=torch.get_num_threads(), runs=len(times),
               median_s=statistics.median(times), min_s=min(times), times_s=times,
               cpu_median_s=statistics.median(CPU_TIMES), peak_rss_bytes=peak_rss_bytes())
    out.update(extra)
    return out


def make_sd14(folder, fixtures):
    """Writes an SD 1.4-shaped model folder with random weights (diffusers' `save_pretrained`,
    safetensors, float32) and sd15-tiny's tokenizer: the input of the `load-sd` case."""
    import shutil
    from diffusers import AutoencoderKL, PNDMScheduler, UNet2DConditionModel
    torch.manual_seed(0)
    tmp = folder + ".partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    UNet2DConditionModel(**SD14_UNET).save_pretrained(os.path.join(tmp, "unet"))
    AutoencoderKL(**SD14_VAE).save_pretrained(os.path.join(tmp, "vae"))
    sd14_text_encoder().save_pretrained(os.path.join(tmp, "text_encoder"))
    shutil.copytree(os.path.join(fixtures, "sd15-tiny", "tokenizer"),
                    os.path.join(tmp, "tokenizer"))
    PNDMScheduler(**SD14_SCHEDULER).save_pretrained(os.path.join(tmp, "scheduler"))
    with open(os.path.join(tmp, "model_index.json"), "w") as f:
        json.dump({"_class_name": "StableDiffusionPipeline",
                   "feature_extractor": [None, None], "safety_checker": [None, None],
                   "requires_safety_checker": False,
                   "scheduler": ["diffusers", "PNDMScheduler"],
                   "text_encoder": ["transformers", "CLIPTextModel"],
                   "tokenizer": ["transformers", "CLIPTokenizer"],
                   "unet": ["diffusers", "UNet2DConditionModel"],
                   "vae": ["diffusers", "AutoencoderKL"]}, f, indent=2)
    os.rename(tmp, folder)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--case")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--dtype", default="f32", choices=["f32", "bf16"])
    p.add_argument("--fixtures", default=os.path.join(os.path.dirname(__file__), "..", "..",
                                                       "shared", "fixtures"))
    p.add_argument("--model", help="the SD folder of the load-sd case")
    p.add_argument("--make-sd14", metavar="DIR",
                   help="write a random SD 1.4-shaped model folder to DIR and exit")
    a = p.parse_args()
    if a.make_sd14:
        make_sd14(a.make_sd14, a.fixtures)
        return 0
    torch.set_num_threads(a.threads)
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    if not a.case:
        p.error("--case is required")
    print(json.dumps(run_case(a.case, a.runs, a.warmup, dtype, a.fixtures, a.model)), flush=True)


if __name__ == "__main__":
    sys.exit(main())
