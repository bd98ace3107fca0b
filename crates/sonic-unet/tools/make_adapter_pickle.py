"""Writes tests/data/adapters_tiny.pt: the sonic-tiny fixture's adapters as the official release
stores them (`torch.save` of a plain dict key -> tensor, like landscape.pt / greatest_hits.pt).

Run from the workspace root with a Python that has torch and safetensors:
    /var/tmp/torch-venv/bin/python crates/sonic-unet/tools/make_adapter_pickle.py
"""
import os

import torch
from safetensors.torch import load_file

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.environ.get("SONIC_FIXTURES", os.path.join(here, "..", "..", "..", "..", "shared", "fixtures"))
state = load_file(os.path.join(fixtures, "sonic-tiny", "adapters.safetensors"))
out = os.path.join(here, "..", "tests", "data", "adapters_tiny.pt")
torch.save({k: v.clone() for k, v in sorted(state.items())}, out)
print(out, len(state), "tensors")
