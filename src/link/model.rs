//! The Fellegi–Sunter model: per field and comparison level, m (how often true
//! matches show that level) and u (how often non-matches do), plus the prior.
//!
//! Persisted as JSON in the store so a nightly incremental run scores new pairs with
//! the same weights as the full run that estimated them.

use serde::{Deserialize, Serialize};

/// m and u probabilities of every field's levels, and the prior match rate among
/// candidate pairs.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Model {
    /// Probability that a candidate pair is a match, before comparing fields.
    pub lambda: f64,
    /// One entry per compared field.
    pub fields: Vec<FieldModel>,
}

/// The m and u probability of each level of one field.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FieldModel {
    pub field: String,
    /// Level names, in the order of `m` and `u`.
    pub levels: Vec<String>,
    pub m: Vec<f64>,
    pub u: Vec<f64>,
}

impl Model {
    /// JSON for the store.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a model always serialises")
    }

    /// Reads a stored model back; `None` when it does not parse (the next run re-estimates).
    pub fn from_json(s: &str) -> Option<Model> {
        serde_json::from_str(s).ok()
    }
}
