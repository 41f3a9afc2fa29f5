//! The small JSONPath subset CRD `additionalPrinterColumns` use (`.a.b`, `.a[0]`, `.a[*].b`,
//! `.a[?(@.k=="v")].b`): a parser into steps and their evaluation over `serde_json` values.
//!
//! Kept apart from [`crate::table`], which renders Tables and only asks this module for the
//! values a column's path selects.

use serde_json::Value;

/// Evaluates a simple JSONPath: `.a.b`, `.a[0]`, `.a[*].b`, `.a[?(@.k=="v")].b` (also `{...}`
/// wrapped). Returns every matched value.
pub fn jsonpath<'a>(obj: &'a Value, path: &str) -> Vec<&'a Value> {
    let path = path
        .trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .trim();
    let mut cur: Vec<&Value> = vec![obj];
    for step in steps(path) {
        cur = cur.into_iter().flat_map(|v| apply_step(v, &step)).collect();
    }
    cur
}

/// One step of a parsed path.
#[derive(Debug, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
    All,
    Filter { field: String, value: String },
}

/// Splits a path (without its `{...}` wrapping) into steps; a leading `$` is ignored.
fn steps(path: &str) -> Vec<Step> {
    let mut out = Vec::new();
    let mut rest = path.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = bracket_end(r) else { break };
            let inner = r[..end].trim();
            out.push(if inner == "*" {
                Step::All
            } else if let Ok(i) = inner.parse() {
                Step::Index(i)
            } else if let Some(f) = parse_filter(inner) {
                f
            } else {
                Step::Field(inner.trim_matches(['\'', '"']).to_string())
            });
            rest = &r[end + 1..];
        } else {
            let r = rest.strip_prefix('.').unwrap_or(rest);
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end > 0 {
                out.push(Step::Field(r[..end].to_string()));
            }
            rest = &r[end..];
        }
    }
    out
}

/// The index of the `]` closing a bracket whose content starts at `s` (quotes respected).
fn bracket_end(s: &str) -> Option<usize> {
    let mut quote = None;
    for (i, ch) in s.char_indices() {
        match (ch, quote) {
            ('"' | '\'', None) => quote = Some(ch),
            (c, Some(q)) if c == q => quote = None,
            (']', None) => return Some(i),
            _ => {}
        }
    }
    None
}

/// `?(@.type=="Ready")` -> a filter on `type`.
fn parse_filter(inner: &str) -> Option<Step> {
    let body = inner
        .strip_prefix('?')?
        .trim()
        .strip_prefix('(')?
        .strip_suffix(')')?;
    let (lhs, rhs) = body.split_once("==")?;
    let field = lhs.trim().strip_prefix("@.")?.to_string();
    let value = rhs.trim().trim_matches(['"', '\'']).to_string();
    Some(Step::Filter { field, value })
}

/// The values one step selects from `v`.
fn apply_step<'a>(v: &'a Value, step: &Step) -> Vec<&'a Value> {
    match step {
        Step::Field(f) => v.get(f).into_iter().collect(),
        Step::Index(i) => v.get(i).into_iter().collect(),
        Step::All => match v {
            Value::Array(a) => a.iter().collect(),
            Value::Object(m) => m.values().collect(),
            _ => Vec::new(),
        },
        Step::Filter { field, value } => v
            .as_array()
            .into_iter()
            .flatten()
            .filter(|item| match item.get(field) {
                Some(Value::String(s)) => s == value,
                Some(other) => &other.to_string() == value,
                None => false,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn jsonpath_forms() {
        let o = json!({"a":{"b":[{"c":1,"n":"x"},{"c":2,"n":"y"}]}});
        assert_eq!(jsonpath(&o, ".a.b[1].c"), vec![&json!(2)]);
        assert_eq!(jsonpath(&o, "{.a.b[*].c}"), vec![&json!(1), &json!(2)]);
        assert_eq!(jsonpath(&o, ".a.b[?(@.n=='y')].c"), vec![&json!(2)]);
        assert!(jsonpath(&o, ".a.zz").is_empty());
    }
}
