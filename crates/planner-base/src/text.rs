//! Text from outside, made inert for a terminal; and lists bounded for messages.
//!
//! Strings from registries (index manifests, tag lists), image labels, engine answers, build
//! output, git hosts and the cache dir may hold control characters: an ESC sequence clears
//! the screen, sets the window title or recolours what follows, a `\r` overwrites the line
//! it is on, a bidi override reorders it, and each of them can forge a line planner never
//! wrote. So every renderer (src/report, src/cli) writes through this module at the point of
//! printing, once, instead of at each place outside text enters a message:
//!
//! - [`printed`]: multi-line text as planner prints it (masked, [`inert_lines`]);
//! - [`printed_json`]: a JSON document (masked, [`inert_json`]);
//! - [`inert`]: one line (a table cell, a progress line), newlines escaped too.
//!
//! An escaped character is written as Rust writes it (`\u{1b}`, `\r`, `\t`, `\n`), so the text
//! stays readable and says what was there. [`list`] bounds a list of outside items in a
//! message (`a, b, c and 4997 more`).

use std::borrow::Cow;
use std::fmt::Write as _;

use crate::mask::mask;

/// Whether `c` must not reach a terminal raw: C0 and C1 control characters, DEL, the bidi
/// controls (embeddings, overrides, isolates, marks) and the Unicode line and paragraph
/// separators.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `text` on one line with every unsafe character ([`is_unsafe`]), newlines included,
/// escaped. Borrowed when there is nothing to escape.
pub fn inert(text: &str) -> Cow<'_, str> {
    escape(text, |_| false)
}

/// `text` with every unsafe character escaped but `\n`: for text planner deliberately prints
/// on several lines (an error and its `help:` line), each line's content made inert.
pub fn inert_lines(text: &str) -> Cow<'_, str> {
    escape(text, |c| c == '\n')
}

/// A JSON document (as `serde_json` writes it) with the unsafe characters it leaves raw
/// (DEL, C1 controls, bidi controls, separators; it escapes C0 itself) written as JSON
/// escapes (`\u009b`). These can only stand inside strings, so the document stays valid and
/// means the same; its own newlines (pretty printing) are kept.
pub fn inert_json(doc: &str) -> Cow<'_, str> {
    if !doc.chars().any(|c| c != '\n' && is_unsafe(c)) {
        return Cow::Borrowed(doc);
    }
    let mut out = String::with_capacity(doc.len() + 16);
    for c in doc.chars() {
        match c {
            '\n' => out.push(c),
            c if is_unsafe(c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Text as planner prints it: secrets masked ([`mask`]), then [`inert_lines`].
pub fn printed(text: &str) -> String {
    inert_lines(&mask(text)).into_owned()
}

/// A JSON document as planner prints it: secrets masked ([`mask`]), then [`inert_json`].
pub fn printed_json(doc: &str) -> String {
    inert_json(&mask(doc)).into_owned()
}

fn escape(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            c if keep(c) || !is_unsafe(c) => out.push(c),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// How many items [`list`] names in an error before it counts the rest.
pub const LIST_MAX: usize = 8;

/// The longest an item of a [`list`] is shown, in characters.
pub const ITEM_MAX: usize = 100;

/// `items` for a message, joined with `, `: at most `max` of them (each cut to
/// [`ITEM_MAX`] characters, with `…`), then `and N more`. An index with thousands of
/// platforms, an image with thousands of tags, a checkout with thousands of changed files
/// thus give one short line.
pub fn list<S: AsRef<str>>(items: &[S], max: usize) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().take(max).enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        let item = item.as_ref();
        match item.char_indices().nth(ITEM_MAX) {
            Some((end, _)) => {
                out.push_str(&item[..end]);
                out.push('…');
            }
            None => out.push_str(item),
        }
    }
    if items.len() > max {
        let _ = write!(out, " and {} more", items.len() - max);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn escape_sequences_title_sets_and_carriage_returns_are_shown_not_sent() {
        let hostile = "arm\x1b[2J\x1b]0;pwned\x07\r1 ensured, 0 failed\u{9b}31m\u{202e}txt.exe";
        assert_eq!(
            inert(hostile),
            "arm\\u{1b}[2J\\u{1b}]0;pwned\\u{7}\\r1 ensured, 0 failed\\u{9b}31m\\u{202e}txt.exe"
        );
        assert_eq!(inert("a\nb\tc\u{7f}"), "a\\nb\\tc\\u{7f}");
        assert_eq!(
            inert_lines("error: x\x1b[0m\n  help: y"),
            "error: x\\u{1b}[0m\n  help: y"
        );
    }

    #[test]
    fn ordinary_text_is_borrowed_unchanged() {
        for text in ["plain", "é… ⠋ 日本語", "C:\\path\\x1b", ""] {
            assert!(matches!(inert(text), Cow::Borrowed(t) if t == text));
            assert!(matches!(inert_json(text), Cow::Borrowed(t) if t == text));
        }
        assert!(matches!(inert_lines("two\nlines"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_stays_valid_and_means_the_same() {
        let value = serde_json::json!({"reason": "a\x1b[2J\u{9b}\u{7f}\u{202e}\u{2028}b"});
        let doc = serde_json::to_string_pretty(&value).unwrap();
        let shown = inert_json(&doc);
        assert!(!shown.chars().any(|c| c != '\n' && is_unsafe(c)), "{shown}");
        let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
        assert_eq!(back, value);
    }

    #[test]
    fn printed_masks_before_escaping() {
        crate::mask::register_secret("text-secret-4711");
        assert_eq!(
            printed("token text-secret-4711\x1b[2J\nnext"),
            "token ***\\u{1b}[2J\nnext"
        );
    }

    #[test]
    fn lists_name_a_few_and_count_the_rest() {
        assert_eq!(list(&["a", "b"], 3), "a, b");
        assert_eq!(list(&["a", "b", "c"], 3), "a, b, c");
        assert_eq!(list(&["a", "b", "c", "d", "e"], 3), "a, b, c and 2 more");
        assert_eq!(list::<&str>(&[], 3), "");
        let long = "x".repeat(5000);
        let shown = list(&[long.as_str()], 3);
        assert_eq!(shown.chars().count(), ITEM_MAX + 1, "{shown}");
        assert!(shown.ends_with('…'));
        let many: Vec<String> = (0..100_000).map(|i| format!("linux/arch{i}")).collect();
        let shown = list(&many, LIST_MAX);
        assert!(
            shown.len() < 200 && shown.ends_with(" and 99992 more"),
            "{shown}"
        );
    }

    proptest! {
        #[test]
        fn output_never_holds_an_unsafe_character(text in any::<String>()) {
            let one = inert(&text);
            prop_assert!(!one.chars().any(is_unsafe), "{one:?}");
            let lines = inert_lines(&text);
            prop_assert!(!lines.chars().any(|c| c != '\n' && is_unsafe(c)), "{lines:?}");
            prop_assert_eq!(lines.matches('\n').count(), text.matches('\n').count());
            prop_assert_eq!(inert(&one), one.clone());
        }

        #[test]
        fn json_of_any_string_round_trips(text in any::<String>()) {
            let doc = serde_json::to_string(&serde_json::json!({"s": text})).unwrap();
            let shown = inert_json(&doc);
            prop_assert!(!shown.chars().any(is_unsafe), "{shown:?}");
            let back: serde_json::Value = serde_json::from_str(&shown).unwrap();
            prop_assert_eq!(back["s"].as_str(), Some(text.as_str()));
        }
    }
}
