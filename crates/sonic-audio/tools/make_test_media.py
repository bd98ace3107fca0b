"""Writes the compressed test media of sonic-audio's decoder tests (tests/data/).

Needs numpy and soundfile (libsndfile >= 1.1 with FLAC, Vorbis and MP3 support):
    pip install numpy soundfile
    python tools/make_test_media.py

For each codec it writes the encoded file and, as the reference, libsndfile's own decode of
it as a float32 WAV (`*_ref.wav`), which the Rust tests compare against symphonia's decode
(FLAC must be bit exact against the int16 source `tone_src.wav`; Vorbis and MP3 decoders
legitimately differ in the last bits).
"""

import os

import numpy as np
import soundfile as sf

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "data")


def main():
    os.makedirs(OUT, exist_ok=True)
    sr = 22050
    n = int(0.5 * sr)
    t = np.arange(n) / sr
    rng = np.random.default_rng(1234)
    left = 0.4 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(n)
    right = 0.3 * np.sin(2 * np.pi * 660 * t + 0.3) + 0.05 * rng.standard_normal(n)
    x = np.stack([left, right], axis=1).clip(-0.99, 0.99)
    x16 = np.round(x * 32767).astype(np.int16)
    sf.write(os.path.join(OUT, "tone_src.wav"), x16, sr, subtype="PCM_16")
    sf.write(os.path.join(OUT, "tone.flac"), x16, sr, subtype="PCM_16")
    xf = x16.astype(np.float32) / 32768.0
    sf.write(os.path.join(OUT, "tone.ogg"), xf, sr, format="OGG", subtype="VORBIS")
    sf.write(os.path.join(OUT, "tone.mp3"), xf, sr, format="MP3", subtype="MPEG_LAYER_III")
    y, _ = sf.read(os.path.join(OUT, "tone.flac"), dtype="int16", always_2d=True)
    assert (y == x16).all()
    for ext in ("ogg", "mp3"):
        y, ysr = sf.read(os.path.join(OUT, f"tone.{ext}"), dtype="float32", always_2d=True)
        assert ysr == sr
        sf.write(os.path.join(OUT, f"tone_{ext}_ref.wav"), y, sr, subtype="FLOAT")
        print(ext, y.shape, os.path.getsize(os.path.join(OUT, f"tone.{ext}")), "bytes")


if __name__ == "__main__":
    main()
