//! Client strings as they may appear in a message or a log line: quoted,
//! at most [`CLIP`] characters, with a marker saying how much was left out,
//! so that no client can make a log line or a status message large; and
//! lines a client can make the gateway write over and over, at most one a
//! second of each kind ([`LINES`]), so that no client can make logs long.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

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

/// How often a line of one kind is written at most.
pub(crate) const LINE_EVERY: Duration = Duration::from_secs(1);

/// The kind of a line a client can cause: what happened, and a detail
/// (a status code, a reason); a small fixed set, so the map stays small.
pub(crate) type LineKind = (&'static str, &'static str);

/// Lines a client can cause, by kind: when the last one was written and
/// how many were left out since.
#[derive(Default)]
pub(crate) struct Lines(Mutex<HashMap<LineKind, (Instant, u64)>>);

/// The gateway's [`Lines`].
pub(crate) static LINES: LazyLock<Lines> = LazyLock::new(Lines::default);

impl Lines {
    /// Whether a line of `kind` may be written at `now`: `Some(left out
    /// since the last one)` at most once per [`LINE_EVERY`], else `None`
    /// (and it counts as left out).
    pub(crate) fn admit(&self, kind: LineKind, now: Instant) -> Option<u64> {
        let mut lines = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match lines.get_mut(&kind) {
            Some((last, left_out)) if now.saturating_duration_since(*last) < LINE_EVERY => {
                *left_out += 1;
                None
            }
            Some((last, left_out)) => {
                *last = now;
                Some(std::mem::take(left_out))
            }
            None => {
                lines.insert(kind, (now, 0));
                Some(0)
            }
        }
    }
}

/// `bytes` with `%XX` escapes decoded, as UTF-8 (a URL's path and query,
/// the CloudEvents HTTP binding's header encoding); `None` for a broken
/// escape or bytes that are not UTF-8.
pub(crate) fn percent_decoded(bytes: &[u8]) -> Option<String> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] == b'%' {
            let hex = std::str::from_utf8(bytes.get(at + 1..at + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            at += 3;
        } else {
            out.push(bytes[at]);
            at += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_of_one_kind_is_written_once_a_second_with_what_was_left_out() {
        let lines = Lines::default();
        let start = Instant::now();
        let kind = ("publish refused", "resource exhausted");
        assert_eq!(lines.admit(kind, start), Some(0));
        for i in 1..=999 {
            let at = start + Duration::from_micros(i * 900);
            assert_eq!(lines.admit(kind, at), None);
        }
        assert_eq!(
            lines.admit(("publish refused", "not found"), start),
            Some(0),
            "other kinds are counted apart"
        );
        assert_eq!(lines.admit(kind, start + LINE_EVERY), Some(999));
        assert_eq!(lines.admit(kind, start + 2 * LINE_EVERY), Some(0));
    }

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
