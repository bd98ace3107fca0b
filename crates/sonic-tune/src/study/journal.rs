//! The study's journal: its events (one JSON object per line), and opening, replaying,
//! appending and crash recovery (see the parent module's docs).

use super::*;

/// The journal file name inside a study folder.
pub const JOURNAL_FILE: &str = "study.jsonl";
const JOURNAL_VERSION: u32 = 1;

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(super) enum Event {
    Study {
        version: u32,
        direction: String,
        seed: u64,
        space: Value,
        created_unix: u64,
    },
    Start {
        trial: u64,
        params: Params,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        requeued_from: Option<u64>,
        unix: u64,
    },
    Report {
        trial: u64,
        step: u64,
        #[serde(with = "exact_f64")]
        value: f64,
    },
    Complete {
        trial: u64,
        #[serde(with = "exact_f64")]
        value: f64,
    },
    Pruned {
        trial: u64,
    },
    Failed {
        trial: u64,
        reason: String,
        #[serde(default)]
        interrupted: bool,
    },
}

/// Objective values in the journal are JSON strings holding the shortest decimal that reads
/// back to the same `f64` (Rust's float formatting and parsing are exact; serde_json's default
/// number parser may be off by one unit in the last place), so a replayed study holds exactly
/// the values the trainer reported. Plain JSON numbers are accepted too (hand-edited journals).
mod exact_f64 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        let a = v.abs();
        if a == 0.0 || (1e-5..1e16).contains(&a) {
            s.collect_str(v)
        } else {
            s.collect_str(&format_args!("{v:e}"))
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Num {
            S(String),
            F(f64),
        }
        match Num::deserialize(d)? {
            Num::F(f) => Ok(f),
            Num::S(s) => s
                .parse::<f64>()
                .map_err(|e| serde::de::Error::custom(format!("`{s}` is not a number: {e}"))),
        }
    }
}

impl Study {
    /// Opens the study in `dir`, creating the folder and journal when absent, replaying the
    /// journal when present (see the module docs for crash recovery).
    pub fn open(dir: &Path, config: &StudyConfig) -> Result<Study> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| TuneError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let journal = dir.join(JOURNAL_FILE);
        let existed = journal.exists();
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&journal)
            .map_err(io(&journal))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(TuneError::Locked { path: journal });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&journal)(e)),
        }
        if !existed {
            // make the new directory entry durable
            if let Ok(d) = File::open(dir) {
                let _ = d.sync_all();
            }
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io(&journal))?;

        let (sampler, pruner) = build(config);
        let mut study = Study {
            dir: dir.to_path_buf(),
            journal: journal.clone(),
            file,
            space: config.space.clone(),
            sampler,
            pruner,
            trials: Vec::new(),
            queue: VecDeque::new(),
            diverged: BTreeMap::new(),
            recovery: Recovery::default(),
        };
        let mut saw_header = false;
        let mut offset = 0usize;
        let mut line_no = 0usize;
        while offset < bytes.len() {
            line_no += 1;
            let end = bytes[offset..].iter().position(|&b| b == b'\n');
            let (line, next, terminated) = match end {
                Some(e) => (&bytes[offset..offset + e], offset + e + 1, true),
                None => (&bytes[offset..], bytes.len(), false),
            };
            let text = String::from_utf8_lossy(line);
            if text.trim().is_empty() {
                offset = next;
                continue;
            }
            let event: Event = match serde_json::from_str(&text) {
                Ok(ev) => ev,
                Err(e) if !terminated => {
                    // a partially written last line: cut it off
                    tracing::warn!(
                        "{}: cutting off a partially written last line ({} bytes): {e}",
                        journal.display(),
                        line.len()
                    );
                    study.file.set_len(offset as u64).map_err(io(&journal))?;
                    study.file.sync_all().map_err(io(&journal))?;
                    study.recovery.truncated_bytes = line.len() as u64;
                    break;
                }
                Err(e) => {
                    return Err(TuneError::Journal {
                        path: journal,
                        line: line_no,
                        reason: e.to_string(),
                    });
                }
            };
            if !terminated {
                // complete JSON without its newline: finish the line
                study.file.write_all(b"\n").map_err(io(&journal))?;
                study.file.sync_data().map_err(io(&journal))?;
            }
            if !saw_header {
                study.check_header(&event, config, line_no)?;
                saw_header = true;
            } else {
                study.apply(event).map_err(|reason| TuneError::Journal {
                    path: journal.clone(),
                    line: line_no,
                    reason,
                })?;
            }
            offset = next;
        }
        if !saw_header {
            study.append(Event::Study {
                version: JOURNAL_VERSION,
                direction: "minimize".into(),
                seed: config.seed,
                space: config.space.to_json(),
                created_unix: now_unix(),
            })?;
        }
        study.recover(config.rerun_interrupted)?;
        Ok(study)
    }

    fn check_header(&self, event: &Event, config: &StudyConfig, line: usize) -> Result<()> {
        let Event::Study {
            version,
            direction,
            seed,
            space,
            ..
        } = event
        else {
            return Err(TuneError::Journal {
                path: self.journal.clone(),
                line,
                reason: "the first event must be the study header".into(),
            });
        };
        let mismatch = |reason: String| TuneError::StudyMismatch {
            path: self.journal.clone(),
            reason,
        };
        if *version != JOURNAL_VERSION {
            return Err(mismatch(format!(
                "journal version {version}, this build reads {JOURNAL_VERSION}"
            )));
        }
        if direction != "minimize" {
            return Err(mismatch(format!("direction `{direction}` (only minimize)")));
        }
        if *seed != config.seed {
            return Err(mismatch(format!(
                "the study was created with seed {seed}, the config says {} (use a new study folder)",
                config.seed
            )));
        }
        let stored = SearchSpace::from_json(space, &self.journal, "space")
            .map_err(|e| mismatch(format!("the stored search space does not parse: {e}")))?;
        if stored != config.space {
            return Err(mismatch(format!(
                "the search space differs: the study has {}, the config {} (use a new study folder)",
                stored.to_json(),
                config.space.to_json()
            )));
        }
        Ok(())
    }

    /// Applies a replayed or freshly written event to the in-memory state.
    fn apply(&mut self, event: Event) -> std::result::Result<(), String> {
        let running =
            |trials: &mut Vec<TrialRecord>, n: u64| -> std::result::Result<usize, String> {
                let idx = n as usize;
                match trials.get(idx) {
                    None => Err(format!("trial {n} was never started")),
                    Some(t) if t.is_finished() => Err(format!("trial {n} is already finished")),
                    Some(_) => Ok(idx),
                }
            };
        match event {
            Event::Study { .. } => return Err("a second study header".into()),
            Event::Start {
                trial,
                params,
                requeued_from,
                ..
            } => {
                if trial as usize != self.trials.len() {
                    return Err(format!(
                        "trial {trial} started, expected trial {}",
                        self.trials.len()
                    ));
                }
                self.space
                    .validate(&params)
                    .map_err(|e| format!("trial {trial}: {e}"))?;
                let mut t = TrialRecord::new(trial, params);
                t.requeued_from = requeued_from;
                self.trials.push(t);
            }
            Event::Report { trial, step, value } => {
                let i = running(&mut self.trials, trial)?;
                if let Some((last, _)) = self.trials[i].last_report()
                    && step <= last
                {
                    return Err(format!("trial {trial}: step {step} after step {last}"));
                }
                self.trials[i].intermediate.insert(step, value);
            }
            Event::Complete { trial, value } => {
                let i = running(&mut self.trials, trial)?;
                self.trials[i].state = TrialState::Complete;
                self.trials[i].value = Some(value);
            }
            Event::Pruned { trial } => {
                let i = running(&mut self.trials, trial)?;
                self.trials[i].state = TrialState::Pruned;
            }
            Event::Failed {
                trial,
                reason,
                interrupted,
            } => {
                let i = running(&mut self.trials, trial)?;
                self.trials[i].state = TrialState::Failed {
                    reason,
                    interrupted,
                };
            }
        }
        Ok(())
    }

    /// Writes one event (single write + fsync), then applies the event *as read back from its
    /// line*, so the in-memory state is exactly what a later replay will rebuild.
    pub(super) fn append(&mut self, event: Event) -> Result<()> {
        let journal = self.journal.clone();
        let mut line = serde_json::to_string(&event).map_err(|e| TuneError::Journal {
            path: journal.clone(),
            line: 0,
            reason: format!("cannot serialise an event: {e}"),
        })?;
        let replayed: Event = serde_json::from_str(&line).map_err(|e| TuneError::Journal {
            path: journal.clone(),
            line: 0,
            reason: format!("an event does not read back: {e}"),
        })?;
        line.push('\n');
        let io = |source| TuneError::Io {
            path: journal.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.sync_data().map_err(io)?;
        if matches!(replayed, Event::Study { .. }) {
            return Ok(());
        }
        self.apply(replayed).map_err(|reason| TuneError::Journal {
            path: journal.clone(),
            line: 0,
            reason,
        })
    }

    fn recover(&mut self, rerun: bool) -> Result<()> {
        let running: Vec<u64> = self
            .trials
            .iter()
            .filter(|t| !t.is_finished())
            .map(|t| t.number)
            .collect();
        for n in running {
            self.append(Event::Failed {
                trial: n,
                reason: "interrupted: the process ended while the trial was running".into(),
                interrupted: true,
            })?;
            self.recovery.interrupted.push(n);
        }
        if rerun {
            let rerun_of: Vec<u64> = self.trials.iter().filter_map(|t| t.requeued_from).collect();
            for t in &self.trials {
                let interrupted = matches!(
                    t.state,
                    TrialState::Failed {
                        interrupted: true,
                        ..
                    }
                );
                if interrupted && t.requeued_from.is_none() && !rerun_of.contains(&t.number) {
                    self.queue.push_back((Some(t.number), t.params.clone()));
                    self.recovery.requeued.push(t.number);
                }
            }
        }
        Ok(())
    }
}
