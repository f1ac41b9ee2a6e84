//! Function paths: `"messages:list"`, `"dir/file:name"`, and default exports.
//!
//! Clients send paths in several spellings (`messages`, `messages.js:default`,
//! `messages:send`); the registry stores one canonical form so a lookup never depends on how
//! a client spelled the name.

use std::fmt;

use conflux_common::{Error, ErrorCode, Result};

/// A canonical function path: `module:name`, where `module` may contain `/`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UdfPath(String);

impl UdfPath {
    /// Canonicalize a path as clients send it: a missing `:name` means `:default`, and a
    /// trailing `.js` on the module is dropped.
    pub fn parse(raw: &str) -> Result<UdfPath> {
        let (module, name) = match raw.rsplit_once(':') {
            Some((module, name)) => (module, name),
            None => (raw, "default"),
        };
        let module = module.strip_suffix(".js").unwrap_or(module);
        let bad = |why: &str| {
            Error::new(
                ErrorCode::BadRequest,
                format!("Invalid function path `{raw}`: {why}. Expected `module:function`, e.g. `messages:list`."),
            )
        };
        if module.is_empty() {
            return Err(bad("the module is empty"));
        }
        if name.is_empty() {
            return Err(bad("the function name is empty"));
        }
        if raw.len() > 512 {
            return Err(bad("it is longer than 512 characters"));
        }
        let ok_module = module.split('/').all(|segment| {
            !segment.is_empty()
                && segment != ".."
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        });
        if !ok_module {
            return Err(bad(
                "the module may only contain letters, digits, `_`, `-`, `.` and `/`",
            ));
        }
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(bad(
                "the function name may only contain letters, digits and `_`",
            ));
        }
        Ok(UdfPath(format!("{module}:{name}")))
    }

    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The module part (`messages` in `messages:list`).
    pub fn module(&self) -> &str {
        self.0.rsplit_once(':').map(|(m, _)| m).unwrap_or(&self.0)
    }
}

impl fmt::Display for UdfPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_spellings_map_to_one_canonical_path() {
        assert_eq!(
            UdfPath::parse("messages").unwrap().as_str(),
            "messages:default"
        );
        assert_eq!(
            UdfPath::parse("messages.js:list").unwrap().as_str(),
            "messages:list"
        );
        assert_eq!(
            UdfPath::parse("dir/file:name").unwrap().as_str(),
            "dir/file:name"
        );
        assert_eq!(
            UdfPath::parse("dir/file:name").unwrap().module(),
            "dir/file"
        );
    }

    #[test]
    fn malformed_paths_say_what_is_wrong() {
        let err = UdfPath::parse(":list").unwrap_err();
        assert!(err.message().contains("module is empty"), "{err}");
        assert!(UdfPath::parse("messages:").is_err());
        assert!(UdfPath::parse("../etc:passwd").is_err());
        assert!(UdfPath::parse("a b:c").is_err());
    }
}
