//! Rendering server-side Tables (`meta.k8s.io/v1` Table) like kubectl: uppercase headers,
//! columns padded to line up, `<none>` for missing cells, priority > 0 columns only with
//! `-o wide`, a NAMESPACE column with `-A`; and kubectl's human-readable ages.

use serde::Deserialize;
use serde_json::Value;

/// The `Accept` header that asks the server for a Table.
pub const TABLE_ACCEPT: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json";

/// A Table as the server sends it.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct Table {
    /// Column definitions, in order.
    #[serde(default)]
    pub column_definitions: Vec<Column>,
    /// One row per object.
    #[serde(default)]
    pub rows: Vec<Row>,
    /// List metadata (resourceVersion to watch from).
    #[serde(default)]
    pub metadata: Value,
}

/// One column definition.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Column {
    /// Header text.
    pub name: String,
    /// 0 for the default view, more for `-o wide`.
    #[serde(default)]
    pub priority: i32,
}

/// One row.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct Row {
    /// Cell values, one per column.
    #[serde(default)]
    pub cells: Vec<Value>,
    /// The object (PartialObjectMetadata by default), for its namespace.
    #[serde(default)]
    pub object: Value,
}

/// How to render.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Include priority > 0 columns.
    pub wide: bool,
    /// Prepend a NAMESPACE column.
    pub namespace: bool,
}

/// Prefixes each row's name (the first column) with `kind.group/`, as kubectl does when one
/// command lists several kinds.
pub fn prefix_names(table: &mut Table, prefix: &str) {
    for row in &mut table.rows {
        if let Some(Value::String(name)) = row.cells.first_mut() {
            *name = format!("{prefix}/{name}");
        }
    }
}

/// The header line's cells.
pub fn header(table: &Table, opts: Options) -> Vec<String> {
    let mut out = Vec::new();
    if opts.namespace {
        out.push("NAMESPACE".to_string());
    }
    out.extend(visible(table, opts).map(|(_, c)| c.name.to_uppercase()));
    out
}

/// Each row's cells, as text.
pub fn rows(table: &Table, opts: Options) -> Vec<Vec<String>> {
    let columns: Vec<usize> = visible(table, opts).map(|(i, _)| i).collect();
    table
        .rows
        .iter()
        .map(|row| {
            let mut out = Vec::new();
            if opts.namespace {
                out.push(
                    row.object["metadata"]["namespace"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                );
            }
            out.extend(
                columns
                    .iter()
                    .map(|i| cell_text(row.cells.get(*i).unwrap_or(&Value::Null))),
            );
            out
        })
        .collect()
}

fn visible(table: &Table, opts: Options) -> impl Iterator<Item = (usize, &Column)> {
    table
        .column_definitions
        .iter()
        .enumerate()
        .filter(move |(_, c)| opts.wide || c.priority == 0)
}

/// A cell as kubectl prints it.
pub fn cell_text(v: &Value) -> String {
    match v {
        Value::Null => "<none>".to_string(),
        Value::String(s) if s.is_empty() => "<none>".to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => "<none>".to_string(),
        Value::Array(items) => items.iter().map(cell_text).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

/// Column widths for aligned output: each column but the last is padded by 3 spaces, and at
/// least 10 wide (kubectl's tab writer settings).
pub fn widths(lines: &[Vec<String>]) -> Vec<usize> {
    let n = lines.iter().map(Vec::len).max().unwrap_or(0);
    (0..n)
        .map(|i| {
            let longest = lines
                .iter()
                .filter_map(|l| l.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0);
            (longest + 3).max(10)
        })
        .collect()
}

/// One line padded to `widths` (the last cell unpadded).
pub fn format_line(cells: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (i, cell) in cells.iter().enumerate() {
        if i + 1 == cells.len() {
            line.push_str(cell);
        } else {
            let width = widths.get(i).copied().unwrap_or(0);
            line.push_str(&format!("{cell:<width$}"));
        }
    }
    line
}

/// Lines aligned as a block.
#[cfg(test)]
pub fn align(lines: &[Vec<String>]) -> String {
    let w = widths(lines);
    lines.iter().map(|l| format_line(l, &w) + "\n").collect()
}

/// kubectl's human-readable duration (`45s`, `5m12s`, `3h`, `2d4h`, `400d`, `3y20d`).
pub fn human_age(seconds: i64) -> String {
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    let s = seconds.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    let with_rest = |big: i64, unit: &str, rest: i64, rest_unit: &str| {
        if rest == 0 {
            format!("{big}{unit}")
        } else {
            format!("{big}{unit}{rest}{rest_unit}")
        }
    };
    match s {
        _ if s < 120 => format!("{s}s"),
        _ if m < 10 => with_rest(m, "m", s % 60, "s"),
        _ if h < 3 => format!("{m}m"),
        _ if h < 8 => with_rest(h, "h", m % 60, "m"),
        _ if h < 48 => format!("{h}h"),
        _ if d < 8 => with_rest(d, "d", h % 24, "h"),
        _ if d < 365 * 2 => format!("{d}d"),
        _ if d < 365 * 8 => with_rest(d / 365, "y", d % 365, "d"),
        _ => format!("{}y", d / 365),
    }
}

/// The age of an RFC 3339 timestamp, or `<unknown>`.
pub fn age_of(timestamp: &str) -> String {
    chrono::DateTime::parse_from_rfc3339(timestamp).map_or_else(
        |_| "<unknown>".to_string(),
        |t| human_age((chrono::Utc::now() - t.with_timezone(&chrono::Utc)).num_seconds()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Table {
        serde_json::from_value(json!({
            "kind": "Table",
            "columnDefinitions": [
                {"name": "Name", "type": "string", "priority": 0},
                {"name": "Image", "type": "string", "priority": 0},
                {"name": "Ready", "type": "integer", "priority": 0},
                {"name": "Port", "type": "integer", "priority": 1},
                {"name": "Age", "type": "date", "priority": 0}],
            "rows": [
                {"cells": ["churn-model", "localhost:5000/churn-model:v1", 3, 8000, "5m12s"],
                 "object": {"metadata": {"name": "churn-model", "namespace": "default"}}},
                {"cells": ["x", "busybox", null, null, "2d"],
                 "object": {"metadata": {"name": "x", "namespace": "team-a"}}}]
        }))
        .unwrap()
    }

    fn render(opts: Options) -> String {
        let t = table();
        let mut lines = vec![header(&t, opts)];
        lines.extend(rows(&t, opts));
        align(&lines)
    }

    #[test]
    fn default_view_hides_priority_columns() {
        assert_eq!(
            render(Options::default()),
            "NAME          IMAGE                           READY     AGE\n\
             churn-model   localhost:5000/churn-model:v1   3         5m12s\n\
             x             busybox                         <none>    2d\n"
        );
    }

    #[test]
    fn wide_and_all_namespaces() {
        let out = render(Options {
            wide: true,
            namespace: true,
        });
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[0],
            "NAMESPACE   NAME          IMAGE                           READY     PORT      AGE"
        );
        assert_eq!(
            lines[1],
            "default     churn-model   localhost:5000/churn-model:v1   3         8000      5m12s"
        );
        assert_eq!(
            lines[2],
            "team-a      x             busybox                         <none>    <none>    2d"
        );
    }

    #[test]
    fn ages_like_kubectl() {
        let cases = [
            (-5, "<invalid>"),
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (120, "2m"),
            (312, "5m12s"),
            (600, "10m"),
            (3 * 3600 - 1, "179m"),
            (3 * 3600, "3h"),
            (5 * 3600 + 7 * 60, "5h7m"),
            (30 * 3600, "30h"),
            (2 * 86400 + 4 * 3600, "2d4h"),
            (3 * 86400, "3d"),
            (400 * 86400, "400d"),
            (3 * 365 * 86400 + 20 * 86400, "3y20d"),
            (9 * 365 * 86400, "9y"),
        ];
        for (secs, want) in cases {
            assert_eq!(human_age(secs), want, "{secs}s");
        }
    }

    #[test]
    fn cells() {
        assert_eq!(cell_text(&json!(null)), "<none>");
        assert_eq!(cell_text(&json!(["a", "b"])), "a,b");
        assert_eq!(cell_text(&json!(true)), "true");
        assert_eq!(cell_text(&json!(1.5)), "1.5");
    }
}
