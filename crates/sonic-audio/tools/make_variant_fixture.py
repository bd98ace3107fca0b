"""Writes tests/data/variant/: a small sonic-format fixture for an MS-CLAP audio encoder with
other Cnn14 widths, other input rates (48 kHz and 32 kHz, so torchaudio downsamples and
upsamples), 3 channels, 16- and 24-bit WAVs and a 1 s clip length, checked by
tests/parity_variant.rs with the same runners as the sonic-tiny fixture.

The checkpoint deliberately omits the torchlibrosa constants (STFT kernels, melW), so the
Rust side computes them. Also writes tests/data/clap_variant.pth: the same weights as the
official CLAP_weights_2022.pth lays them out (a `model` dict holding `audio_encoder.*`, a
fake `caption_encoder.*` and `logit_scale`, next to other top-level entries), with the
caption tensors' bytes corrupted in place, so that reading any of them would fail the load.

Needs torch, torchaudio (same CUDA build as torch), torchlibrosa, librosa, soundfile,
safetensors:
    python tools/make_variant_fixture.py
"""

import json
import math
import os
import random
import zipfile

import numpy as np
import soundfile as sf
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchaudio
from safetensors.torch import save_file
from torchlibrosa.stft import LogmelFilterBank, Spectrogram

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "tests", "data")
OUT = os.path.join(DATA, "variant")

SR = 44100
CLIP = 44100  # 1 s clips
WIDTHS = [4, 8, 12, 16, 24, 32]
OUT_EMB = 20
CLASSES = 5
D_PROJ = 12


# --- msclap.models.audio (Cnn14, ConvBlock) and msclap.models.clap.Projection -------------
class ConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1, bias=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.bn2 = nn.BatchNorm2d(cout)

    def forward(self, x, pool_size=(2, 2)):
        x = F.relu_(self.bn1(self.conv1(x)))
        x = F.relu_(self.bn2(self.conv2(x)))
        return F.avg_pool2d(x, kernel_size=pool_size)


class Cnn14(nn.Module):
    def __init__(self):
        super().__init__()
        self.spectrogram_extractor = Spectrogram(n_fft=1024, hop_length=320, win_length=1024,
                                                 window="hann", center=True, pad_mode="reflect",
                                                 freeze_parameters=True)
        self.logmel_extractor = LogmelFilterBank(sr=SR, n_fft=1024, n_mels=64, fmin=50,
                                                 fmax=14000, ref=1.0, amin=1e-10, top_db=None,
                                                 freeze_parameters=True)
        self.bn0 = nn.BatchNorm2d(64)
        cins = [1] + WIDTHS[:-1]
        for i, (a, b) in enumerate(zip(cins, WIDTHS)):
            setattr(self, f"conv_block{i + 1}", ConvBlock(a, b))
        self.fc1 = nn.Linear(WIDTHS[-1], OUT_EMB, bias=True)
        self.fc_audioset = nn.Linear(OUT_EMB, CLASSES, bias=True)

    def forward(self, x, taps):
        x = self.spectrogram_extractor(x)
        taps["spectrogram"] = x
        x = self.logmel_extractor(x)
        taps["logmel"] = x
        x = self.bn0(x.transpose(1, 3)).transpose(1, 3)
        taps["bn0"] = x
        for i in range(1, 7):
            x = getattr(self, f"conv_block{i}")(x, pool_size=(2, 2) if i < 6 else (1, 1))
            taps[f"conv_block{i}"] = x
        x = torch.mean(x, dim=3)
        x = torch.max(x, dim=2)[0] + torch.mean(x, dim=2)
        taps["pooled"] = x
        x = self.fc1(x)
        taps["fc1_preact"] = x.clone()
        x = F.relu_(x)
        taps["embedding"] = x
        taps["clipwise_output"] = torch.sigmoid(self.fc_audioset(x))
        return x


class Projection(nn.Module):
    def __init__(self, d_in, d_out):
        super().__init__()
        self.linear1 = nn.Linear(d_in, d_out, bias=False)
        self.linear2 = nn.Linear(d_out, d_out, bias=False)
        self.layer_norm = nn.LayerNorm(d_out)

    def forward(self, x):
        e1 = self.linear1(x)
        return self.layer_norm(e1 + self.linear2(F.gelu(e1)))


class AudioEncoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.base = Cnn14()
        self.projection = Projection(OUT_EMB, D_PROJ)


def randomize(model, g):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "extractor" in name:
                continue
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.dim() > 1 else 0.2)
                    + (1.0 if name.endswith("weight") and p.dim() == 1 else 0.0))
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=g) * 0.3)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=g) + 0.5)
    # logmel values are large negatives: centre bn0 on them
    with torch.no_grad():
        model.base.bn0.running_mean.add_(-40.0)
        model.base.bn0.running_var.mul_(100.0)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    g = torch.Generator().manual_seed(7)
    enc = AudioEncoder().eval()
    randomize(enc, g)
    sd = {f"audio_encoder.{k}": v.contiguous() for k, v in enc.state_dict().items()
          if "extractor" not in k}
    save_file(sd, os.path.join(OUT, "clap.safetensors"))

    rng = np.random.default_rng(3)
    specs = {
        # id: (rate, channels, seconds, subtype)
        "p": (48000, 1, 0.6, "PCM_16"),
        "q": (32000, 2, 1.6, "PCM_16"),
        "r": (44100, 3, 0.5, "PCM_24"),
    }
    tensors, clips, resample_cases, repeat_cases = {}, {}, [], []
    inputs = []
    for cid, (rate, ch, secs, subtype) in specs.items():
        n = int(rate * secs)
        t = np.arange(n) / rate
        x = np.stack([0.3 * np.sin(2 * np.pi * (300 + 170 * c) * t) + 0.05 * rng.standard_normal(n)
                      for c in range(ch)], axis=1).clip(-0.95, 0.95)
        wav = f"reference/clip_{cid}.wav"
        os.makedirs(os.path.join(OUT, "reference"), exist_ok=True)
        sf.write(os.path.join(OUT, wav), x, rate, subtype=subtype)
        # What torchaudio.load gives (int PCM / 2^(bits-1), float32), read with libsndfile.
        data, sr = sf.read(os.path.join(OUT, wav), dtype="float32", always_2d=True)
        samples = torch.from_numpy(np.ascontiguousarray(data.T))  # [C, N]
        assert sr == rate
        mono = torch.mean(samples, dim=0, keepdim=True)
        tensors[f"wav.{cid}.samples"] = samples
        tensors[f"wav.{cid}.mono"] = mono
        entry = {"wav": wav, "sample_rate": rate, "channels": ch, "frames": n,
                 "samples": f"wav.{cid}.samples", "mono": f"wav.{cid}.mono", "resample": None}
        y = mono
        if rate != SR:
            rs = torchaudio.transforms.Resample(rate, SR)
            y = rs(mono)
            gcd = math.gcd(rate, SR)
            keep_kernel = rate == 48000  # the 32 kHz kernel (590 kB) is checked through its output
            if keep_kernel:
                tensors[f"resample.{rate}_{SR}.kernel"] = rs.kernel
            tensors[f"wav.{cid}.resampled"] = y
            params = {"lowpass_filter_width": 6, "rolloff": 0.99,
                      "resampling_method": "sinc_interp_hann", "gcd": gcd, "width": rs.width}
            kernel = {"kernel": f"resample.{rate}_{SR}.kernel"} if keep_kernel else {}
            entry["resample"] = dict(orig_freq=rate, new_freq=SR, output=f"wav.{cid}.resampled",
                                     **kernel, **params)
            resample_cases.append(dict({"clip": cid, "orig_freq": rate, "new_freq": SR, "params": params,
                                        "input": f"wav.{cid}.mono", "output": f"wav.{cid}.resampled"},
                                       **kernel))
        y = y[0]
        if CLIP >= y.shape[0]:
            factor = int(np.ceil(CLIP / y.shape[0]))
            fitted = y.repeat(factor)[:CLIP]
            entry["fit"] = {"mode": "repeat", "repeat_factor": factor, "length_before": y.shape[0]}
            if rate == SR:
                repeat_cases.append({"clip": cid, "input": f"wav.{cid}.mono", "repeat_factor": factor,
                                     "output": f"wav.{cid}.clap_input"})
        else:
            start = random.Random(5).randrange(y.shape[0] - CLIP)
            fitted = y[start:start + CLIP]
            entry["fit"] = {"mode": "crop", "crop_start": start, "length_before": y.shape[0]}
        tensors[f"wav.{cid}.clap_input"] = fitted[None]
        entry["clap_input"] = f"wav.{cid}.clap_input"
        clips[cid] = entry
        inputs.append(fitted)

    batch = torch.stack(inputs)
    taps = {}
    with torch.no_grad():
        emb = enc.base(batch, taps)
        proj = enc.projection(emb)
        l2 = proj / torch.norm(proj, dim=-1, keepdim=True)
        l2x2 = l2 / torch.norm(l2, dim=-1, keepdim=True)
        # front end on the first clip only (keeps the fixture small)
        fe = {}
        enc.base(batch[:1], fe)
        pin = torch.randn(3, OUT_EMB, generator=g)
        pout = enc.projection(pin)
    for k in ["spectrogram", "logmel", "bn0"]:
        tensors[f"clap.fe.{k}"] = fe[k]
    for k in ["bn0"] + [f"conv_block{i}" for i in range(1, 7)] + ["pooled", "fc1_preact", "embedding",
                                                                   "clipwise_output"]:
        tensors[f"clap.cnn14.{k}"] = fe[k]
    tensors["clap.e2e.cnn14_embedding"] = emb
    tensors["clap.e2e.clipwise_output"] = taps["clipwise_output"]
    tensors["clap.e2e.projection"] = proj
    tensors["clap.e2e.embedding_l2"] = l2
    tensors["clap.e2e.embedding_l2x2"] = l2x2
    tensors["clap.projection.input"] = pin
    tensors["clap.projection.out"] = pout

    ids = list(specs)
    cases = {
        "_doc": {"about": "sonic-audio variant fixture (tools/make_variant_fixture.py): Cnn14 widths "
                          f"{WIDTHS}, out_emb {OUT_EMB}, d_proj {D_PROJ}, 1 s clips; same schema as sonic-tiny"},
        "audio_clips": clips,
        "resample": resample_cases,
        "repeat_pad": repeat_cases,
        "clap_frontend": [{"clips": ids[:1], "inputs": [f"wav.{ids[0]}.clap_input"],
                           "spectrogram": "clap.fe.spectrogram", "logmel": "clap.fe.logmel", "bn0": "clap.fe.bn0"}],
        "clap_cnn14": [dict({"clips": ids[:1], "inputs": [f"wav.{ids[0]}.clap_input"]},
                            **{k: f"clap.cnn14.{k}" for k in ["bn0"] + [f"conv_block{i}" for i in range(1, 7)]
                               + ["pooled", "fc1_preact", "embedding", "clipwise_output"]})],
        "clap_projection": [{"input": "clap.projection.input", "out": "clap.projection.out"}],
        "clap_e2e": [{"clips": ids, "inputs": [f"wav.{c}.clap_input" for c in ids],
                      "cnn14_embedding": "clap.e2e.cnn14_embedding", "clipwise_output": "clap.e2e.clipwise_output",
                      "projection": "clap.e2e.projection", "embedding_l2": "clap.e2e.embedding_l2",
                      "embedding_l2x2": "clap.e2e.embedding_l2x2"}],
    }
    with open(os.path.join(OUT, "reference", "cases.json"), "w") as f:
        json.dump(cases, f, indent=1)
    save_file({k: v.detach().clone().contiguous().float() for k, v in tensors.items()},
              os.path.join(OUT, "reference", "tensors.safetensors"))
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump({"clap": {"sampling_rate": SR, "clip_samples": CLIP, "window_size": 1024, "hop_size": 320,
                            "mel_bins": 64, "fmin": 50, "fmax": 14000}}, f, indent=1)

    # The official checkpoint layout, as a torch pickle.
    model = dict(sd)
    model["caption_encoder.base.embeddings.word_embeddings.weight"] = torch.full((300, 16), 7.0)
    model["caption_encoder.projection.linear1.weight"] = torch.full((12, 16), 7.0)
    model["logit_scale"] = torch.tensor(2.5)
    pth = os.path.join(DATA, "clap_variant.pth")
    torch.save({"model": model, "epoch": 7, "optimizer": {"lr": 1e-4}}, pth)
    # Corrupt the caption tensors' storages in place (same length, CRC left stale): any read
    # of them fails, so a successful load proves they were never materialised.
    marker = np.full(16, 7.0, dtype=np.float32).tobytes()
    blob = bytearray(open(pth, "rb").read())
    hits = 0
    pos = blob.find(marker)
    while pos != -1:
        end = pos
        while blob[end:end + 4] == marker[:4]:
            end += 4
        blob[pos:end] = b"\xff" * (end - pos)
        hits += 1
        pos = blob.find(marker, end)
    assert hits >= 2, hits
    open(pth, "wb").write(bytes(blob))
    with zipfile.ZipFile(pth) as z:
        bad = z.testzip()
        assert bad is not None, "expected a corrupted caption storage"
    print("wrote", OUT, "and", pth, "corrupted storages:", hits)


if __name__ == "__main__":
    main()
