//! Key rewrites: regex rules applied in order to every file key before it is matched to a
//! module path.

use crate::error::{CoreError, Result};
use std::path::Path;

/// A key rewrite rule applied to file keys before they are matched to module paths:
/// a regex and its replacement (`$1` for capture groups).
#[derive(Debug, Clone)]
pub struct Remap {
    /// The regex matched against each file key.
    pub pattern: String,
    /// The replacement.
    pub replacement: String,
}

impl Remap {
    /// A rule rewriting `pattern` to `replacement`.
    pub fn new(pattern: impl Into<String>, replacement: impl Into<String>) -> Self {
        Self {
            pattern: pattern.into(),
            replacement: replacement.into(),
        }
    }
}

/// [`Remap`] rules compiled once for a file.
pub(crate) struct CompiledRemaps(Vec<(regex::Regex, String)>);

impl CompiledRemaps {
    /// Compiles `remaps`; a bad pattern is an error naming `origin`.
    pub(crate) fn new(remaps: &[Remap], origin: &Path) -> Result<Self> {
        remaps
            .iter()
            .map(|r| {
                regex::Regex::new(&r.pattern)
                    .map(|re| (re, r.replacement.clone()))
                    .map_err(|e| CoreError::WeightsFile {
                        path: origin.to_path_buf(),
                        message: format!("bad remap pattern `{}`: {e}", r.pattern),
                    })
            })
            .collect::<Result<_>>()
            .map(Self)
    }

    /// `key` after every rule, in order.
    pub(crate) fn apply(&self, key: &str) -> String {
        let mut k = key.to_string();
        for (re, rep) in &self.0 {
            k = re.replace_all(&k, rep.as_str()).into_owned();
        }
        k
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remaps_apply_in_order() {
        let r = CompiledRemaps::new(
            &[
                Remap::new(r"^text_model\.", ""),
                Remap::new(r"\.fc1\.", ".mlp_in."),
            ],
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(r.apply("text_model.a.fc1.weight"), "a.mlp_in.weight");
        assert!(CompiledRemaps::new(&[Remap::new("(", "")], Path::new("x")).is_err());
    }
}
