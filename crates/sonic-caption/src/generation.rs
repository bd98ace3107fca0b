//! Greedy and beam-search decoding, equal to transformers' `generate` (5.x) for the settings
//! captioners use: `max_length`, `min_length`, `repetition_penalty`, `no_repeat_ngram_size`,
//! `num_beams`, `length_penalty`, `early_stopping`, several end-of-sequence ids, `pad_token_id`.
//!
//! The model side is a [`StepLogits`]: the logits of the last position of a batch of sequences
//! of one length. Decoding is written once for every model; `BlipForConditionalGeneration`
//! plugs its text decoder in.
//!
//! What is reproduced exactly (the generated ids are compared with transformers' in the tests):
//! - the logits processors and their order: repetition penalty (a score `s` of a token already
//!   in the sequence becomes `s * p` when negative, `s / p` otherwise), no-repeat n-grams
//!   (tokens that would complete an n-gram already in the sequence get `-inf`), minimum length
//!   (the end-of-sequence ids get `-inf` while the sequence is shorter than `min_length`);
//! - greedy: the first maximum; finished rows are continued with `pad_token_id`; stops when
//!   every row has ended or `max_length` is reached;
//! - beam search (transformers' vectorised `_beam_search`): float32 log-softmax, processors on
//!   the log-probabilities, `max(2, 1 + #eos) * num_beams` candidates per item, the best
//!   `num_beams` unfinished ones continue, finished candidates among the first `num_beams` enter
//!   the hypotheses with `score / generated_len ^ length_penalty`, the early-stop heuristic
//!   (`early_stopping` true / false / "never"), the batch-wide stopping rule, and the output
//!   padding (`pad_token_id`, or the first end-of-sequence id when the pad id is 0 or unset).

/// `early_stopping` of a generation config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EarlyStopping {
    /// `true`: stop an item as soon as `num_beams` hypotheses are finished.
    True,
    /// `false`: stop when the best running beam cannot beat the worst hypothesis at the current
    /// length (transformers' default).
    False,
    /// `"never"`: the canonical beam search (the best score a running beam could still reach).
    Never,
}

/// The decoding settings (transformers' `GenerationConfig` names).
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationConfig {
    /// The longest sequence, prompt included.
    pub max_length: usize,
    /// The shortest sequence (prompt included) before an end-of-sequence id is allowed.
    pub min_length: usize,
    /// 1: greedy; more: beam search.
    pub num_beams: usize,
    /// 1.0: off.
    pub repetition_penalty: f32,
    /// 0: off.
    pub no_repeat_ngram_size: usize,
    /// The exponent of the generated length that divides a hypothesis' score.
    pub length_penalty: f64,
    /// See [`EarlyStopping`].
    pub early_stopping: EarlyStopping,
    /// The ids that end a sequence.
    pub eos_token_ids: Vec<i64>,
    /// The id that pads finished sequences.
    pub pad_token_id: Option<i64>,
}

/// Settings that cannot be decoded with.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GenerationError {
    /// A setting out of range (names it and why).
    #[error("generation setting `{key}` = {value}: {reason}")]
    Setting {
        /// The setting.
        key: &'static str,
        /// Its value.
        value: String,
        /// Why it is refused.
        reason: String,
    },
    /// The model returned logits of the wrong shape or non-finite values.
    #[error("the model's logits: {0}")]
    Logits(String),
}

/// The model side of decoding.
pub trait StepLogits {
    /// The model's error (which decoding errors convert into).
    type Error: From<GenerationError>;

    /// The logits `[rows][vocab]` of the last position of each sequence (all of one length);
    /// sequence `i` belongs to batch item `items[i]` (e.g. the image it is conditioned on).
    fn last_logits(
        &mut self,
        sequences: &[Vec<i64>],
        items: &[usize],
    ) -> Result<Vec<Vec<f32>>, Self::Error>;
}

/// The most tokens and beams a run may ask for (checked before anything is allocated).
pub const MAX_LENGTH: usize = 4096;
/// See [`MAX_LENGTH`].
pub const MAX_BEAMS: usize = 64;

/// New tokens a caption gets when nothing says otherwise (transformers' default `max_length`
/// of 20, counted after the prompt by BLIP's `generate`).
pub const DEFAULT_NEW_TOKENS: usize = 20;

#[derive(Debug, Default, serde::Deserialize)]
struct RawGenerationConfig {
    max_length: Option<usize>,
    max_new_tokens: Option<usize>,
    min_length: Option<usize>,
    num_beams: Option<usize>,
    repetition_penalty: Option<f32>,
    no_repeat_ngram_size: Option<usize>,
    length_penalty: Option<f64>,
    early_stopping: Option<serde_json::Value>,
}

/// The decoding settings of a model folder's `generation_config.json` (transformers' keys:
/// `max_length` or `max_new_tokens`, `min_length`, `num_beams`, `repetition_penalty`,
/// `no_repeat_ngram_size`, `length_penalty`, `early_stopping`), else greedy with
/// [`DEFAULT_NEW_TOKENS`] new tokens after a prompt of `prompt_len` ids. The end and pad ids
/// are left to the model. (transformers 5 ignores this file in BLIP's own `generate`; here it
/// is honoured, so a folder can carry its captioning settings.)
pub fn from_dir(
    dir: &std::path::Path,
    prompt_len: usize,
) -> Result<GenerationConfig, GenerationError> {
    let path = dir.join("generation_config.json");
    let raw: RawGenerationConfig = match std::fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| setting("generation_config.json", path.display(), &e.to_string()))?,
        Err(_) => RawGenerationConfig::default(),
    };
    let early_stopping = match &raw.early_stopping {
        None | Some(serde_json::Value::Bool(false)) => EarlyStopping::False,
        Some(serde_json::Value::Bool(true)) => EarlyStopping::True,
        Some(serde_json::Value::String(s)) if s == "never" => EarlyStopping::Never,
        Some(other) => {
            return Err(setting(
                "early_stopping",
                other,
                "expected true, false or \"never\"",
            ));
        }
    };
    let max_length = match (raw.max_new_tokens, raw.max_length) {
        (Some(n), _) => prompt_len.saturating_add(n),
        (None, Some(m)) => m,
        (None, None) => prompt_len + DEFAULT_NEW_TOKENS,
    };
    Ok(GenerationConfig {
        max_length,
        min_length: raw.min_length.unwrap_or(0),
        num_beams: raw.num_beams.unwrap_or(1),
        repetition_penalty: raw.repetition_penalty.unwrap_or(1.0),
        no_repeat_ngram_size: raw.no_repeat_ngram_size.unwrap_or(0),
        length_penalty: raw.length_penalty.unwrap_or(1.0),
        early_stopping,
        eos_token_ids: Vec::new(),
        pad_token_id: None,
    })
}

fn setting(key: &'static str, value: impl ToString, reason: &str) -> GenerationError {
    GenerationError::Setting {
        key,
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

impl GenerationConfig {
    /// Rejects settings transformers would refuse or that are not a run.
    pub fn validate(&self, prompt_len: usize) -> Result<(), GenerationError> {
        if self.num_beams == 0 || self.num_beams > MAX_BEAMS {
            return Err(setting(
                "num_beams",
                self.num_beams,
                &format!("must be in 1..={MAX_BEAMS}"),
            ));
        }
        if self.max_length == 0 || self.max_length > MAX_LENGTH {
            return Err(setting(
                "max_length",
                self.max_length,
                &format!("must be in 1..={MAX_LENGTH}"),
            ));
        }
        if prompt_len == 0 || prompt_len >= self.max_length {
            return Err(setting(
                "max_length",
                self.max_length,
                &format!("must exceed the prompt's length {prompt_len} (which must be at least 1)"),
            ));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(setting(
                "repetition_penalty",
                self.repetition_penalty,
                "must be positive",
            ));
        }
        if !self.length_penalty.is_finite() {
            return Err(setting(
                "length_penalty",
                self.length_penalty,
                "must be finite",
            ));
        }
        if self.num_beams == 1 && self.pad_token_id.is_none() && self.eos_token_ids.is_empty() {
            return Err(setting(
                "pad_token_id",
                "null",
                "greedy decoding needs a pad or an end id",
            ));
        }
        Ok(())
    }

    /// The id finished greedy rows are continued with (transformers: the pad id, else the first
    /// end id).
    fn greedy_pad(&self) -> i64 {
        self.pad_token_id
            .or_else(|| self.eos_token_ids.first().copied())
            .unwrap_or(0)
    }

    /// The id beam-search outputs are padded with (transformers' `pad_token_id or eos[0]`: a pad
    /// id of 0 counts as unset; -1 without end ids).
    fn beam_fill(&self) -> i64 {
        match (self.pad_token_id, self.eos_token_ids.first()) {
            (_, None) => -1,
            (Some(p), Some(_)) if p != 0 => p,
            (_, Some(&e)) => e,
        }
    }

    fn is_eos(&self, token: i64) -> bool {
        self.eos_token_ids.contains(&token)
    }

    /// The logits processors, in transformers' order, on one row's scores.
    fn process(&self, seq: &[i64], scores: &mut [f32]) {
        let vocab = scores.len();
        let in_vocab = |t: i64| usize::try_from(t).ok().filter(|&t| t < vocab);
        if self.repetition_penalty != 1.0 {
            let p = self.repetition_penalty;
            // gather, then scatter: each token once, whatever its count.
            let mut seen = std::collections::BTreeSet::new();
            for t in seq.iter().filter_map(|&t| in_vocab(t)) {
                if seen.insert(t) {
                    let s = scores[t];
                    scores[t] = if s < 0.0 { s * p } else { s / p };
                }
            }
        }
        let n = self.no_repeat_ngram_size;
        if n > 0 && seq.len() >= n {
            let prefix = &seq[seq.len() + 1 - n..];
            for w in seq.windows(n) {
                if &w[..n - 1] == prefix
                    && let Some(t) = in_vocab(w[n - 1])
                {
                    scores[t] = f32::NEG_INFINITY;
                }
            }
        }
        if seq.len() < self.min_length {
            for t in self.eos_token_ids.iter().filter_map(|&t| in_vocab(t)) {
                scores[t] = f32::NEG_INFINITY;
            }
        }
    }
}

fn check_logits(logits: &[Vec<f32>], rows: usize) -> Result<usize, GenerationError> {
    let vocab = logits.first().map_or(0, Vec::len);
    if logits.len() != rows || vocab == 0 || logits.iter().any(|r| r.len() != vocab) {
        return Err(GenerationError::Logits(format!(
            "expected {rows} rows of one vocabulary, got {} rows",
            logits.len()
        )));
    }
    if logits.iter().flatten().any(|v| v.is_nan()) {
        return Err(GenerationError::Logits("NaN values".into()));
    }
    Ok(vocab)
}

/// Decodes from `prompts` (one per batch item, all of one length): greedy when
/// `config.num_beams` is 1, else beam search. Returns one sequence per item, prompt included,
/// padded to one length as transformers pads its output.
pub fn generate<M: StepLogits>(
    model: &mut M,
    prompts: &[Vec<i64>],
    config: &GenerationConfig,
) -> Result<Vec<Vec<i64>>, M::Error> {
    let p = prompts.first().map_or(0, Vec::len);
    if prompts.is_empty() || prompts.iter().any(|s| s.len() != p) {
        return Err(setting(
            "prompts",
            prompts.len(),
            "need one or more prompts of one length",
        )
        .into());
    }
    config.validate(p)?;
    if config.num_beams == 1 {
        greedy(model, prompts, config)
    } else {
        beam_search(model, prompts, config)
    }
}

fn greedy<M: StepLogits>(
    model: &mut M,
    prompts: &[Vec<i64>],
    config: &GenerationConfig,
) -> Result<Vec<Vec<i64>>, M::Error> {
    let b = prompts.len();
    let items: Vec<usize> = (0..b).collect();
    let mut seqs = prompts.to_vec();
    let mut unfinished = vec![true; b];
    let pad = config.greedy_pad();
    while seqs[0].len() < config.max_length {
        let mut logits = model.last_logits(&seqs, &items)?;
        check_logits(&logits, b)?;
        for (i, (seq, row)) in seqs.iter_mut().zip(logits.iter_mut()).enumerate() {
            config.process(seq, row);
            // torch.argmax: the first maximum.
            let next =
                (1..row.len()).fold(0, |best, t| if row[t] > row[best] { t } else { best }) as i64;
            let token = if unfinished[i] { next } else { pad };
            seq.push(token);
            unfinished[i] &= !config.is_eos(token);
        }
        if unfinished.iter().all(|u| !u) {
            break;
        }
    }
    Ok(seqs)
}

/// float32 log-softmax of one row, as torch computes it (max-shifted).
fn log_softmax(row: &mut [f32]) {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f32 = row.iter().map(|&v| (v - max).exp()).sum();
    let log_sum = sum.ln();
    row.iter_mut().for_each(|v| *v = *v - max - log_sum);
}

/// The indices of the `k` largest values, largest first (ties: the lower index first).
fn top_k(values: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[b].total_cmp(&values[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

struct Hypotheses {
    seqs: Vec<Vec<i64>>,
    scores: Vec<f32>,
    finished: Vec<bool>,
}

fn beam_search<M: StepLogits>(
    model: &mut M,
    prompts: &[Vec<i64>],
    config: &GenerationConfig,
) -> Result<Vec<Vec<i64>>, M::Error> {
    let b = prompts.len();
    let nb = config.num_beams;
    let p = prompts[0].len();
    let keep = 2usize.max(1 + config.eos_token_ids.len()) * nb;
    let lp = config.length_penalty;
    let items: Vec<usize> = (0..b).flat_map(|i| std::iter::repeat_n(i, nb)).collect();
    // Running beams per item and their accumulated log-probabilities.
    let mut running: Vec<Vec<Vec<i64>>> = prompts.iter().map(|s| vec![s.clone(); nb]).collect();
    let mut running_scores: Vec<Vec<f32>> = (0..b)
        .map(|_| (0..nb).map(|j| if j == 0 { 0.0 } else { -1e9 }).collect())
        .collect();
    let mut hyps: Vec<Hypotheses> = prompts
        .iter()
        .map(|s| Hypotheses {
            seqs: vec![s.clone(); nb],
            scores: vec![-1e9; nb],
            finished: vec![false; nb],
        })
        .collect();
    let mut unsatisfied = vec![true; b];
    let mut cur_len = p;
    loop {
        let flat: Vec<Vec<i64>> = running.iter().flatten().cloned().collect();
        let mut logits = model.last_logits(&flat, &items)?;
        let vocab = check_logits(&logits, b * nb)?;
        let mut all_hit = true;
        for i in 0..b {
            let mut acc = Vec::with_capacity(nb * vocab);
            for j in 0..nb {
                let row = &mut logits[i * nb + j];
                log_softmax(row);
                config.process(&running[i][j], row);
                acc.extend(row.iter().map(|&v| v + running_scores[i][j]));
            }
            let top = top_k(&acc, keep);
            let cand: Vec<(Vec<i64>, f32, bool)> = top
                .iter()
                .map(|&k| {
                    let (beam, token) = (k / vocab, (k % vocab) as i64);
                    let mut seq = running[i][beam].clone();
                    seq.push(token);
                    let hit = config.is_eos(token) || cur_len + 1 >= config.max_length;
                    (seq, acc[k], hit)
                })
                .collect();
            all_hit &= cand.iter().all(|c| c.2);
            // The best unfinished candidates continue.
            let cont: Vec<f32> = cand
                .iter()
                .map(|c| c.1 + if c.2 { -1e9 } else { 0.0 })
                .collect();
            let next = top_k(&cont, nb);
            running[i] = next.iter().map(|&k| cand[k].0.clone()).collect();
            running_scores[i] = next.iter().map(|&k| cont[k]).collect();
            // Finished candidates among the first `nb` enter the hypotheses.
            let h = &mut hyps[i];
            let denom = ((cur_len + 1 - p) as f64).powf(lp) as f32;
            let full =
                h.finished.iter().all(|&f| f) && config.early_stopping == EarlyStopping::True;
            let mut merged_scores = h.scores.clone();
            let mut merged_finished = h.finished.clone();
            for (k, c) in cand.iter().enumerate() {
                let just = c.2 && k < nb;
                let mut s = c.1 / denom;
                s += if full { -1e9 } else { 0.0 };
                s += if unsatisfied[i] { 0.0 } else { -1e9 };
                s += if just { 0.0 } else { -1e9 };
                merged_scores.push(s);
                merged_finished.push(just);
            }
            let best = top_k(&merged_scores, nb);
            let seq_of = |k: usize| {
                if k < nb {
                    h.seqs[k].clone()
                } else {
                    cand[k - nb].0.clone()
                }
            };
            let seqs: Vec<Vec<i64>> = best.iter().map(|&k| seq_of(k)).collect();
            h.scores = best.iter().map(|&k| merged_scores[k]).collect();
            h.finished = best.iter().map(|&k| merged_finished[k]).collect();
            h.seqs = seqs;
        }
        cur_len += 1;
        for i in 0..b {
            let h = &hyps[i];
            let best_len = if config.early_stopping == EarlyStopping::Never && lp > 0.0 {
                config.max_length - p
            } else {
                cur_len - p
            };
            let best_possible = running_scores[i][0] / (best_len as f64).powf(lp) as f32;
            let min_score = h.scores.iter().copied().fold(f32::INFINITY, f32::min);
            let worst = |j: usize| if h.finished[j] { min_score } else { -1e9 };
            unsatisfied[i] &= (0..nb).any(|j| best_possible > worst(j));
        }
        let improvement_possible = unsatisfied.iter().any(|&u| u);
        let all_finished = hyps.iter().all(|h| h.finished.iter().all(|&f| f));
        let open = !(all_finished && config.early_stopping == EarlyStopping::True);
        if !(improvement_possible && open && !all_hit) {
            break;
        }
    }
    // The best hypothesis of each item, padded to the longest.
    let fill = config.beam_fill();
    let mut out: Vec<Vec<i64>> = hyps.into_iter().map(|h| h.seqs[0].clone()).collect();
    let len = out.iter().map(Vec::len).max().unwrap_or(p);
    for s in &mut out {
        s.resize(len, fill);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Logits from a table: row = the last token, so decisions depend on the sequence.
    struct Table(Vec<Vec<f32>>);

    impl StepLogits for Table {
        type Error = GenerationError;
        fn last_logits(
            &mut self,
            sequences: &[Vec<i64>],
            _items: &[usize],
        ) -> Result<Vec<Vec<f32>>, GenerationError> {
            Ok(sequences
                .iter()
                .map(|s| self.0[*s.last().unwrap() as usize].clone())
                .collect())
        }
    }

    fn config(num_beams: usize) -> GenerationConfig {
        GenerationConfig {
            max_length: 6,
            min_length: 0,
            num_beams,
            repetition_penalty: 1.0,
            no_repeat_ngram_size: 0,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::False,
            eos_token_ids: vec![3],
            pad_token_id: Some(0),
        }
    }

    // token 1 -> 2 -> 1 -> 2 ... (never ends); 2 prefers 1 over 3.
    fn table() -> Table {
        Table(vec![
            vec![0.0, 1.0, 0.0, 0.0],
            vec![0.0, 0.0, 2.0, 0.5],
            vec![0.0, 3.0, 0.0, 1.0],
            vec![0.0, 0.0, 0.0, 0.0],
        ])
    }

    #[test]
    fn greedy_follows_the_table_and_rules_change_it() {
        let out = generate(&mut table(), &[vec![1]], &config(1)).unwrap();
        assert_eq!(out, vec![vec![1, 2, 1, 2, 1, 2]]);
        // No repeated bigram: after 1 2 1, "2" would repeat (1, 2): the end id 3 wins.
        let mut c = config(1);
        c.no_repeat_ngram_size = 2;
        let out = generate(&mut table(), &[vec![1]], &c).unwrap();
        assert_eq!(out, vec![vec![1, 2, 1, 3]]);
        // A strong repetition penalty on the same start also ends early.
        let mut c = config(1);
        c.repetition_penalty = 10.0;
        let out = generate(&mut table(), &[vec![1]], &c).unwrap();
        assert_eq!(out[0][..3], [1, 2, 3]);
    }

    #[test]
    fn min_length_forbids_the_end_id() {
        let mut t = table();
        t.0[2] = vec![0.0, 0.0, 0.0, 5.0]; // 2 -> end at once
        let out = generate(&mut t, &[vec![1]], &config(1)).unwrap();
        assert_eq!(out, vec![vec![1, 2, 3]]);
        let mut c = config(1);
        c.min_length = 4;
        let out = generate(&mut t, &[vec![1]], &c).unwrap();
        assert_eq!(out[0].len(), 4.max(out[0].len()));
        assert_ne!(out[0][2], 3);
    }

    #[test]
    fn bad_settings_and_logits_are_errors() {
        let mut c = config(1);
        c.max_length = 1;
        assert!(generate(&mut table(), &[vec![1]], &c).is_err());
        assert!(generate(&mut table(), &[vec![1], vec![1, 2]], &config(1)).is_err());
        assert!(generate(&mut table(), &[], &config(1)).is_err());
        let mut c = config(0);
        assert!(generate(&mut table(), &[vec![1]], &c).is_err());
        c.num_beams = 2;
        c.repetition_penalty = f32::NAN;
        assert!(generate(&mut table(), &[vec![1]], &c).is_err());
        let mut t = table();
        t.0[1][2] = f32::NAN;
        assert!(matches!(
            generate(&mut t, &[vec![1]], &config(2)),
            Err(GenerationError::Logits(_))
        ));
    }

    #[test]
    fn beam_search_pads_with_the_end_id_when_pad_is_zero() {
        let mut t = table();
        t.0[1] = vec![-10.0, -10.0, -10.0, 5.0]; // 1 -> end, almost surely
        t.0[2] = vec![-10.0, 5.0, -10.0, -10.0]; // 2 -> 1
        let out = generate(&mut t, &[vec![1], vec![2]], &config(2)).unwrap();
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), out[1].len());
        assert_eq!(out, vec![vec![1, 3, 3], vec![2, 1, 3]]);
    }
}
