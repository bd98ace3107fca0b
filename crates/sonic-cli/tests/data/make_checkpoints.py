"""Writes the torch pickles that tests/download.rs serves as the released SonicDiffusion
checkpoints (the hub stand-in serves them under `ckpts/landscape.pt` / `ckpts/greatest_hits.pt`):

- `landscape_tiny.pt`: the sonic-tiny fixture's adapters as the official release stores them
  (`torch.save` of a plain dict key -> tensor, like landscape.pt / greatest_hits.pt).

The adapter loader picks the pickle reader from the `.pt` extension, so a safetensors file
renamed to `landscape.pt` would not load: the test needs a real pickle. (The projector and CLAP
loaders detect the format from the bytes, so the test serves safetensors for those.)

Run from the workspace root with a Python that has torch and safetensors:
    /var/tmp/torch-venv/bin/python crates/sonic-cli/tests/data/make_checkpoints.py
"""
import os

import torch
from safetensors.torch import load_file

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.environ.get(
    "SONIC_FIXTURES", os.path.join(here, "..", "..", "..", "..", "..", "shared", "fixtures")
)
state = load_file(os.path.join(fixtures, "sonic-tiny", "adapters.safetensors"))
out = os.path.join(here, "landscape_tiny.pt")
torch.save({k: v.clone() for k, v in sorted(state.items())}, out)
print(out, len(state), "tensors")
