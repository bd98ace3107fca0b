#!/usr/bin/env python3
"""Held-out variants of the `blip-tiny` fixture (transformers' BlipForConditionalGeneration).

blip-tiny (tools/fixtures/blip_tiny.py) covers one shape: vision width 32 / 4 heads / 2 layers
on a 32x32 image in patches of 8, text width 32 / 4 heads / 2 layers, exact GELU, a tied LM
head, batch 2, bicubic preprocessing. This script builds other shapes with the same code
(`blip_tiny.generate(out, spec)`) and writes each in exactly blip-tiny's layout and schema:

    tests-data/blip-variants/<name>/
        config.json, model.safetensors, generation_config.json   (the model)
        preprocessor_config.json, processor_config.json,
        tokenizer.json, tokenizer_config.json, vocab.txt          (the processor)
        reference/   cases.json (blip_vision, blip_image_preprocess, blip_logits,
                     blip_generate), image_<case>.png, tensors.safetensors
        SHA256SUMS   every file above (`sha256sum -c SHA256SUMS`)
    tests-data/blip-variants/README.md    the variant list (written from VARIANTS below)

The variants (`VARIANTS`; each folder's cases.json `_doc.about` says the same):

- p4-s24-b3: image 24 in patches of 4 (36 patches + class token); vision width 24, 3 heads of
  8, 3 layers, intermediate 50, quick_gelu, layer_norm_eps 1e-6; text width 18 (narrower
  than the image embeddings it cross-attends to), 3 heads of 6, 1 layer, intermediate 29,
  gelu_new, layer_norm_eps 1e-7, 30 positions; vocabulary of 120 words; batch 3 (the padded
  logits case has three prompt lengths); images: an exact 24x24, a 61x33 landscape
  (downscaled) and a 13x19 portrait (upscaled).
- p16-s48-untied: image 48 in patches of 16 (9 patches); vision width 20, 5 heads of 4, 1
  layer, intermediate 31; text width 24, 2 heads of 12, 3 layers, intermediate 40, 32
  positions; tie_word_embeddings false, so model.safetensors holds
  text_decoder.cls.predictions.decoder.weight / .bias besides the word embeddings and
  cls.predictions.bias (all four differ; the logits use decoder.weight / decoder.bias);
  preprocessing with PIL's bilinear filter (resample 2); vocabulary of 80 words; batch 2;
  images: an exact 48x48, a 97x50 landscape and a 30x37 portrait.

Both keep blip-tiny's generation cases (greedy and beam search with and without a prefix,
repetition penalty, length penalty, early stopping True / False / "never", min_length); the
[SEP] bias boost is tuned per variant so that some captions end early and greedy differs from
beam search (the generator checks both).

Run from the workspace root with the fixture venv:

    OMP_NUM_THREADS=1 $VENV/bin/python tools/gen_blip_variants.py [--out DIR] [NAME ...]

(DIR defaults to tests-data/blip-variants; NAMEs to all variants.) Deterministic: torch on
the CPU with one thread, seeded generators; rerunning gives identical bytes.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
import common  # noqa: E402  (torch threads / determinism, tools/ on sys.path)

import blip_tiny  # noqa: E402

VARIANTS = {
    "p4-s24-b3": dict(
        seed=501,
        doc="image 24 in patches of 4 (36 patches + class token); vision width 24, 3 heads of "
            "8, 3 layers, intermediate 50, quick_gelu, layer_norm_eps 1e-6; text width 18 "
            "(narrower than the image embeddings), 3 heads of 6, 1 layer, intermediate 29, "
            "gelu_new, layer_norm_eps 1e-7, 30 positions; 120 vocabulary words; batch 3; "
            "images: exact 24x24, 61x33 landscape (downscaled), 13x19 portrait (upscaled)",
        vision=dict(hidden_size=24, intermediate_size=50, num_attention_heads=3,
                    num_hidden_layers=3, image_size=24, patch_size=4, hidden_act="quick_gelu",
                    layer_norm_eps=1e-6),
        text=dict(hidden_size=18, intermediate_size=29, num_attention_heads=3,
                  num_hidden_layers=1, max_position_embeddings=30, hidden_act="gelu_new",
                  layer_norm_eps=1e-7),
        words=120, tie=True, sep_boost=3.0, batch=3,
        prompts=["a dog", "a picture of two cats on a bed", "the man riding a horse"],
        images=[("exact", 24, 24, 1e-6), ("landscape_down", 61, 33, 2e-2),
                ("portrait_up", 13, 19, 2e-2)],
        processor=None,
    ),
    "p16-s48-untied": dict(
        seed=502,
        doc="image 48 in patches of 16 (9 patches); vision width 20, 5 heads of 4, 1 layer, "
            "intermediate 31; text width 24, 2 heads of 12, 3 layers, intermediate 40, 32 "
            "positions; tie_word_embeddings false: model.safetensors holds "
            "cls.predictions.decoder.weight / .bias besides the word embeddings and "
            "cls.predictions.bias (the logits use the decoder's); bilinear preprocessing "
            "(resample 2); 80 vocabulary words; batch 2; images: exact 48x48, 97x50 "
            "landscape, 30x37 portrait",
        vision=dict(hidden_size=20, intermediate_size=31, num_attention_heads=5,
                    num_hidden_layers=1, image_size=48, patch_size=16, hidden_act="gelu",
                    layer_norm_eps=1e-5),
        text=dict(hidden_size=24, intermediate_size=40, num_attention_heads=2,
                  num_hidden_layers=3, max_position_embeddings=32, hidden_act="gelu",
                  layer_norm_eps=1e-12),
        words=80, tie=False, sep_boost=2.0, batch=2,
        prompts=["a cat", "three birds flying over the sea at sunset"],
        images=[("exact", 48, 48, 1e-6), ("landscape_down", 97, 50, 2e-2),
                ("portrait_up", 30, 37, 2e-2)],
        processor=dict(resample=2),
    ),
}


def spec_of(name, v):
    """The blip_tiny.generate spec of variant `name`."""
    doc = dict(blip_tiny.DOC)
    doc["about"] = (f"Held-out variant '{name}' of blip-tiny (tools/gen_blip_variants.py): "
                    f"{v['doc']}. " + blip_tiny.DOC["about"])
    return dict(v, name=name, generate=blip_tiny.GENERATE, doc=doc)


INTRO = ("Held-out variants of the `blip-tiny` fixture (a tiny random "
         "BlipForConditionalGeneration + BlipProcessor), in its layout and "
         "`reference/cases.json` schema. Generated by `tools/gen_blip_variants.py` (see its "
         "docstring for the command); do not edit by hand. Each folder's `SHA256SUMS` "
         "lists its files (`sha256sum -c SHA256SUMS`).")


def main():
    common.variants_main(__doc__, VARIANTS, "blip-variants", INTRO,
                         lambda out, name, v: blip_tiny.generate(out, spec_of(name, v)))


if __name__ == "__main__":
    main()
