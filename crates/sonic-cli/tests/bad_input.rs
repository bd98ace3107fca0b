//! The bad-input table (issue 16): malformed model folders, weights, configs, sizes, counts,
//! sounds, images, manifests and flags across the subcommands. Every case must end with a
//! non-zero exit status that is not a panic (101) or a signal, a message naming the file, key
//! or value, and no output file; the process's peak memory stays small (nothing absurd is
//! allocated before the check).

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    sonic_core::fixtures::fixtures_root(Path::new(env!("CARGO_MANIFEST_DIR")))
        .expect("fixtures not found")
}

fn thunder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/assets/thunder.wav")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, v.to_string()).unwrap();
}

/// A safetensors file whose tensor `key` has one NaN.
fn poison(src: &Path, dst: &Path, key: &str) {
    let mut tensors = sonic_core::weights::read_safetensors_f32(src).unwrap();
    let t = tensors.iter_mut().find(|t| t.name == key).expect(key);
    t.data[0] = f32::NAN;
    sonic_core::weights::write_safetensors_f32(dst, &tensors, None).unwrap();
}

fn truncate(src: &Path, dst: &Path, keep: usize) {
    let bytes = std::fs::read(src).unwrap();
    std::fs::write(dst, &bytes[..keep.min(bytes.len())]).unwrap();
}

/// A 16-bit PCM mono WAV of `samples` values.
fn wav(path: &Path, samples: &[i16], rate: u32) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
}

/// A float WAV holding NaN and infinity.
fn nan_wav(path: &Path) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 48_000,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for i in 0..48_000 {
        w.write_sample(match i % 3 {
            0 => f32::NAN,
            1 => f32::INFINITY,
            _ => 0.5,
        })
        .unwrap();
    }
    w.finalize().unwrap();
}

/// A PNG claiming `w` x `h` pixels whose pixel data is a few bytes.
fn png_header(path: &Path, w: u32, h: u32) {
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&w.to_be_bytes());
    ihdr.extend_from_slice(&h.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    for (kind, data) in [
        (&b"IHDR"[..], &ihdr[..]),
        (b"IDAT", &[0x78, 0x9c, 0x03, 0x00]),
        (b"IEND", &[]),
    ] {
        let mut chunk = kind.to_vec();
        chunk.extend_from_slice(data);
        bytes.extend_from_slice(&(data.len() as u32).to_be_bytes());
        bytes.extend_from_slice(&chunk);
        bytes.extend_from_slice(&crc32(&chunk).to_be_bytes());
    }
    std::fs::write(path, bytes).unwrap();
}

/// A valid stage-1 config and manifest in `d` (`stage1.json`, `manifest.csv` with one real
/// recording), for the cases that break the other one.
fn stage1_inputs(d: &Path) {
    let c = serde_json::json!({
        "training": {"seed": 3, "batch_size": 1, "max_steps": 1},
        "model": {"sd": fixtures().join("sd15-tiny"),
                  "clap": fixtures().join("sonic-tiny/clap.safetensors"),
                  "projector_config": fixtures().join("sonic-tiny/config.json")}
    });
    std::fs::write(d.join("stage1.json"), c.to_string()).unwrap();
    std::fs::copy(thunder(), d.join("a.wav")).unwrap();
    std::fs::write(d.join("manifest.csv"), "audio,caption\na.wav,thunder\n").unwrap();
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A smooth 64x64 picture.
fn png(path: &Path) {
    image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 3) as u8, (y * 4) as u8, 90])
    })
    .save(path)
    .unwrap();
}

/// One malformed input: what to prepare in the case's folder, the arguments (with `{dir}`
/// standing for that folder, `{sd}` for a private copy of sd15-tiny when `copy_sd` is set,
/// else the shared one, `{tiny}` for sonic-tiny, `{thunder}` for a real recording), and
/// the words the message must contain.
struct Case {
    name: &'static str,
    copy_sd: bool,
    setup: fn(&Path),
    args: &'static [&'static str],
    expect: &'static [&'static str],
}

const GEN: &[&str] = &[
    "generate", "--steps", "2", "--model", "{sd}", "--prompt", "a cat",
];
const NOOP: fn(&Path) = |_| {};

fn audio_args(extra: &'static [&'static str]) -> Vec<&'static str> {
    let mut v = vec![
        "generate",
        "--steps",
        "2",
        "--width",
        "64",
        "--height",
        "64",
        "--model",
        "{sd}",
        "--clap",
        "{tiny}/clap.safetensors",
        "--projector",
        "{tiny}/projector.safetensors",
        "--projector-config",
        "{tiny}/config.json",
        "--adapters",
        "{tiny}/adapters.safetensors",
    ];
    v.extend_from_slice(extra);
    v
}

fn edit_args(extra: &'static [&'static str]) -> Vec<&'static str> {
    let mut v = vec![
        "edit",
        "--steps",
        "2",
        "--prompt",
        "a stormy sea",
        "--model",
        "{sd}",
        "--clap",
        "{tiny}/clap.safetensors",
        "--projector",
        "{tiny}/projector.safetensors",
        "--projector-config",
        "{tiny}/config.json",
        "--adapters",
        "{tiny}/adapters.safetensors",
    ];
    v.extend_from_slice(extra);
    v
}

fn cases() -> Vec<(Case, Vec<&'static str>)> {
    let plain = |c: Case| {
        let args = c.args.to_vec();
        (c, args)
    };
    let with = |c: Case, args: Vec<&'static str>| (c, args);
    let mut v = vec![
        // ---- model folders: configs vs weights, sanity limits, damaged files ----
        plain(Case {
            name: "unet config wider than its weights",
            copy_sd: true,
            setup: |d| {
                edit_json(&d.join("sd/unet/config.json"), |v| {
                    v["block_out_channels"] = serde_json::json!([32768, 65536, 65536])
                })
            },
            args: GEN,
            expect: &[
                "diffusion_pytorch_model.safetensors",
                "conv_in.weight",
                "[32768, 4, 3, 3]",
            ],
        }),
        plain(Case {
            name: "absurd layers_per_block",
            copy_sd: true,
            setup: |d| {
                edit_json(&d.join("sd/unet/config.json"), |v| {
                    v["layers_per_block"] = serde_json::json!(1_000_000)
                })
            },
            args: GEN,
            expect: &["unet/config.json", "layers_per_block", "1000000"],
        }),
        plain(Case {
            name: "absurd vocab_size",
            copy_sd: true,
            setup: |d| {
                edit_json(&d.join("sd/text_encoder/config.json"), |v| {
                    v["vocab_size"] = serde_json::json!(1_000_000_000_000u64)
                })
            },
            args: GEN,
            expect: &["text_encoder/config.json", "vocab_size"],
        }),
        plain(Case {
            name: "vocab_size larger than the embedding",
            copy_sd: true,
            setup: |d| {
                edit_json(&d.join("sd/text_encoder/config.json"), |v| {
                    v["vocab_size"] = serde_json::json!(4_000_000)
                })
            },
            args: GEN,
            expect: &["model.safetensors", "token_embedding.weight"],
        }),
        plain(Case {
            name: "absurd max_position_embeddings",
            copy_sd: true,
            setup: |d| {
                edit_json(&d.join("sd/text_encoder/config.json"), |v| {
                    v["max_position_embeddings"] = serde_json::json!(1u64 << 40)
                })
            },
            args: GEN,
            expect: &["text_encoder/config.json", "max_position_embeddings"],
        }),
        plain(Case {
            name: "absurd vae widths",
            copy_sd: true,
            setup: |d| {
                edit_json(&d.join("sd/vae/config.json"), |v| {
                    v["block_out_channels"] = serde_json::json!([1 << 30, 1 << 30])
                })
            },
            args: GEN,
            expect: &["vae/config.json", "block_out_channels"],
        }),
        plain(Case {
            name: "unet config not JSON",
            copy_sd: true,
            setup: |d| {
                std::fs::write(
                    d.join("sd/unet/config.json"),
                    "{\"block_out_channels\": [32,",
                )
                .unwrap()
            },
            args: GEN,
            expect: &["unet/config.json"],
        }),
        plain(Case {
            name: "unet config empty",
            copy_sd: true,
            setup: |d| std::fs::write(d.join("sd/unet/config.json"), "").unwrap(),
            args: GEN,
            expect: &["unet/config.json"],
        }),
        plain(Case {
            name: "unet config of the wrong types",
            copy_sd: true,
            setup: |d| {
                edit_json(&d.join("sd/unet/config.json"), |v| {
                    v["block_out_channels"] = serde_json::json!("wide")
                })
            },
            args: GEN,
            expect: &["unet/config.json", "wide"],
        }),
        plain(Case {
            name: "unet weights truncated",
            copy_sd: true,
            setup: |d| {
                let p = d.join("sd/unet/diffusion_pytorch_model.safetensors");
                let len = std::fs::metadata(&p).unwrap().len() as usize;
                truncate(&p.clone(), &p, len / 2)
            },
            args: GEN,
            expect: &["unet/diffusion_pytorch_model.safetensors"],
        }),
        plain(Case {
            name: "unet weights empty",
            copy_sd: true,
            setup: |d| {
                std::fs::write(d.join("sd/unet/diffusion_pytorch_model.safetensors"), "").unwrap()
            },
            args: GEN,
            expect: &["unet/diffusion_pytorch_model.safetensors"],
        }),
        plain(Case {
            name: "unet weights with a header claiming petabytes",
            copy_sd: true,
            setup: |d| {
                let header = br#"{"conv_in.weight":{"dtype":"F32","shape":[1000000000,1000000000],"data_offsets":[0,4000000000000000000]}}"#;
                let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
                bytes.extend_from_slice(header);
                std::fs::write(d.join("sd/unet/diffusion_pytorch_model.safetensors"), bytes)
                    .unwrap()
            },
            args: GEN,
            expect: &["unet/diffusion_pytorch_model.safetensors"],
        }),
        plain(Case {
            name: "unet weight holding NaN",
            copy_sd: true,
            setup: |d| {
                let p = d.join("sd/unet/diffusion_pytorch_model.safetensors");
                poison(&p.clone(), &p, "mid_block.resnets.1.conv2.weight")
            },
            args: GEN,
            expect: &[
                "mid_block.resnets.1.conv2.weight",
                "NaN or infinite",
                "unet/diffusion_pytorch_model.safetensors",
            ],
        }),
        plain(Case {
            name: "vae weight holding NaN",
            copy_sd: true,
            setup: |d| {
                let p = d.join("sd/vae/diffusion_pytorch_model.safetensors");
                poison(&p.clone(), &p, "decoder.conv_out.bias")
            },
            args: GEN,
            expect: &[
                "decoder.conv_out.bias",
                "vae/diffusion_pytorch_model.safetensors",
            ],
        }),
        plain(Case {
            name: "unet weights missing",
            copy_sd: true,
            setup: |d| {
                std::fs::remove_file(d.join("sd/unet/diffusion_pytorch_model.safetensors")).unwrap()
            },
            args: GEN,
            expect: &["diffusion_pytorch_model"],
        }),
        plain(Case {
            name: "model_index.json missing",
            copy_sd: true,
            setup: |d| std::fs::remove_file(d.join("sd/model_index.json")).unwrap(),
            args: GEN,
            expect: &["model_index.json"],
        }),
        plain(Case {
            name: "model_index.json names another UNet class",
            copy_sd: true,
            setup: |d| {
                edit_json(&d.join("sd/model_index.json"), |v| {
                    v["unet"] = serde_json::json!(["diffusers", "UNet2DModel"])
                })
            },
            args: GEN,
            expect: &["model_index.json", "unet", "UNet2DModel"],
        }),
        plain(Case {
            name: "scheduler config not JSON",
            copy_sd: true,
            setup: |d| std::fs::write(d.join("sd/scheduler/scheduler_config.json"), "]]").unwrap(),
            args: GEN,
            expect: &["scheduler_config.json"],
        }),
        plain(Case {
            name: "scheduler config with negative beta_end",
            copy_sd: true,
            setup: |d| {
                edit_json(&d.join("sd/scheduler/scheduler_config.json"), |v| {
                    v["beta_end"] = serde_json::json!(-1.0)
                })
            },
            args: GEN,
            expect: &["beta_end"],
        }),
        plain(Case {
            name: "scheduler with absurd num_train_timesteps",
            copy_sd: true,
            setup: |d| {
                edit_json(&d.join("sd/scheduler/scheduler_config.json"), |v| {
                    v["num_train_timesteps"] = serde_json::json!(1u64 << 50)
                })
            },
            args: GEN,
            expect: &["num_train_timesteps"],
        }),
        plain(Case {
            name: "tokenizer vocab missing",
            copy_sd: true,
            setup: |d| {
                for f in ["vocab.json", "tokenizer.json", "merges.txt"] {
                    let _ = std::fs::remove_file(d.join("sd/tokenizer").join(f));
                }
            },
            args: GEN,
            expect: &["tokenizer"],
        }),
        // ---- sizes and counts ----
        plain(Case {
            name: "65536 x 65536 pixels",
            copy_sd: false,
            setup: NOOP,
            args: &[
                "generate", "--steps", "2", "--model", "{sd}", "--prompt", "x", "--width", "65536",
                "--height", "65536",
            ],
            expect: &["65536x65536", "memory budget"],
        }),
        plain(Case {
            name: "a hundred million images",
            copy_sd: false,
            setup: NOOP,
            args: &[
                "generate",
                "--steps",
                "2",
                "--model",
                "{sd}",
                "--prompt",
                "x",
                "--batch",
                "100000000",
            ],
            expect: &["100000000 images", "memory budget"],
        }),
        plain(Case {
            name: "a one-megabyte budget",
            copy_sd: false,
            setup: NOOP,
            args: &[
                "generate",
                "--steps",
                "2",
                "--model",
                "{sd}",
                "--prompt",
                "x",
                "--max-memory",
                "1M",
            ],
            expect: &["1.0 MiB", "--max-memory"],
        }),
        plain(Case {
            name: "a budget in unknown units",
            copy_sd: false,
            setup: NOOP,
            args: &["generate", "--model", "{sd}", "--max-memory", "8Q"],
            expect: &["8Q", "unit"],
        }),
        plain(Case {
            name: "width not a multiple of 8",
            copy_sd: false,
            setup: NOOP,
            args: &[
                "generate", "--steps", "2", "--model", "{sd}", "--prompt", "x", "--width", "63",
            ],
            expect: &["width", "63"],
        }),
        plain(Case {
            name: "zero steps",
            copy_sd: false,
            setup: NOOP,
            args: &[
                "generate", "--steps", "0", "--model", "{sd}", "--prompt", "x",
            ],
            expect: &["steps"],
        }),
        plain(Case {
            name: "NaN guidance",
            copy_sd: false,
            setup: NOOP,
            args: &[
                "generate",
                "--steps",
                "2",
                "--model",
                "{sd}",
                "--prompt",
                "x",
                "--guidance",
                "NaN",
            ],
            expect: &["guidance", "NaN"],
        }),
        plain(Case {
            name: "an unknown output format",
            copy_sd: false,
            setup: NOOP,
            args: &[
                "generate",
                "--steps",
                "2",
                "--model",
                "{sd}",
                "--prompt",
                "x",
                "--out",
                "{dir}/out.bmp",
            ],
            expect: &["out.bmp", "format"],
        }),
        plain(Case {
            name: "an unknown scheduler",
            copy_sd: false,
            setup: NOOP,
            args: &["generate", "--model", "{sd}", "--scheduler", "heun-3000"],
            expect: &["heun-3000"],
        }),
    ];
    // ---- sounds and the audio models ----
    v.extend([
        with(
            Case {
                name: "a hundred million interpolation frames",
                copy_sd: false,
                setup: NOOP,
                args: &[],
                expect: &["100000000 images", "memory budget"],
            },
            audio_args(&[
                "--interpolate",
                "{thunder},{thunder}",
                "--frames",
                "100000000",
            ]),
        ),
        with(
            Case {
                name: "interpolation of one file",
                copy_sd: false,
                setup: NOOP,
                args: &[],
                expect: &["--interpolate", "two"],
            },
            audio_args(&["--interpolate", "{thunder}"]),
        ),
        with(
            Case {
                name: "an empty WAV file",
                copy_sd: false,
                setup: |d| std::fs::write(d.join("empty.wav"), "").unwrap(),
                args: &[],
                expect: &["empty.wav"],
            },
            audio_args(&["--audio", "{dir}/empty.wav"]),
        ),
        with(
            Case {
                name: "random bytes named .wav",
                copy_sd: false,
                setup: |d| {
                    std::fs::write(
                        d.join("noise.wav"),
                        (0..5000u32)
                            .map(|i| (i * 7919 % 251) as u8)
                            .collect::<Vec<_>>(),
                    )
                    .unwrap()
                },
                args: &[],
                expect: &["noise.wav"],
            },
            audio_args(&["--audio", "{dir}/noise.wav"]),
        ),
        with(
            Case {
                name: "a WAV cut inside its header",
                copy_sd: false,
                setup: |d| truncate(&thunder(), &d.join("cut.wav"), 30),
                args: &[],
                expect: &["cut.wav"],
            },
            audio_args(&["--audio", "{dir}/cut.wav"]),
        ),
        with(
            Case {
                name: "a WAV of NaN and infinity",
                copy_sd: false,
                setup: |d| nan_wav(&d.join("nan.wav")),
                args: &[],
                expect: &["nan.wav"],
            },
            audio_args(&["--audio", "{dir}/nan.wav"]),
        ),
        with(
            Case {
                name: "a WAV with no samples",
                copy_sd: false,
                setup: |d| wav(&d.join("silent.wav"), &[], 16_000),
                args: &[],
                expect: &["silent.wav"],
            },
            audio_args(&["--audio", "{dir}/silent.wav"]),
        ),
        with(
            Case {
                name: "a missing sound",
                copy_sd: false,
                setup: NOOP,
                args: &[],
                expect: &["absent.wav"],
            },
            audio_args(&["--audio", "{dir}/absent.wav"]),
        ),
        with(
            Case {
                name: "a folder as the sound",
                copy_sd: false,
                setup: |d| std::fs::create_dir(d.join("folder.wav")).unwrap(),
                args: &[],
                expect: &["folder.wav"],
            },
            audio_args(&["--audio", "{dir}/folder.wav"]),
        ),
        with(
            Case {
                name: "a mix weight that is not a number",
                copy_sd: false,
                setup: NOOP,
                args: &[],
                expect: &["abc"],
            },
            audio_args(&["--mix", "{thunder}:abc"]),
        ),
        with(
            Case {
                name: "a mix entry without weight",
                copy_sd: false,
                setup: NOOP,
                args: &[],
                expect: &["PATH:WEIGHT"],
            },
            audio_args(&["--mix", "{thunder}"]),
        ),
        with(
            Case {
                name: "a CLAP checkpoint of random bytes",
                copy_sd: false,
                setup: |d| std::fs::write(d.join("clap.pth"), vec![0x80u8; 4096]).unwrap(),
                args: &[],
                expect: &["clap.pth"],
            },
            {
                let mut a = audio_args(&["--audio", "{thunder}"]);
                let i = a
                    .iter()
                    .position(|s| *s == "{tiny}/clap.safetensors")
                    .unwrap();
                a[i] = "{dir}/clap.pth";
                a
            },
        ),
        with(
            Case {
                name: "a projector weight holding NaN",
                copy_sd: false,
                setup: |d| {
                    poison(
                        &fixtures().join("sonic-tiny/projector.safetensors"),
                        &d.join("projector.safetensors"),
                        "between_attention.1.2.weight",
                    )
                },
                args: &[],
                expect: &["projector.safetensors", "between_attention.1.2.weight"],
            },
            {
                let mut a = audio_args(&["--audio", "{thunder}"]);
                let i = a
                    .iter()
                    .position(|s| *s == "{tiny}/projector.safetensors")
                    .unwrap();
                a[i] = "{dir}/projector.safetensors";
                a
            },
        ),
        with(
            Case {
                name: "truncated adapters",
                copy_sd: false,
                setup: |d| {
                    truncate(
                        &fixtures().join("sonic-tiny/adapters.safetensors"),
                        &d.join("adapters.safetensors"),
                        100,
                    )
                },
                args: &[],
                expect: &["adapters.safetensors"],
            },
            {
                let mut a = audio_args(&["--audio", "{thunder}"]);
                let i = a
                    .iter()
                    .position(|s| *s == "{tiny}/adapters.safetensors")
                    .unwrap();
                a[i] = "{dir}/adapters.safetensors";
                a
            },
        ),
        with(
            Case {
                name: "a projector config that is not JSON",
                copy_sd: false,
                setup: |d| std::fs::write(d.join("projector.json"), "tokens = 77").unwrap(),
                args: &[],
                expect: &["projector.json"],
            },
            {
                let mut a = audio_args(&["--audio", "{thunder}"]);
                let i = a.iter().position(|s| *s == "{tiny}/config.json").unwrap();
                a[i] = "{dir}/projector.json";
                a
            },
        ),
    ]);
    // ---- pictures to edit ----
    v.extend([
        with(
            Case {
                name: "a corrupt PNG",
                copy_sd: false,
                setup: |d| {
                    png(&d.join("in.png"));
                    truncate(&d.join("in.png"), &d.join("bad.png"), 60)
                },
                args: &[],
                expect: &["bad.png"],
            },
            edit_args(&["--image", "{dir}/bad.png", "--audio", "{thunder}"]),
        ),
        with(
            Case {
                name: "an empty JPEG",
                copy_sd: false,
                setup: |d| std::fs::write(d.join("empty.jpg"), "").unwrap(),
                args: &[],
                expect: &["empty.jpg"],
            },
            edit_args(&["--image", "{dir}/empty.jpg", "--audio", "{thunder}"]),
        ),
        with(
            Case {
                name: "a PNG claiming 100000 x 100000 pixels",
                copy_sd: false,
                setup: |d| png_header(&d.join("huge.png"), 100_000, 100_000),
                args: &[],
                expect: &["huge.png", "100000"],
            },
            edit_args(&["--image", "{dir}/huge.png", "--audio", "{thunder}"]),
        ),
        with(
            Case {
                name: "a size that is not WxH",
                copy_sd: false,
                setup: |d| png(&d.join("in.png")),
                args: &[],
                expect: &["--size", "64by64"],
            },
            edit_args(&[
                "--image",
                "{dir}/in.png",
                "--audio",
                "{thunder}",
                "--size",
                "64by64",
            ]),
        ),
        with(
            Case {
                name: "an edit size over the memory budget",
                copy_sd: false,
                setup: |d| png(&d.join("in.png")),
                args: &[],
                expect: &["edit", "memory budget", "--max-memory"],
            },
            edit_args(&[
                "--image",
                "{dir}/in.png",
                "--audio",
                "{thunder}",
                "--max-memory",
                "2M",
            ]),
        ),
        with(
            Case {
                name: "an SDEdit strength above 1",
                copy_sd: false,
                setup: |d| png(&d.join("in.png")),
                args: &[],
                expect: &["strength", "2"],
            },
            edit_args(&[
                "--image",
                "{dir}/in.png",
                "--audio",
                "{thunder}",
                "--mode",
                "sdedit",
                "--strength",
                "2",
            ]),
        ),
        with(
            Case {
                name: "an image path that is a folder",
                copy_sd: false,
                setup: |d| std::fs::create_dir(d.join("pic.png")).unwrap(),
                args: &[],
                expect: &["pic.png"],
            },
            edit_args(&["--image", "{dir}/pic.png", "--audio", "{thunder}"]),
        ),
    ]);
    // ---- training data and the other subcommands ----
    v.extend([
        plain(Case {
            name: "a training manifest that does not exist",
            copy_sd: false,
            setup: stage1_inputs,
            args: &[
                "train",
                "stage1",
                "--config",
                "{dir}/stage1.json",
                "--manifest",
                "{dir}/absent.csv",
                "--out",
                "{dir}/run",
            ],
            expect: &["absent.csv"],
        }),
        plain(Case {
            name: "a one-megabyte training budget",
            copy_sd: false,
            setup: |d| {
                stage1_inputs(d);
                png(&d.join("a.png"));
                std::fs::write(
                    d.join("manifest.csv"),
                    "audio,image,caption\na.wav,a.png,thunder\n",
                )
                .unwrap()
            },
            args: &[
                "train",
                "stage1",
                "--config",
                "{dir}/stage1.json",
                "--manifest",
                "{dir}/manifest.csv",
                "--out",
                "{dir}/run",
                "--max-memory",
                "1M",
            ],
            expect: &["stage 1 training", "1.0 MiB", "--max-memory"],
        }),
        plain(Case {
            name: "a manifest with an unterminated quote",
            copy_sd: false,
            setup: |d| {
                stage1_inputs(d);
                std::fs::write(d.join("m.csv"), "audio,caption\n\"a.wav,cat\n").unwrap()
            },
            args: &[
                "train",
                "stage1",
                "--config",
                "{dir}/stage1.json",
                "--manifest",
                "{dir}/m.csv",
                "--out",
                "{dir}/run",
            ],
            expect: &["m.csv"],
        }),
        plain(Case {
            name: "a JSONL manifest with a broken line",
            copy_sd: false,
            setup: |d| {
                stage1_inputs(d);
                std::fs::write(d.join("m.jsonl"), "{\"audio\": \"a.wav\"}\n{\"audio\": \n").unwrap()
            },
            args: &[
                "train",
                "stage1",
                "--config",
                "{dir}/stage1.json",
                "--manifest",
                "{dir}/m.jsonl",
                "--out",
                "{dir}/run",
            ],
            expect: &["m.jsonl"],
        }),
        plain(Case {
            name: "a stage config that is not JSON",
            copy_sd: false,
            setup: |d| {
                stage1_inputs(d);
                std::fs::write(d.join("stage.json"), "{lr: 1e-4}").unwrap()
            },
            args: &[
                "train",
                "stage1",
                "--config",
                "{dir}/stage.json",
                "--manifest",
                "{dir}/manifest.csv",
                "--out",
                "{dir}/run",
            ],
            expect: &["stage.json"],
        }),
        plain(Case {
            name: "a tune config that is not JSON",
            copy_sd: false,
            setup: |d| std::fs::write(d.join("tune.json"), "[").unwrap(),
            args: &[
                "tune",
                "--config",
                "{dir}/tune.json",
                "--study",
                "{dir}/study",
            ],
            expect: &["tune.json"],
        }),
        plain(Case {
            name: "export of a corrupt adapter pickle",
            copy_sd: false,
            setup: |d| std::fs::write(d.join("landscape.pt"), b"PK\x03\x04 not a zip").unwrap(),
            args: &[
                "export",
                "--model",
                "{sd}",
                "--adapters",
                "{dir}/landscape.pt",
                "--out",
                "{dir}/out.safetensors",
            ],
            expect: &["landscape.pt"],
        }),
        plain(Case {
            name: "parity on a folder without cases",
            copy_sd: false,
            setup: |d| std::fs::create_dir(d.join("nofixture")).unwrap(),
            args: &["parity", "{dir}/nofixture"],
            expect: &["nofixture"],
        }),
        plain(Case {
            name: "parity with a broken cases.json",
            copy_sd: false,
            setup: |d| {
                std::fs::create_dir_all(d.join("fx/reference")).unwrap();
                std::fs::write(d.join("fx/reference/cases.json"), "{\"cases\": [").unwrap()
            },
            args: &["parity", "{dir}/fx"],
            expect: &["cases.json"],
        }),
    ]);
    v
}

/// Peak resident memory of finished children (`ru_maxrss`, KiB on Linux).
fn children_max_rss_kib() -> i64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a plain struct.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr()) };
    assert_eq!(rc, 0);
    // SAFETY: initialised by the successful call above.
    unsafe { usage.assume_init() }.ru_maxrss
}

#[test]
fn every_malformed_input_is_a_named_error_with_no_output() {
    let cases = cases();
    assert!(cases.len() >= 40, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for (case, args) in &cases {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let sd = if case.copy_sd {
            copy_dir(&fixtures().join("sd15-tiny"), &d.join("sd"));
            d.join("sd")
        } else {
            fixtures().join("sd15-tiny")
        };
        (case.setup)(d);
        let before: Vec<_> = walk(d);
        let fill = |a: &str| {
            a.replace("{dir}", &d.display().to_string())
                .replace("{sd}", &sd.display().to_string())
                .replace(
                    "{tiny}",
                    &fixtures().join("sonic-tiny").display().to_string(),
                )
                .replace("{thunder}", &thunder().display().to_string())
        };
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sonic"));
        cmd.current_dir(d)
            .env_remove("SONIC_DEVICE")
            .env("HF_HUB_OFFLINE", "1");
        for a in args {
            cmd.arg(fill(a));
        }
        let has_out = args.contains(&"--out");
        if !has_out && matches!(args[0], "generate" | "edit") {
            cmd.arg("--out").arg(d.join("out.png"));
        }
        let o = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        let mut problems = Vec::new();
        match o.status.code() {
            Some(0) => problems.push("succeeded".to_string()),
            Some(101) => problems.push("panicked (exit 101)".to_string()),
            None => problems.push(format!("killed by a signal: {:?}", o.status)),
            Some(_) => {}
        }
        if stderr.contains("panicked") {
            problems.push("printed a panic".into());
        }
        for w in case.expect {
            let w = fill(w);
            if !stderr.contains(&w) {
                problems.push(format!("message lacks `{w}`"));
            }
        }
        let after = walk(d);
        let new: Vec<_> = after.iter().filter(|p| !before.contains(p)).collect();
        // A training run may create its (empty) run folder before reading its inputs; nothing
        // else may appear: no picture, no weights file, no temporary.
        let new: Vec<_> = new
            .into_iter()
            .filter(|p| !(p.ends_with("run") || p.ends_with("study")))
            .collect();
        if !new.is_empty() {
            problems.push(format!("left files: {new:?}"));
        }
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n  stderr: {}",
                case.name,
                problems.join("; "),
                stderr.trim()
            ));
        }
    }
    // No case allocated anything near its absurd sizes (the fixtures need ~100 MB).
    let rss = children_max_rss_kib();
    assert!(rss < 2 << 20, "a child reached {} MiB", rss >> 10);
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

/// Every path under `dir`.
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        if let Ok(rd) = std::fs::read_dir(&p) {
            for e in rd.flatten() {
                let path = e.path();
                if path.is_dir() {
                    stack.push(path.clone());
                }
                out.push(path);
            }
        }
    }
    out
}
