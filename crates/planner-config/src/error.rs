//! A refusal of the configuration ([`ConfigError`]) and [`Locator`], which turns a byte span
//! of the file into the `file:line:column` every refusal names.

use std::ops::Range;
use std::path::PathBuf;

/// A refusal of the configuration: where, what, and how to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(
        "cannot read config {path}: {source}\n  help: pass --config PATH or set PLANNER_CONFIG"
    )]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{origin}: {message}")]
    Env { origin: String, message: String },
}

/// Turns byte spans into `file:line:column` errors.
pub(crate) struct Locator<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
}

impl Locator<'_> {
    pub(crate) fn error(&self, span: Range<usize>, message: impl Into<String>) -> ConfigError {
        let (line, column) = line_column(self.text, span.start);
        ConfigError::Invalid {
            file: self.file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// 1-based line and column of a byte offset.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}
