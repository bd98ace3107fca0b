"""Writes the seed inputs of the file-parser fuzz targets under `fuzz/seeds/<target>/`.

Each seed is a small valid input (libFuzzer mutates from there; small seeds keep each
execution fast). For targets whose first byte picks the parser (`model_configs`,
`train_configs`, `manifest`, `image`) or the step count (`scheduler_config`), the seed starts
with that byte. `decode_audio` and `resample_fit` seeds are written by hand / by
tools/make_ogg_test_media.py and are left alone here.

Run from the workspace root with a Python that has torch, safetensors and Pillow (the fixtures
venv of tools/fixtures/requirements.txt has them):
    python tools/fuzz/make_seeds.py
"""
import io
import json
import os
import struct

import torch
from PIL import Image
from safetensors.torch import save

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
fixtures = os.environ.get("SONIC_FIXTURES", os.path.join(root, "..", "shared", "fixtures"))
seeds = os.path.join(root, "fuzz", "seeds")


def put(target, name, data):
    d = os.path.join(seeds, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def read(*parts):
    with open(os.path.join(*parts), "rb") as f:
        return f.read()


def compact_json(raw):
    """The same config, minified: fewer bytes for the fuzzer to walk."""
    return json.dumps(json.loads(raw), separators=(",", ":")).encode()


# safetensors_header: small files in the dtypes and layouts the loader accepts.
g = torch.Generator().manual_seed(0)
put("safetensors_header", "f32", save({"a.weight": torch.randn(2, 3, generator=g), "a.bias": torch.zeros(3)}))
put("safetensors_header", "bf16_f16", save({
    "x": torch.randn(4, generator=g).to(torch.bfloat16),
    "y": torch.randn(2, 2, generator=g).to(torch.float16),
}))
put("safetensors_header", "scalar_empty", save({"s": torch.tensor(1.5), "e": torch.zeros(0, 4)},
                                              metadata={"format": "pt"}))

# torch_pickle: the zip format (torch >= 1.6), the legacy format, nested state dicts and
# shared / strided storages.
def torch_bytes(obj, **kw):
    buf = io.BytesIO()
    torch.save(obj, buf, **kw)
    return buf.getvalue()


small = {"proj.weight": torch.randn(2, 3, generator=g), "proj.bias": torch.zeros(2)}
put("torch_pickle", "zip_dict", torch_bytes(small))
put("torch_pickle", "legacy_dict", torch_bytes(small, _use_new_zipfile_serialization=False))
base = torch.randn(4, 4, generator=g)
put("torch_pickle", "zip_views", torch_bytes({"t": base.t(), "row": base[1], "h": base.half()}))
put("torch_pickle", "nested_state_dict", torch_bytes({"state_dict": {"w": torch.ones(3)}, "epoch": 3}))

# model_configs: byte 0 picks UNet / VAE / CLIP text / projector.
sd = os.path.join(fixtures, "sd15-tiny")
put("model_configs", "unet", b"\x00" + compact_json(read(sd, "unet", "config.json")))
put("model_configs", "vae", b"\x01" + compact_json(read(sd, "vae", "config.json")))
put("model_configs", "clip_text", b"\x02" + compact_json(read(sd, "text_encoder", "config.json")))
put("model_configs", "projector", b"\x03" + compact_json(read(fixtures, "sonic-tiny", "config.json")))
put("model_configs", "unet_sd21", b"\x00" + compact_json(read(fixtures, "sd21-tiny", "unet", "config.json")))

# scheduler_config: byte 0 is the step count.
for name, folder in [("sd15", "sd15-tiny"), ("sd21", "sd21-tiny")]:
    put("scheduler_config", name, b"\x04" + read(fixtures, folder, "scheduler", "scheduler_config.json"))

# train_configs: byte 0 picks stage 1 / stage 2 / tune.
for pick, name in [(0, "stage1.json"), (1, "stage2.json"), (2, "tune.json")]:
    put("train_configs", name.split(".")[0], bytes([pick]) + compact_json(read(root, "config", name)))

# manifest: byte 0 picks .csv / .jsonl / labels.csv; the target makes a.wav, b.wav, i.png,
# a.png and b.jpg exist.
put("manifest", "csv", b"\x00audio,image,caption,label\na.wav,i.png,\"a dog, barking\",dog\nb.wav,i.png,rain,rain\n")
put("manifest", "jsonl", b"\x01" + "\n".join(json.dumps(r) for r in [
    {"audio": "a.wav", "image": "i.png", "caption": "a dog", "label": 1},
    {"audio": "b.wav", "image": "i.png", "caption": "rain", "label": "rain"},
]).encode() + b"\n")
put("manifest", "labels", b"\x02path,label,caption\na.wav,dog,barking\nb.wav,rain,falling\n")

# image: byte 0 picks the extension (.png / .jpg / .webp); EXIF orientation on the JPEG.
def image_bytes(fmt, **kw):
    im = Image.new("RGB", (6, 4))
    im.putdata([(x * 40, y * 60, 128) for y in range(4) for x in range(6)])
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


exif = Image.Exif()
exif[0x0112] = 6  # orientation: rotate 90
put("image", "png", b"\x00" + image_bytes("PNG"))
put("image", "jpeg_exif", b"\x01" + image_bytes("JPEG", quality=90, exif=exif.tobytes()))
put("image", "webp", b"\x02" + image_bytes("WEBP", lossless=True))
put("image", "webp_lossy", b"\x02" + image_bytes("WEBP", quality=50))
gray = Image.new("LA", (3, 3), (100, 50))
buf = io.BytesIO()
gray.save(buf, "PNG")
put("image", "png_gray_alpha", b"\x00" + buf.getvalue())

# tokenizer: prompts.
put("tokenizer", "plain", "a photo of a cat sitting on a wooden table")
put("tokenizer", "punct_unicode", "Rain!!! on   the roof -- 3.5 mm, \u00e9t\u00e9, \u65e5\u672c, \U0001F600 <|endoftext|>")
put("tokenizer", "long", " ".join(["thunder"] * 120))
# safetensors_header (the LoRA reader too): tiny LoRA files in the kohya layout (conv and
# linear, alphas) and the PEFT layout with diffusers' LoraConfig metadata. Their own generator,
# so that the seeds above stay as they were.
lg = torch.Generator().manual_seed(20)
put("safetensors_header", "lora_kohya", save({
    "lora_unet_conv.lora_down.weight": torch.randn(1, 2, 3, 3, generator=lg),
    "lora_unet_conv.lora_up.weight": torch.randn(4, 1, 1, 1, generator=lg),
    "lora_unet_conv.alpha": torch.tensor(2.0),
    "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": torch.randn(2, 3, generator=lg),
    "lora_te_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": torch.randn(2, 2, generator=lg),
}))
put("safetensors_header", "lora_peft_meta", save({
    "unet.proj.lora_A.weight": torch.randn(2, 3, generator=lg),
    "unet.proj.lora_B.weight": torch.randn(2, 2, generator=lg),
}, metadata={"format": "pt", "lora_adapter_metadata": json.dumps(
    {"unet.r": 2, "unet.lora_alpha": 4, "unet.alpha_pattern": {"proj": 1}})}))
print("seeds written under", seeds)
