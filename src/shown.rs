//! Text from the node (certificate subjects and SANs, file names, kubeconfig names,
//! error messages quoting them) made safe to show on a terminal.
//!
//! A subject is anyone's choice: a CA whose CN holds `ESC [31m` or `ESC ] 0;title BEL`
//! would colour, retitle or rewrite an operator's terminal if printed as it is. Every
//! renderer of human text passes what it shows through here; JSON needs nothing
//! (serde_json escapes control characters itself, and its bytes are a contract).
//!
//! What is escaped: control characters (C0, DEL, C1) as `\x1b` / `\u{9b}`, and the
//! invisible format characters that reorder or hide text (bidirectional overrides and
//! isolates, zero-width characters, line and paragraph separators, the BOM) as
//! `\u{202e}`. A backslash is left as it is, so escaping twice changes nothing.

use std::borrow::Cow;

/// One value (a table cell, a subject): every control character escaped, newlines and
/// tabs included.
pub fn printable(s: &str) -> Cow<'_, str> {
    escape(s, false)
}

/// A whole text of lines: as [`printable`], but its newlines and tabs kept.
pub fn printable_text(s: &str) -> Cow<'_, str> {
    escape(s, true)
}

fn hidden(c: char, keep_layout: bool) -> bool {
    if keep_layout && (c == '\n' || c == '\t') {
        return false;
    }
    c.is_control()
        || matches!(c,
            '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{2069}'
            | '\u{feff}')
}

fn escape(s: &str, keep_layout: bool) -> Cow<'_, str> {
    if !s.chars().any(|c| hidden(c, keep_layout)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !hidden(c, keep_layout) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_sequences_are_shown_not_played() {
        let cn = "CN=evil\u{1b}[31mred\u{1b}]0;title\u{7}\u{9b}2J";
        assert_eq!(
            printable(cn),
            "CN=evil\\x1b[31mred\\x1b]0;title\\x07\\u{9b}2J"
        );
        assert_eq!(
            printable("a\u{202e}b\u{200b}c\u{7f}"),
            "a\\u{202e}b\\u{200b}c\\x7f"
        );
        assert_eq!(printable("line\nnext\tcol"), "line\\x0anext\\x09col");
        assert_eq!(
            printable_text("line\nnext\tcol\u{1b}"),
            "line\nnext\tcol\\x1b"
        );
        // Plain text, non-ASCII letters included, is borrowed as it is.
        assert!(matches!(
            printable("CN=Zürich, O=système"),
            Cow::Borrowed(_)
        ));
        // Twice is once.
        let once = printable(cn).into_owned();
        assert_eq!(printable(&once), once);
    }
}
