//! What the loader's tests share: a config folder with an empty `jobs` folder
//! beside it, loaded with an environment each test chooses, and the smallest
//! config that loads.

use std::path::PathBuf;

use super::{load_layered, load_with_env, Problem, Problems};
use crate::config::Settings;

/// A config folder with an empty `jobs` folder beside it.
pub(super) struct Fixture {
    pub(super) dir: tempfile::TempDir,
}

impl Fixture {
    pub(super) fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("jobs")).unwrap();
        Fixture { dir }
    }

    pub(super) fn path(&self) -> PathBuf {
        self.dir.path().join("kinlink.toml")
    }

    pub(super) fn job(&self, file: &str, text: &str) {
        std::fs::write(self.dir.path().join("jobs").join(file), text).unwrap();
    }

    /// Loads with an empty environment.
    pub(super) fn load(&self, text: &str) -> Result<Settings, Problems> {
        load_with_env(text, &self.path(), &|_| None)
    }

    pub(super) fn load_env(&self, text: &str, vars: &[(&str, &str)]) -> Result<Settings, Problems> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_with_env(text, &self.path(), &move |name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    /// Loads with `KINLINK__*` overrides (and nothing else) in the environment.
    pub(super) fn load_overridden(
        &self,
        text: &str,
        vars: &[(&str, &str)],
    ) -> Result<Settings, Problems> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        load_layered(text, &self.path(), &|_| None, &vars)
    }

    pub(super) fn problems(&self, text: &str) -> Vec<Problem> {
        match self.load(text) {
            Ok(_) => panic!("expected problems"),
            Err(p) => p.0,
        }
    }
}

pub(super) const MINIMAL: &str = r#"
[[source]]
name = "police"
kind = "police_da"
format = "csv"
transport = { type = "dir", path = "inbox/police" }
"#;

/// The one problem whose message contains `needle`.
pub(super) fn find<'a>(problems: &'a [Problem], needle: &str) -> &'a Problem {
    let found: Vec<&Problem> = problems
        .iter()
        .filter(|p| p.message.contains(needle))
        .collect();
    assert_eq!(found.len(), 1, "{needle:?} in {problems:#?}");
    found[0]
}
