//! The captioner on the `tests-data/blip-tiny` folder: the decoding helpers agree with the full
//! logits, the LM head loads from every layout of its tied tensors, and bad inputs are typed
//! errors. (Parity with transformers: crates/sonic-parity/tests/caption.rs.)

use burn::tensor::{Int, Tensor, TensorData};
use sonic_caption::{BlipForConditionalGeneration, CaptionError};
use sonic_core::weights::{NamedTensor, read_safetensors_f32, write_safetensors_f32};
use std::path::{Path, PathBuf};

fn tiny() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/blip-tiny")
}

fn device() -> burn::tensor::Device {
    sonic_core::device::parse_device("flex").unwrap()
}

fn ids(rows: &[&[i64]]) -> Tensor<2, Int> {
    let s = rows[0].len();
    let data: Vec<i64> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    Tensor::from_data(TensorData::new(data, [rows.len(), s]), &device())
}

fn pixels(b: usize, size: usize, seed: f32) -> Tensor<4> {
    let n = b * 3 * size * size;
    let data: Vec<f32> = (0..n).map(|i| (i as f32 * 0.37 + seed).sin()).collect();
    Tensor::from_data(TensorData::new(data, [b, 3, size, size]), &device())
}

fn max_diff<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
    (a - b).abs().max().into_scalar()
}

#[test]
fn decoding_helpers_agree_with_the_full_logits() {
    let model = BlipForConditionalGeneration::from_dir(&tiny(), &device()).unwrap();
    let size = model.config.vision.image_size;
    let bos = model.bos_token_id().unwrap();
    let embeds = model.image_embeds(pixels(2, size, 0.0)).unwrap();
    let input = ids(&[&[bos, 20, 31, 40], &[bos, 50, 61, 70]]);
    let full = model.logits(input.clone(), None, embeds.clone()).unwrap();
    let [b, s, v] = full.dims();
    assert_eq!((b, s, v), (2, 4, model.vocab_size()));

    // The last position alone, from a precomputed context.
    let ctx = model.image_context(embeds.clone()).unwrap();
    let last = model.next_token_logits(input.clone(), None, &ctx).unwrap();
    let want = full.clone().slice([0..2, 3..4, 0..v]).reshape([2, v]);
    assert!(max_diff(last, want) < 1e-5);

    // An all-ones mask and explicit positions 0..S change nothing; causality: a prefix's
    // logits do not depend on later tokens.
    let mask = ids(&[&[1, 1, 1, 1], &[1, 1, 1, 1]]);
    let pos = ids(&[&[0, 1, 2, 3], &[0, 1, 2, 3]]);
    let masked = model
        .decoder_logits(input.clone(), Some(mask), Some(pos), &ctx, false)
        .unwrap();
    assert!(max_diff(masked, full.clone()) < 1e-5);
    let prefix = model
        .logits(ids(&[&[bos, 20], &[bos, 50]]), None, embeds.clone())
        .unwrap();
    assert!(max_diff(prefix, full.clone().slice([0..2, 0..2, 0..v])) < 1e-5);

    // Beams: rows [1, 1, 0] of the context give row 1's logits twice, then row 0's.
    let beams = ctx.select(&[1, 1, 0]).unwrap();
    let three = ids(&[&[bos, 50, 61, 70], &[bos, 50, 61, 70], &[bos, 20, 31, 40]]);
    let got = model.next_token_logits(three, None, &beams).unwrap();
    let row = |t: &Tensor<2>, i: usize| t.clone().slice([i..i + 1, 0..v]);
    let last = model.next_token_logits(input, None, &ctx).unwrap();
    assert!(max_diff(row(&got, 0), row(&last, 1)) < 1e-5);
    assert!(max_diff(row(&got, 1), row(&last, 1)) < 1e-5);
    assert!(max_diff(row(&got, 2), row(&last, 0)) < 1e-5);
    // The image matters.
    assert!(max_diff(row(&last, 0), row(&last, 1)) > 1e-2);
}

/// Copies blip-tiny to a temporary folder with its weights rewritten by `edit` (and both
/// `tie_word_embeddings` flags false when `untie`).
fn with_weights(edit: impl FnOnce(&mut Vec<NamedTensor>), untie: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let mut tensors = read_safetensors_f32(&tiny().join("model.safetensors")).unwrap();
    edit(&mut tensors);
    write_safetensors_f32(&dir.path().join("model.safetensors"), &tensors, None).unwrap();
    let mut cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tiny().join("config.json")).unwrap()).unwrap();
    if untie {
        cfg["tie_word_embeddings"] = false.into();
        cfg["text_config"]["tie_word_embeddings"] = false.into();
    }
    std::fs::write(dir.path().join("config.json"), cfg.to_string()).unwrap();
    dir
}

/// A rewrite of the weights file's tensors.
type Edit = fn(&mut Vec<NamedTensor>);

fn copy(tensors: &[NamedTensor], from: &str, to: &str) -> NamedTensor {
    let t = tensors.iter().find(|t| t.name == from).unwrap();
    NamedTensor {
        name: to.into(),
        ..t.clone()
    }
}

const WORDS: &str = "text_decoder.bert.embeddings.word_embeddings.weight";
const DEC_W: &str = "text_decoder.cls.predictions.decoder.weight";
const DEC_B: &str = "text_decoder.cls.predictions.decoder.bias";
const BIAS: &str = "text_decoder.cls.predictions.bias";

#[test]
fn every_layout_of_the_tied_head_gives_the_same_logits() {
    let d = device();
    let reference = BlipForConditionalGeneration::from_dir(&tiny(), &d).unwrap();
    let size = reference.config.vision.image_size;
    let bos = reference.bos_token_id().unwrap();
    let embeds = reference.image_embeds(pixels(1, size, 1.0)).unwrap();
    let input = ids(&[&[bos, 7, 8, 9]]);
    let want = reference
        .logits(input.clone(), None, embeds.clone())
        .unwrap();
    let layouts: [(&str, Edit); 3] = [
        ("all four (a transformers 4 / pickle-converted file)", |t| {
            let (w, b) = (copy(t, WORDS, DEC_W), copy(t, BIAS, DEC_B));
            t.extend([w, b]);
        }),
        (
            "decoder's only (the sources missing: transformers swaps)",
            |t| {
                let (w, b) = (copy(t, WORDS, DEC_W), copy(t, BIAS, DEC_B));
                t.retain(|x| x.name != WORDS && x.name != BIAS);
                t.extend([w, b]);
            },
        ),
        ("word embeddings and decoder.bias", |t| {
            let b = copy(t, BIAS, DEC_B);
            t.retain(|x| x.name != BIAS);
            t.push(b);
        }),
    ];
    for (label, edit) in layouts {
        let dir = with_weights(edit, false);
        let model = BlipForConditionalGeneration::from_dir(dir.path(), &d)
            .unwrap_or_else(|e| panic!("{label}: {e}"));
        let got = model.logits(input.clone(), None, embeds.clone()).unwrap();
        assert!(max_diff(got, want.clone()) < 1e-6, "{label}");
    }
    // Untied: the decoder's own tensors are used (a different bias changes the logits).
    let dir = with_weights(
        |t| {
            let w = copy(t, WORDS, DEC_W);
            let mut b = copy(t, BIAS, DEC_B);
            b.data.iter_mut().for_each(|x| *x += 1.0);
            t.extend([w, b]);
        },
        true,
    );
    let model = BlipForConditionalGeneration::from_dir(dir.path(), &d).unwrap();
    let got = model.logits(input, None, embeds).unwrap();
    assert!((max_diff(got, want) - 1.0).abs() < 1e-4);
}

#[test]
fn missing_head_tensors_are_named() {
    let d = device();
    let dir = with_weights(|t| t.retain(|x| x.name != BIAS), false);
    let e = BlipForConditionalGeneration::from_dir(dir.path(), &d).unwrap_err();
    assert!(e.to_string().contains(DEC_B), "{e}");
    // Untied without the decoder's weight: transformers would leave it random.
    let dir = with_weights(|_| {}, true);
    let e = BlipForConditionalGeneration::from_dir(dir.path(), &d).unwrap_err();
    assert!(e.to_string().contains(DEC_W), "{e}");
    // Any other tensor missing: named as the file spells it (LayerNorm, attention.self).
    let key = "text_decoder.bert.encoder.layer.1.crossattention.self.key.weight";
    let dir = with_weights(|t| t.retain(|x| x.name != key), false);
    let e = BlipForConditionalGeneration::from_dir(dir.path(), &d).unwrap_err();
    assert!(e.to_string().contains(key), "{e}");
    let key = "text_decoder.bert.embeddings.LayerNorm.weight";
    let dir = with_weights(|t| t.retain(|x| x.name != key), false);
    let e = BlipForConditionalGeneration::from_dir(dir.path(), &d).unwrap_err();
    assert!(e.to_string().contains(key), "{e}");
}

#[test]
fn bad_inputs_are_typed_errors() {
    let d = device();
    let model = BlipForConditionalGeneration::from_dir(&tiny(), &d).unwrap();
    let size = model.config.vision.image_size;
    let p = model.config.vision.patch_size;
    let vocab = model.vocab_size() as i64;
    let embeds = model.image_embeds(pixels(1, size, 2.0)).unwrap();
    let ctx = model.image_context(embeds.clone()).unwrap();
    let e = model
        .next_token_logits(ids(&[&[vocab]]), None, &ctx)
        .unwrap_err();
    assert!(matches!(e, CaptionError::TokenOutOfRange { .. }), "{e}");
    let e = model
        .next_token_logits(ids(&[&[-1]]), None, &ctx)
        .unwrap_err();
    assert!(matches!(e, CaptionError::TokenOutOfRange { .. }), "{e}");
    let long = vec![1i64; model.max_positions() + 1];
    let e = model
        .next_token_logits(ids(&[&long]), None, &ctx)
        .unwrap_err();
    assert!(matches!(e, CaptionError::SequenceLength { .. }), "{e}");
    let e = model
        .next_token_logits(ids(&[&[1], &[2]]), None, &ctx)
        .unwrap_err();
    assert!(matches!(e, CaptionError::Input { .. }), "{e}");
    let e = model
        .next_token_logits(ids(&[&[1, 2]]), Some(ids(&[&[1]])), &ctx)
        .unwrap_err();
    assert!(e.to_string().contains("attention_mask"), "{e}");
    let e = model
        .decoder_logits(
            ids(&[&[1, 2]]),
            None,
            Some(ids(&[&[0, 99_999]])),
            &ctx,
            true,
        )
        .unwrap_err();
    assert!(e.to_string().contains("position_ids"), "{e}");
    assert!(ctx.select(&[1]).is_err());
    assert!(ctx.select(&[]).is_err());
    for shape in [
        [1, 4, size, size],
        [1, 3, p - 1, size],
        [1, 3, size + p, size],
    ] {
        let e = model.image_embeds(Tensor::zeros(shape, &d)).unwrap_err();
        assert!(e.to_string().contains("pixel_values"), "{shape:?}: {e}");
    }
    let e = model
        .image_context(Tensor::zeros(
            [1, 3, model.config.vision.hidden_size + 1],
            &d,
        ))
        .unwrap_err();
    assert!(e.to_string().contains("image_embeds"), "{e}");
    // A smaller image gives fewer tokens, as transformers (the first position rows).
    let small = model.image_embeds(pixels(1, size - p, 3.0)).unwrap();
    let n = (size / p - 1) * (size / p - 1);
    assert_eq!(small.dims()[1], 1 + n);
}
