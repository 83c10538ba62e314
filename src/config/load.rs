//! Placeholder: the loader is being written (see the config helper's branch).
use std::path::Path;

use super::Settings;
pub use crate::domain::Problem;

/// Every problem found, in file order.
#[derive(Debug, Default)]
pub struct Problems(pub Vec<Problem>);

/// Loads and checks a config file and its jobs folder.
pub fn load(_path: &Path) -> Result<Settings, Problems> {
    Err(Problems::default())
}

/// Loads config text as if read from `path`.
pub fn load_str(_text: &str, _path: &Path) -> Result<Settings, Problems> {
    Err(Problems::default())
}
