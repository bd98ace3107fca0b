#!/usr/bin/env python3
"""Makes the Ogg Vorbis decoder test media of crates/sonic-audio/tests/data/ogg and the table
of real recordings (Debian's sound-theme-freedesktop) that crates/sonic-audio/tests/decode.rs
checks frame counts against.

Needs Debian's `sox`, `vorbis-tools` (oggenc) and `sound-theme-freedesktop`, and PyPI's
`soundfile` (libsndfile, which decodes Vorbis through libvorbis and trims to the last page's
granule position exactly as libvorbisfile / `oggdec` do) and numpy.

    python3 tools/make_ogg_test_media.py
"""
import glob
import hashlib
import json
import os
import subprocess
import tempfile

import numpy as np
import soundfile as sf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "crates/sonic-audio/tests/data/ogg")

# name -> (seconds, rate): a stream with one audio page (first page = last page), and one whose
# last page continues a packet of the page before; symphonia 0.5 misses the end trim on both.
CLIPS = {"one_page": (0.05, 44100), "continued_end": (0.3, 48000)}


def main():
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, (secs, rate) in CLIPS.items():
            wav = os.path.join(tmp, name + ".wav")
            subprocess.run(["sox", "-n", "-r", str(rate), "-c", "2", "-b", "16", wav,
                            "synth", str(secs), "sine", "500", "sine", "700", "vol", "0.4"],
                           check=True)
            ogg = os.path.join(OUT, name + ".ogg")
            subprocess.run(["oggenc", "-Q", "-q", "3", "--serial", "1234", "-o", ogg, wav],
                           check=True)
            x, r = sf.read(ogg, dtype="float32", always_2d=True)
            sf.write(os.path.join(OUT, name + "_ref.wav"), x, r, subtype="FLOAT")
            print(name, x.shape, r)
    table = []
    for f in sorted(glob.glob("/usr/share/sounds/freedesktop/stereo/*.oga")):
        x, r = sf.read(f, dtype="float32", always_2d=True)
        table.append({
            "file": os.path.basename(f),
            "sha256": hashlib.sha256(open(f, "rb").read()).hexdigest(),
            "sample_rate": r,
            "channels": x.shape[1],
            "frames": x.shape[0],
            "sum_abs": float(np.abs(x.astype(np.float64)).sum()),
        })
    with open(os.path.join(OUT, "freedesktop.json"), "w") as fh:
        json.dump({"_doc": "libsndfile (libvorbis) decodes of /usr/share/sounds/freedesktop/"
                   "stereo/*.oga (Debian sound-theme-freedesktop); made by "
                   "tools/make_ogg_test_media.py", "files": table}, fh, indent=1)
    print(len(table), "real recordings")


if __name__ == "__main__":
    main()
