//! The documentation cannot drift from the code: the knobs table of `docs/operations.md` is
//! generated from `crates/common/src/knobs.rs` (names, defaults, descriptions) and every
//! relative link of the README and `docs/` points at a file that exists.
//!
//! When a knob changes, this test fails and prints the table to paste between the
//! `<!-- knobs:start -->` and `<!-- knobs:end -->` markers.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One `knob!` of `knobs.rs`.
struct Knob {
    area: String,
    name: String,
    default: u64,
    doc: String,
}

/// Evaluate a default written as an integer expression of `_`-separated literals, `*`, `+`
/// and `<<` (with Rust's precedence: `<<` binds loosest).
fn evaluate(expr: &str) -> u64 {
    let shift: Vec<&str> = expr.split("<<").collect();
    let value = |text: &str| -> u64 {
        text.split('+')
            .map(|term| {
                term.split('*')
                    .map(|factor| {
                        factor
                            .trim()
                            .replace('_', "")
                            .parse::<u64>()
                            .unwrap_or_else(|_| panic!("cannot evaluate the knob default `{expr}`"))
                    })
                    .product::<u64>()
            })
            .sum()
    };
    shift[1..]
        .iter()
        .fold(value(shift[0]), |acc, amount| acc << value(amount))
}

fn knobs() -> Vec<Knob> {
    let source = std::fs::read_to_string(workspace().join("crates/common/src/knobs.rs"))
        .expect("knobs.rs is readable");
    let mut knobs = Vec::new();
    let mut area = String::new();
    let mut doc = Vec::new();
    for line in source.lines().map(str::trim) {
        if let Some(name) = line
            .strip_prefix("// ---- ")
            .and_then(|rest| rest.strip_suffix(" ----"))
        {
            area = name.to_owned();
        } else if let Some(text) = line.strip_prefix("///") {
            doc.push(text.trim().to_owned());
        } else if let Some((name, rest)) = line.split_once(':') {
            let is_knob = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            if is_knob {
                let (_, default) = rest.split_once('=').expect("a knob has a default");
                knobs.push(Knob {
                    area: area.clone(),
                    name: name.to_owned(),
                    default: evaluate(default),
                    doc: doc.join(" "),
                });
            }
            doc.clear();
        } else if line.is_empty() {
            doc.clear();
        }
    }
    knobs
}

/// `1048576` → `1048576 (1 MiB)`, `60000` ms → `60000 (1 min)`.
fn shown(name: &str, value: u64) -> String {
    let human = if name.ends_with("_BYTES") && value >= 1024 {
        let units = [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
        units
            .iter()
            .find(|(_, size)| value >= *size)
            .map(|(unit, size)| {
                if value % size == 0 {
                    format!("{} {unit}", value / size)
                } else {
                    format!("{} {unit} + {} bytes", value / size, value % size)
                }
            })
    } else if name.ends_with("_MS") || name.ends_with("_SECS") {
        let ms = if name.ends_with("_MS") {
            value
        } else {
            value * 1000
        };
        match ms {
            ms if ms >= 3_600_000 && ms % 3_600_000 == 0 => Some(format!("{} h", ms / 3_600_000)),
            ms if ms >= 60_000 && ms % 60_000 == 0 => Some(format!("{} min", ms / 60_000)),
            ms if ms >= 1000 && ms % 1000 == 0 && name.ends_with("_MS") => {
                Some(format!("{} s", ms / 1000))
            }
            _ => None,
        }
    } else {
        None
    };
    match human {
        Some(human) => format!("{value} ({human})"),
        None => value.to_string(),
    }
}

fn knob_table() -> String {
    let mut table =
        String::from("| Variable | Area | Default | What it sets |\n| --- | --- | --- | --- |\n");
    for knob in knobs() {
        table.push_str(&format!(
            "| `CONFLUX_{}` | {} | {} | {} |\n",
            knob.name,
            knob.area,
            shown(&knob.name, knob.default),
            knob.doc.replace('|', "\\|")
        ));
    }
    table
}

#[test]
fn the_knobs_table_in_operations_md_matches_the_source() {
    let knobs = knobs();
    assert!(
        knobs.len() >= 40,
        "knobs.rs was parsed ({} knobs)",
        knobs.len()
    );
    assert!(
        knobs
            .iter()
            .any(|k| k.name == "DOCUMENT_MAX_BYTES" && k.default == 1 << 20),
        "the parser reads names and defaults"
    );
    let docs = std::fs::read_to_string(workspace().join("docs/operations.md"))
        .expect("docs/operations.md is readable");
    let start = "<!-- knobs:start -->\n";
    let end = "<!-- knobs:end -->";
    let documented = docs
        .split_once(start)
        .and_then(|(_, rest)| rest.split_once(end))
        .map(|(table, _)| table)
        .expect("docs/operations.md has the knobs markers");
    let expected = knob_table();
    assert!(
        documented == expected,
        "the knobs table of docs/operations.md is out of date; paste this between the markers:\n\n{expected}"
    );
}

/// The relative link targets of a Markdown text (`[text](target)`), without anchors.
fn relative_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut in_code = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continue;
        }
        if in_code {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            rest = &rest[at + 2..];
            let Some(close) = rest.find(')') else { break };
            let target = &rest[..close];
            rest = &rest[close..];
            let target = target.split('#').next().unwrap_or_default();
            if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            links.push(target.to_owned());
        }
    }
    links
}

#[test]
fn every_relative_link_in_the_readme_and_docs_points_at_a_file() {
    let mut pages: Vec<PathBuf> = vec![workspace().join("README.md")];
    let docs = workspace().join("docs");
    for entry in std::fs::read_dir(&docs).expect("docs/ is readable") {
        let path = entry.expect("a docs entry").path();
        if path.extension().is_some_and(|ext| ext == "md") {
            pages.push(path);
        }
    }
    let mut broken = Vec::new();
    for page in &pages {
        let text = std::fs::read_to_string(page).expect("a page is readable");
        let base = page.parent().unwrap_or(Path::new("."));
        for link in relative_links(&text) {
            if !base.join(&link).exists() {
                broken.push(format!("{} → {link}", page.display()));
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn links_are_read_outside_code_blocks_without_anchors_or_urls() {
    let text = "See [ops](operations.md#knobs), [site](https://example.com) and [top](#top).\n\
                ```text\n[not a link](missing.md)\n```\n[web](../examples/chat/web/README.md)";
    assert_eq!(
        relative_links(text),
        vec!["operations.md", "../examples/chat/web/README.md"]
    );
}
