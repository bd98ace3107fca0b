#!/usr/bin/env python3
"""Held-out variants of the `eval-tiny` fixture (CLIP image / text towers with projection).

eval-tiny (tools/fixtures/eval_tiny.py) covers one shape: both towers of width 32, 4 heads of
dim 8, 2 layers, quick_gelu, eps 1e-5, image 32 in patches of 8, shortest_edge = crop, batch 2,
SD's full tokenizer. This script builds other shapes with the same code
(`eval_tiny.generate(out, spec)`) and writes each in exactly eval-tiny's layout and schema:

    tests-data/eval-variants/<name>/
        image_encoder/   config.json, model.safetensors, preprocessor_config.json
        text_encoder/    config.json, model.safetensors
        tokenizer/       merges.txt, tokenizer.json, tokenizer_config.json, vocab.json
        reference/       cases.json (clip_vision, clip_image_preprocess, clip_text,
                         clip_score), image_<case>.png, tensors.safetensors
    tests-data/eval-variants/README.md    the variant list (written from VARIANTS below)
    tests-data/eval-variants/SHA256SUMS   every file above (`sha256sum -c SHA256SUMS`)

The variants (`VARIANTS`; each folder's cases.json `_doc.about` says the same):

- p4-gelu-b3: image 32 in patches of 4 (64 patches), vision width 24 / 2 heads of 12 / 3
  layers / intermediate 50, text width 20 / 4 heads of 5 / 1 layer / intermediate 29,
  projection 20, hidden_act gelu in both towers; batch 3 (3 prompts of different lengths);
  preprocessing with shortest_edge = crop = 32: an exact image, a portrait and a landscape one
  (67x45 -> 47x32: the long side is int(32 * 67 / 45), truncated, not rounded).
- p16-s48-eps: image 48 in patches of 16 (9 patches), vision width 18 / 3 heads of 6 / eps
  1e-3, text width 16 / 1 head of 16 / 2 layers / eps 1e-4, projection 12; batch 3 with one
  prompt longer than 77 tokens (cut to BOS + 75 tokens + EOS); a downscaled landscape image
  and an upscaled portrait one.
- edge40-crop32-b1: preprocessing that resizes to shortest_edge 40 then centre-crops 32, with
  image_mean = image_std = 0.5; batch 1; vision width 20 / 5 heads of 4 / 1 layer, text width
  24 / 6 heads of 4 / 3 layers, projection 16; SD 2.x's pad token "!" (id 0, which the prompt
  also contains). Images: one needing only the crop (shortest side already 40: exact), a
  downscaled landscape one and an upscaled portrait one.

Vocabulary: each variant's tokenizer is CLIP's BPE cut to the first N merges of SD's list
(clip_bpe.py's files, then truncated: vocab 512 + N + 2, <|startoftext|> = 512 + N,
<|endoftext|> = 513 + N), so the special ids and vocab_size differ from SD's 49406 / 49407 /
49408 and the folders stay small (SD's full tokenizer alone is 5 MB, its embedding 6 MB).

Preprocessing references come from transformers' PIL backend (CLIPImageProcessorPil, PIL's
bicubic as OpenAI's CLIP; eval_tiny.py names it explicitly, so installing torchvision does not
switch them to tvF.resize). Tolerances as eval-tiny: 1e-6 for images that need no resize,
2e-2 for those that depend on PIL's bicubic; 1e-4 for the towers, 1e-5 for the scores.

Run from the workspace root with the fixture venv (scripts/fixtures.sh --setup; the open_clip
wheel for the BPE merges is taken from $SONIC_FIXTURES_WHEELS, default the venv's wheels/):

    OMP_NUM_THREADS=1 $VENV/bin/python tools/gen_eval_variants.py [--out DIR] [NAME ...]

(DIR defaults to tests-data/eval-variants; NAMEs to all variants.) Deterministic: torch on the
CPU with one thread, seeded generators; rerunning gives identical bytes (check with
`sha256sum -c SHA256SUMS` in the output folder).
"""

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
if "SONIC_FIXTURES_WHEELS" not in os.environ:
    os.environ["SONIC_FIXTURES_WHEELS"] = str(Path(sys.prefix) / "wheels")
import common  # noqa: E402  (torch threads / determinism, tools/ on sys.path)

import clip_bpe  # noqa: E402
import eval_tiny  # noqa: E402
import PIL  # noqa: E402
from transformers import CLIPTokenizer  # noqa: E402

SPECIALS = ["<|startoftext|>", "<|endoftext|>"]
HALF = [0.5, 0.5, 0.5]

LONG_PROMPT = ("an enormous orchestra tuning up in a cathedral while heavy rain drums on the "
               "stained glass windows, distant thunder rolls over the hills, church bells ring "
               "for a wedding, children laugh in the square outside, a violinist practises "
               "scales, pigeons flap from the bell tower and a bus hisses to a stop beside the "
               "old fountain in the evening light")

# Per variant: seed, doc (what differs from eval-tiny), merges (BPE merges kept), pad (the
# tokenizer's pad token), prompts (one per pixel_values row), vision / text (config kwargs
# without the vocabulary ids, which follow from `merges`), processor (CLIPImageProcessorPil
# kwargs or None: shortest_edge = crop = image_size), images ((id, width, height, tol)).
VARIANTS = {
    "p4-gelu-b3": dict(
        seed=401,
        doc="image 32 in patches of 4 (64 patches); vision width 24, 2 heads of dim 12, 3 "
            "layers, intermediate 50; text width 20, 4 heads of dim 5, 1 layer, intermediate "
            "29; projection_dim 20; hidden_act gelu in both towers; batch 3 (prompts of 1, 9 "
            "and 12 words); tokenizer: 2000 merges, pad <|endoftext|>; preprocessing "
            "shortest_edge = crop = 32: an exact 32x32 image, a 41x67 portrait (-> 32x52) and "
            "a 67x45 landscape (-> 47x32: int(32 * 67 / 45), truncated)",
        merges=2000,
        pad="<|endoftext|>",
        prompts=["rain", "a dog barking at the mailman early in the morning",
                 "Waves crash on the rocks, 4K; gulls cry overhead at sunset near the pier"],
        vision=dict(hidden_size=24, image_size=32, intermediate_size=50, num_attention_heads=2,
                    num_hidden_layers=3, patch_size=4, projection_dim=20, hidden_act="gelu",
                    layer_norm_eps=1e-5),
        text=dict(hidden_size=20, intermediate_size=29, num_attention_heads=4,
                  num_hidden_layers=1, projection_dim=20, hidden_act="gelu",
                  layer_norm_eps=1e-5),
        processor=None,
        images=[("exact", 32, 32, 1e-6), ("portrait", 41, 67, 2e-2),
                ("landscape", 67, 45, 2e-2)],
    ),
    "p16-s48-eps": dict(
        seed=402,
        doc="image 48 in patches of 16 (9 patches); vision width 18, 3 heads of dim 6, 2 "
            "layers, intermediate 40, layer_norm_eps 1e-3; text width 16, 1 head of dim 16, 2 "
            "layers, intermediate 24, layer_norm_eps 1e-4; projection_dim 12; quick_gelu; "
            "batch 3, the last prompt longer than 77 tokens (cut to BOS + 75 tokens + EOS); "
            "tokenizer: 1000 merges, pad <|endoftext|>; preprocessing shortest_edge = crop = "
            "48: an exact 48x48 image, a 97x50 landscape (downscaled to 93x48) and a 30x37 "
            "portrait (upscaled to 48x59)",
        merges=1000,
        pad="<|endoftext|>",
        prompts=["thunder", "an old steam train slowly leaves the station", LONG_PROMPT],
        vision=dict(hidden_size=18, image_size=48, intermediate_size=40, num_attention_heads=3,
                    num_hidden_layers=2, patch_size=16, projection_dim=12,
                    hidden_act="quick_gelu", layer_norm_eps=1e-3),
        text=dict(hidden_size=16, intermediate_size=24, num_attention_heads=1,
                  num_hidden_layers=2, projection_dim=12, hidden_act="quick_gelu",
                  layer_norm_eps=1e-4),
        processor=None,
        images=[("exact", 48, 48, 1e-6), ("landscape_down", 97, 50, 2e-2),
                ("portrait_up", 30, 37, 2e-2)],
    ),
    "edge40-crop32-b1": dict(
        seed=403,
        doc="preprocessing: size.shortest_edge 40, crop_size 32x32 (resize, then centre crop), "
            "image_mean = image_std = 0.5; images: 40x53 (shortest side already 40: no resize, "
            "crop only, exact), a 90x61 landscape (downscaled to 59x40, crop offset 13) and a "
            "25x33 portrait (upscaled to 40x52); image 32 in patches of 8; vision width 20, 5 "
            "heads of dim 4, 1 layer, intermediate 31; text width 24, 6 heads of dim 4, 3 "
            "layers, intermediate 36; projection_dim 16; quick_gelu; batch 1; tokenizer: 3000 "
            "merges, pad token '!' (id 0, as SD 2.x; the prompt holds '!' too)",
        merges=3000,
        pad="!",
        prompts=["Fireworks over the harbour!! crowds cheering"],
        vision=dict(hidden_size=20, image_size=32, intermediate_size=31, num_attention_heads=5,
                    num_hidden_layers=1, patch_size=8, projection_dim=16,
                    hidden_act="quick_gelu", layer_norm_eps=1e-5),
        text=dict(hidden_size=24, intermediate_size=36, num_attention_heads=6,
                  num_hidden_layers=3, projection_dim=16, hidden_act="quick_gelu",
                  layer_norm_eps=1e-5),
        processor=dict(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32},
                       image_mean=HALF, image_std=HALF),
        images=[("crop_only", 40, 53, 1e-6), ("landscape_down", 90, 61, 2e-2),
                ("portrait_up", 25, 33, 2e-2)],
    ),
}


def truncate_vocab(folder, merges):
    """Cuts the SD vocab.json / merges.txt in `folder` (written by clip_bpe) to the 512 byte
    symbols, the first `merges` merges and the two special tokens (renumbered after them)."""
    folder = Path(folder)
    with open(folder / "vocab.json", encoding="utf-8") as fh:
        vocab = json.load(fh)
    keep = 512 + merges
    small = {tok: i for tok, i in vocab.items() if i < keep}
    if len(small) != keep:
        raise ValueError(f"vocab.json: {len(small)} tokens below id {keep}, expected {keep}")
    for k, tok in enumerate(SPECIALS):
        small[tok] = keep + k
    with open(folder / "vocab.json", "w", encoding="utf-8") as fh:
        json.dump(small, fh, ensure_ascii=False)
    lines = (folder / "merges.txt").read_text(encoding="utf-8").split("\n")
    with open(folder / "merges.txt", "w", encoding="utf-8") as fh:
        fh.write("\n".join(lines[:1 + merges]) + "\n")


def small_tokenizer(merges, pad):
    """A tokenizer builder for eval_tiny.generate: CLIP's BPE with `merges` merges and the pad
    token `pad`, saved and applied as SD's (max length 77, padding, truncation)."""

    def make(folder, prompts):
        clip_bpe.write_vocab_files(clip_bpe.find_wheel(), folder)
        truncate_vocab(folder, merges)
        tok = CLIPTokenizer.from_pretrained(str(folder), pad_token=pad, model_max_length=77)
        ids = tok(prompts, padding="max_length", max_length=77, truncation=True,
                  return_tensors="pt").input_ids
        tok.save_pretrained(folder)
        return ids

    return make


def spec_of(name, v):
    """The eval_tiny.generate spec of variant `name`."""
    bos = 512 + v["merges"]
    eos = bos + 1
    pad = {"<|endoftext|>": eos, "!": 0}[v["pad"]]
    text = dict(v["text"], vocab_size=bos + 2, max_position_embeddings=77, bos_token_id=bos,
                eos_token_id=eos, pad_token_id=pad)
    doc = dict(eval_tiny.DOC)
    doc["about"] = (
        f"Held-out variant '{name}' of eval-tiny (tools/gen_eval_variants.py): {v['doc']}. "
        "Tensors are keys of reference/tensors.safetensors (float32; ids int64). Models: "
        "image_encoder/ (transformers CLIPVisionModelWithProjection + its "
        "preprocessor_config.json), text_encoder/ (CLIPTextModelWithProjection), tokenizer/ "
        f"(CLIP BPE with the first {v['merges']} merges of SD's: vocab {bos + 2}, "
        f"<|startoftext|> {bos}, <|endoftext|> {eos}, pad token {v['pad']!r} = {pad}).")
    doc["clip_image_preprocess"] = (
        "image file (RGB PNG, in reference/) -> pixel_values [1,3,C,C], as transformers' "
        "CLIPImageProcessorPil with image_encoder/preprocessor_config.json: resize the uint8 "
        "image with PIL's bicubic so that its shortest side is E = size.shortest_edge and the "
        "other int(E * long / short) (truncated); centre crop C = crop_size (top (h - C) // 2, "
        "left (w - C) // 2); * rescale_factor (1/255); (x - image_mean) / image_std. Cases at "
        "tol 1e-6 need no resize (shortest side already E); the others depend on PIL's bicubic "
        "resampling, hence their looser tolerance")
    doc["clip_text"] = (
        "prompts -> ids [B,77] (tokenizer/: BOS, the prompt's tokens, EOS, then its pad token "
        "up to 77; a prompt over 75 tokens is cut to 75) -> text_embeds (text_projection of the "
        "final hidden state at the first EOS, not normalised) [B,D]")
    doc["versions"] = dict(eval_tiny.DOC["versions"], pillow=PIL.__version__)
    return dict(name=name, seed=v["seed"], prompts=v["prompts"], vision=v["vision"], text=text,
                processor=v["processor"], images=v["images"],
                tokenizer=small_tokenizer(v["merges"], v["pad"]), doc=doc)


def check(name, v, tensors):
    """Sanity checks of the generated references (batch, truncation, sizes)."""
    ids = tensors["text.ids"]
    eos = 513 + v["merges"]
    if ids.shape != (len(v["prompts"]), 77):
        raise ValueError(f"{name}: ids of shape {tuple(ids.shape)}")
    for i, row in enumerate(ids.tolist()):
        if row[0] != eos - 1 or eos not in row:
            raise ValueError(f"{name}: prompt {i} lacks BOS / EOS: {row}")
    v_cfg = v["vision"]
    patches = (v_cfg["image_size"] // v_cfg["patch_size"]) ** 2
    shape = tuple(tensors["vision.last_hidden_state"].shape)
    if shape != (len(v["prompts"]), 1 + patches, v_cfg["hidden_size"]):
        raise ValueError(f"{name}: last_hidden_state of shape {shape}")


INTRO = ("Held-out variants of the `eval-tiny` fixture (CLIP image / text towers with "
         "projection), in its layout and `reference/cases.json` schema. Generated by "
         "`tools/gen_eval_variants.py` (see its docstring for the command); do not edit by "
         "hand. `SHA256SUMS` lists every file (`sha256sum -c SHA256SUMS`).")


def make_one(out, name, v):
    check(name, v, eval_tiny.generate(out, spec_of(name, v)))


def main():
    common.variants_main(__doc__, VARIANTS, "eval-variants", INTRO, make_one, sums=True)


if __name__ == "__main__":
    main()
