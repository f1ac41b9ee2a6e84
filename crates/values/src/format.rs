//! Small text helpers shared by error messages, so every limit is printed the same way.

/// `1200000` → `"1,200,000"`: limits in messages are read by people.
pub(crate) fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Quote user text for an error message, cut to `max_chars` so that a hostile megabyte
/// string never ends up in a log line whole.
pub(crate) fn quote_truncated(text: &str, max_chars: usize) -> String {
    let mut cut: String = text.chars().take(max_chars).collect();
    let truncated = cut.len() < text.len();
    if truncated {
        cut.push_str("...");
    }
    format!("{cut:?}")
}

/// Cut an already rendered text (a value or a validator) to `max_chars`.
pub(crate) fn truncate(text: String, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_groups_digits_by_three() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(1_048_576), "1,048,576");
        assert_eq!(thousands(12_345_678), "12,345,678");
    }

    #[test]
    fn long_text_is_cut_in_messages() {
        assert_eq!(quote_truncated("abc", 10), "\"abc\"");
        assert_eq!(quote_truncated("abcdef", 3), "\"abc...\"");
        assert_eq!(truncate("é".repeat(5), 2), "éé...");
        assert_eq!(truncate("short".into(), 10), "short");
    }
}
