//! What a run reports: [`ToyWorldReport`] and the progress events ([`ToyProgress`]).

use super::*;

/// What a run reports.
#[derive(Debug, Clone)]
pub struct ToyWorldReport {
    /// Fraction of held-out clips whose sample is nearest its own class prototype.
    pub accuracy: f64,
    /// The same with the adapters at strength 0.
    pub accuracy_f0: f64,
    /// Wall time of the whole run in seconds.
    pub seconds: f64,
    /// `confusion[true][predicted]` counts with audio.
    pub confusion: [[usize; CLASSES]; CLASSES],
    /// The same at strength 0.
    pub confusion_f0: [[usize; CLASSES]; CLASSES],
    /// Accuracy of the base model alone, sampled with each held-out clip's caption instead of
    /// its audio (text guidance at the same scale, adapters off, the same noise): the ceiling
    /// that the adapters can reach with this base model.
    pub text_accuracy: f64,
    /// `confusion[true][predicted]` counts of the caption-conditioned samples.
    pub confusion_text: [[usize; CLASSES]; CLASSES],
    /// Accuracy of nearest-centroid classification of the held-out clips' CLAP embeddings
    /// (how separable the frozen audio encoder makes the classes).
    pub clap_accuracy: f64,
    /// Accuracy of nearest-centroid classification of the held-out clips' audio tokens (the
    /// trained projector's output) against the training clips' token centroids.
    pub token_accuracy: f64,
    /// Last base-model loss (mean of the last 20 steps; NaN when the base model was loaded
    /// from [`ToyWorldOptions::base_weights`]).
    pub base_loss: f64,
    /// Last stage-1 loss (mean of the last 20 steps).
    pub stage1_loss: f64,
    /// Last stage-2 loss (mean of the last 20 steps).
    pub stage2_loss: f64,
    /// Seconds per phase: data, base, stage 1, stage 2, evaluation.
    pub phase_seconds: Vec<(&'static str, f64)>,
    /// The sample grid, when written.
    pub grid: Option<PathBuf>,
}

impl ToyWorldReport {
    /// The benchmark's one-line summary:
    /// `toy-world: accuracy=<a> accuracy_f0=<b> seconds=<s>`.
    pub fn summary_line(&self) -> String {
        format!(
            "toy-world: accuracy={:.3} accuracy_f0={:.3} seconds={:.1}",
            self.accuracy, self.accuracy_f0, self.seconds
        )
    }

    /// The diagnostics behind the summary line, several lines: separability of the held-out
    /// clips, the last losses, the three confusion matrices (with audio, at strength 0, base
    /// model with the captions) and the grid's path.
    pub fn details(&self) -> String {
        let mut out = format!(
            "held-out clips, nearest-centroid accuracy: CLAP {:.3}, audio tokens {:.3}; losses: base {:.4}, stage 1 {:.4}, stage 2 {:.4}\n\
             confusion (rows: sound, columns: drawn class) with audio | adapters at strength 0 | base model with the captions (accuracy {:.3}):\n",
            self.clap_accuracy,
            self.token_accuracy,
            self.base_loss,
            self.stage1_loss,
            self.stage2_loss,
            self.text_accuracy
        );
        for (c, name) in SOUND_NAMES.iter().enumerate() {
            out.push_str(&format!(
                "  {:<12} {:?} | {:?} | {:?}\n",
                name, self.confusion[c], self.confusion_f0[c], self.confusion_text[c]
            ));
        }
        if let Some(g) = &self.grid {
            out.push_str(&format!("samples: {}\n", g.display()));
        }
        out
    }

    /// Whether the run meets the bars of `options`.
    pub fn passed(&self, options: &ToyWorldOptions) -> bool {
        self.accuracy >= options.min_accuracy && self.accuracy_f0 <= options.max_accuracy_f0
    }
}

/// Progress events of [`run`].
#[derive(Debug, Clone, PartialEq)]
pub enum ToyProgress {
    /// A phase started.
    Phase(&'static str),
    /// A training step finished.
    Step {
        /// `base`, `stage1` or `stage2`.
        phase: &'static str,
        /// 1-based step.
        step: usize,
        /// Steps of the phase.
        total: usize,
        /// The step's loss.
        loss: f64,
    },
    /// A phase finished.
    PhaseDone {
        /// The phase.
        phase: &'static str,
        /// Its wall time.
        seconds: f64,
    },
}
