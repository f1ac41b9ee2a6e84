//! Paths inside a value (`.messages[3].body`), used by every error that points into a value.

use std::fmt::{self, Write};

/// One step from a container to a child.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PathSegment<'a> {
    /// A field of an object.
    Field(&'a str),
    /// An element of an array.
    Index(usize),
}

/// Render a path the way JavaScript would access it: `.name` for identifier-like field
/// names, `["odd name"]` otherwise, `[3]` for array elements. The root is the empty string.
pub(crate) fn render(segments: &[PathSegment<'_>]) -> String {
    let mut out = String::new();
    for segment in segments {
        // Writing into a String cannot fail.
        let _ = write_segment(&mut out, segment);
    }
    out
}

fn write_segment(out: &mut String, segment: &PathSegment<'_>) -> fmt::Result {
    match segment {
        PathSegment::Field(name) if is_identifier(name) => write!(out, ".{name}"),
        PathSegment::Field(name) => write!(out, "[{}]", serde_json::Value::from(*name)),
        PathSegment::Index(index) => write!(out, "[{index}]"),
    }
}

/// Whether `name` can be written after a dot in JavaScript (`[A-Za-z_$][A-Za-z0-9_$]*`).
pub(crate) fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(first) if first.is_ascii_alphabetic() || first == '_' || first == '$' => {
            chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$')
        }
        _ => false,
    }
}

/// " at .a.b" or nothing at the root: appended to messages about a nested value.
pub(crate) fn at(segments: &[PathSegment<'_>]) -> String {
    if segments.is_empty() {
        String::new()
    } else {
        format!(" at {}", render(segments))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_like_javascript() {
        let path = [
            PathSegment::Field("messages"),
            PathSegment::Index(3),
            PathSegment::Field("body"),
            PathSegment::Field("two words"),
        ];
        assert_eq!(render(&path), ".messages[3].body[\"two words\"]");
        assert_eq!(render(&[]), "");
        assert_eq!(at(&[]), "");
        assert_eq!(at(&path[..1]), " at .messages");
    }
}
