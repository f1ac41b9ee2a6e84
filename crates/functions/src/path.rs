//! Function paths as clients write them, and the one canonical form the server looks up.
//!
//! Why this exists: the same function reaches the server under several spellings. The npm
//! client canonicalizes query paths itself (`messages` becomes `messages:default`, a `.js`
//! suffix on the module is dropped) but sends mutation and action paths exactly as the
//! caller wrote them, and the Rust client never canonicalizes. Subscriptions are shared and
//! functions are looked up by path, so every path is brought to one form at the edge (the
//! sync protocol decoder, the HTTP API, the registry) and the rest of the server only ever
//! sees [`UdfPath`].
//!
//! The canonical form is `dir/file:name`: a module path of `/`-separated components without
//! a `.js` suffix, a colon, and a function name (`default` for a default export). The rules
//! for valid components and names are those of the official clients and the reference
//! server (see `docs/protocol.md`), so a path they accept is accepted here and a path they
//! reject gets a message that says which part is wrong.

use std::fmt;

use conflux_common::{Error, Result};

/// Longest module path component and function name, in bytes.
pub const UDF_PATH_COMPONENT_MAX_LEN: usize = 64;

/// A canonical function path: `dir/file:name`.
///
/// ```
/// use conflux_functions::UdfPath;
///
/// assert_eq!(UdfPath::parse("messages")?.as_str(), "messages:default");
/// assert_eq!(UdfPath::parse("messages.js:list")?.as_str(), "messages:list");
/// let path = UdfPath::parse("chat/rooms:join")?;
/// assert_eq!((path.module(), path.function()), ("chat/rooms", "join"));
/// # Ok::<(), conflux_common::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UdfPath {
    /// `module:function`, canonical.
    canonical: String,
    /// Byte offset of the `:` in `canonical`.
    colon: usize,
}

impl UdfPath {
    /// Canonicalize and validate a path as a client sent it.
    ///
    /// The function name is whatever follows the last `:` (`default` when there is none);
    /// a trailing `.js` on the module is removed. Errors are
    /// [`conflux_common::ErrorCode::BadRequest`] and quote the offending part.
    pub fn parse(path: &str) -> Result<UdfPath> {
        let (module, function) = match path.rsplit_once(':') {
            Some((module, function)) => (module, function),
            None => (path, "default"),
        };
        let module = module.strip_suffix(".js").unwrap_or(module);
        check_module(path, module)?;
        check_function_name(path, function)?;
        let canonical = format!("{module}:{function}");
        Ok(UdfPath {
            colon: module.len(),
            canonical,
        })
    }

    /// The canonical text, `module:function`.
    pub fn as_str(&self) -> &str {
        &self.canonical
    }

    /// The module path, e.g. `chat/rooms` (no `.js`).
    pub fn module(&self) -> &str {
        &self.canonical[..self.colon]
    }

    /// The function name, `default` for a default export.
    pub fn function(&self) -> &str {
        &self.canonical[self.colon + 1..]
    }
}

impl fmt::Display for UdfPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.canonical)
    }
}

impl serde::Serialize for UdfPath {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.canonical)
    }
}

fn invalid(path: &str, problem: impl fmt::Display) -> Error {
    Error::bad_request(format!(
        "invalid function path {path:?}: {problem}; expected `module:function` such as \
         `messages:list` or `dir/file:name`"
    ))
}

fn check_module(path: &str, module: &str) -> Result<()> {
    if module.is_empty() {
        return Err(invalid(path, "the module path is empty"));
    }
    if module.starts_with('/') {
        return Err(invalid(path, "the module path must be relative"));
    }
    let components: Vec<&str> = module.split('/').collect();
    for component in &components {
        if component.is_empty() {
            return Err(invalid(path, "the module path has an empty component"));
        }
        if component.len() > UDF_PATH_COMPONENT_MAX_LEN {
            return Err(invalid(
                path,
                format_args!(
                    "module path component is {} bytes long, more than {UDF_PATH_COMPONENT_MAX_LEN}",
                    component.len()
                ),
            ));
        }
        if let Some(bad) = component
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '.'))
        {
            return Err(invalid(
                path,
                format_args!(
                    "module path component {component:?} contains {bad:?}; only letters, \
                     digits, `_` and `.` are allowed"
                ),
            ));
        }
        if !component.chars().any(|c| c.is_ascii_alphanumeric()) {
            return Err(invalid(
                path,
                format_args!("module path component {component:?} has no letter or digit"),
            ));
        }
    }
    // `.js` is dropped once, so a module still ending in `.js` (the file `.js.js`) would
    // canonicalize to a path that loses another `.js`, and no longer parses, when read again.
    if module.ends_with(".js") {
        return Err(invalid(
            path,
            "the module file is named only `.js` once its `.js` suffix is dropped",
        ));
    }
    // The file name may carry no extension other than the `.js` already removed (the
    // reference server rejects `messages.ts:list`). A leading dot is not an extension.
    if let Some(file) = components.last() {
        if let Some(dot) = file.rfind('.') {
            if dot > 0 {
                return Err(invalid(
                    path,
                    format_args!(
                        "the module file {file:?} has the extension {:?}; only `.js` may be \
                         written (and is dropped)",
                        &file[dot + 1..]
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_function_name(path: &str, function: &str) -> Result<()> {
    let mut chars = function.chars();
    match chars.next() {
        None => return Err(invalid(path, "the function name after `:` is empty")),
        Some(first) if first.is_ascii_alphabetic() || first == '_' => {}
        Some(first) => {
            return Err(invalid(
                path,
                format_args!("the function name must start with a letter or `_`, not {first:?}"),
            ))
        }
    }
    if let Some(bad) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        return Err(invalid(
            path,
            format_args!(
                "the function name contains {bad:?}; only letters, digits and `_` are allowed"
            ),
        ));
    }
    if function.len() > UDF_PATH_COMPONENT_MAX_LEN {
        return Err(invalid(
            path,
            format_args!(
                "the function name is {} bytes long, more than {UDF_PATH_COMPONENT_MAX_LEN}",
                function.len()
            ),
        ));
    }
    if function.chars().all(|c| c == '_') {
        return Err(invalid(
            path,
            "the function name cannot be only underscores",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use conflux_common::ErrorCode;

    fn canonical(path: &str) -> String {
        UdfPath::parse(path)
            .unwrap_or_else(|err| panic!("{path:?} should parse: {err}"))
            .to_string()
    }

    #[test]
    fn paths_written_every_way_clients_write_them_reach_one_function() {
        // npm `api.messages.send` → "messages:send"; a default export → "messages";
        // a user string may carry `.js`.
        assert_eq!(canonical("messages:send"), "messages:send");
        assert_eq!(canonical("messages"), "messages:default");
        assert_eq!(canonical("messages.js"), "messages:default");
        assert_eq!(canonical("messages.js:send"), "messages:send");
        assert_eq!(canonical("dir/sub/file:name"), "dir/sub/file:name");
        assert_eq!(canonical("dir/file.js:_private2"), "dir/file:_private2");
        assert_eq!(canonical("_system/frontend:list"), "_system/frontend:list");
    }

    #[test]
    fn module_and_function_are_split_at_the_last_colon() {
        let path = UdfPath::parse("chat/rooms.js:join").expect("valid path");
        assert_eq!(path.module(), "chat/rooms");
        assert_eq!(path.function(), "join");
        assert_eq!(path.as_str(), "chat/rooms:join");
    }

    #[test]
    fn invalid_paths_are_rejected_with_the_part_that_is_wrong() {
        let cases = [
            ("", "module path is empty"),
            (":list", "module path is empty"),
            ("messages:", "function name after `:` is empty"),
            ("/abs:list", "must be relative"),
            ("a//b:list", "empty component"),
            ("../secret:list", "has no letter or digit"),
            ("a b:list", "contains ' '"),
            ("a:b:c", "contains ':'"),
            ("messages.ts:list", "extension \"ts\""),
            ("messages:1list", "must start with a letter"),
            ("messages:li-st", "contains '-'"),
            ("messages:__", "only underscores"),
        ];
        for (path, expected) in cases {
            let err = UdfPath::parse(path).expect_err(path);
            assert_eq!(err.code(), ErrorCode::BadRequest, "{path}");
            assert!(
                err.message().contains(expected),
                "{path:?}: {:?} should mention {expected:?}",
                err.message()
            );
            assert!(
                err.message().contains(&format!("{path:?}")),
                "{}",
                err.message()
            );
        }
    }

    #[test]
    fn a_canonical_path_parses_again_to_itself() {
        // Found by fuzzing: `.js.js:f` canonicalized to `.js:f`, which does not parse.
        for path in [".js.js:f", "dir/.js.js:f", ".js.js"] {
            let err = UdfPath::parse(path).expect_err(path);
            assert!(
                err.message().contains("named only `.js`"),
                "{}",
                err.message()
            );
        }
        for path in [".hidden.js:f", "dir/.env:f", "a.js", "a_.js:x", "js.js:f"] {
            let once = canonical(path);
            assert_eq!(
                canonical(&once),
                once,
                "{path:?} → {once:?} is not a fixed point"
            );
        }
    }

    #[test]
    fn overlong_components_are_rejected() {
        let long = "a".repeat(UDF_PATH_COMPONENT_MAX_LEN + 1);
        let ok = "a".repeat(UDF_PATH_COMPONENT_MAX_LEN);
        assert!(UdfPath::parse(&format!("{ok}:{ok}")).is_ok());
        assert!(UdfPath::parse(&format!("{long}:list")).is_err());
        assert!(UdfPath::parse(&format!("messages:{long}")).is_err());
    }
}
