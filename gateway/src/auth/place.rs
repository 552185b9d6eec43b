//! Where in a settings file (the policy) a problem is.

use std::ops::Range;

/// `message` prefixed with the line and column where `span` starts.
pub(super) fn at(text: &str, span: Range<usize>, message: &str) -> String {
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!("line {line}, column {column}: {message}")
}
