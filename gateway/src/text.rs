//! Client strings as they may appear in a message or a log line: quoted,
//! at most [`CLIP`] characters, with a marker saying how much was left out,
//! so that no client can make a log line or a status message large.

use std::fmt;

/// The most characters of a client string a message or log line shows.
pub(crate) const CLIP: usize = 128;

/// A client string for a message: see [`clip`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clipped<'a>(&'a str);

/// `text` quoted (control characters escaped), its first [`CLIP`]
/// characters only, and how many bytes were left out.
pub(crate) fn clip(text: &str) -> Clipped<'_> {
    Clipped(text)
}

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let end = self
            .0
            .char_indices()
            .nth(CLIP)
            .map_or(self.0.len(), |(at, _)| at);
        write!(f, "{:?}", &self.0[..end])?;
        if end < self.0.len() {
            write!(f, "...(+{} bytes)", self.0.len() - end)?;
        }
        Ok(())
    }
}

/// A list of client strings for a message: see [`clip_list`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClippedList<'a>(&'a [String]);

/// The first few of `items`, each clipped, and how many were left out.
pub(crate) fn clip_list(items: &[String]) -> ClippedList<'_> {
    ClippedList(items)
}

impl fmt::Display for ClippedList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// The most items shown.
        const SHOWN: usize = 3;
        f.write_str("[")?;
        for (i, item) in self.0.iter().take(SHOWN).enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", clip(item))?;
        }
        if self.0.len() > SHOWN {
            write!(f, ", ...(+{} more)", self.0.len() - SHOWN)?;
        }
        f.write_str("]")
    }
}

/// The first characters of a subscription id, enough to tell subscriptions
/// apart in a log: the id itself lets a caller acknowledge, so it is never
/// logged whole.
pub(crate) fn id_prefix(id: &str) -> &str {
    let end = id.char_indices().nth(8).map_or(id.len(), |(at, _)| at);
    &id[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_strings_are_cut_with_a_marker_and_short_ones_kept() {
        assert_eq!(clip("orders").to_string(), "\"orders\"");
        let long = "é".repeat(3000);
        let shown = clip(&long).to_string();
        assert!(
            shown.starts_with(&format!("\"{}", "é".repeat(CLIP))),
            "{shown}"
        );
        assert!(
            shown.ends_with(&format!("...(+{} bytes)", 2 * (3000 - CLIP))),
            "{shown}"
        );
        assert!(shown.len() < 2 * CLIP + 40);
        assert_eq!(clip("a\nb").to_string(), "\"a\\nb\"");
        let topics: Vec<String> = (0..5).map(|i| format!("t{i}")).collect();
        assert_eq!(
            clip_list(&topics).to_string(),
            "[\"t0\", \"t1\", \"t2\", ...(+2 more)]"
        );
        assert_eq!(clip_list(&topics[..1]).to_string(), "[\"t0\"]");
        assert_eq!(id_prefix("0193f0c1-8d4e-7c2a"), "0193f0c1");
        assert_eq!(id_prefix("abc"), "abc");
    }
}
