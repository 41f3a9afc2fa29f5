//! Reading manifests: files, directories (`-R` to descend) and stdin (`-`), each a stream of YAML
//! (or JSON) documents; `kind: List` documents are flattened into their items. Everything is read
//! and checked before a command sends anything, so bad input changes nothing.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::Value;

/// One object from a manifest.
#[derive(Debug, Clone)]
pub struct Doc {
    /// Where it came from (a path or `STDIN`), for messages.
    pub source: String,
    /// The object.
    pub obj: Value,
}

impl Doc {
    /// `metadata.name`.
    pub fn name(&self) -> &str {
        self.obj["metadata"]["name"].as_str().unwrap_or_default()
    }

    /// `metadata.namespace`, if set.
    pub fn namespace(&self) -> Option<&str> {
        self.obj["metadata"]["namespace"]
            .as_str()
            .filter(|s| !s.is_empty())
    }

    /// `apiVersion`.
    pub fn api_version(&self) -> &str {
        self.obj["apiVersion"].as_str().unwrap_or_default()
    }

    /// `kind`.
    pub fn kind(&self) -> &str {
        self.obj["kind"].as_str().unwrap_or_default()
    }
}

/// Why manifests could not be read.
#[derive(Debug)]
pub enum ManifestError {
    /// A file or directory could not be read.
    Io {
        /// The path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A document is not YAML.
    Parse {
        /// The file.
        source_name: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A document lacks apiVersion, kind or metadata.name.
    Incomplete {
        /// The file.
        source_name: String,
        /// 1-based document number in the file.
        index: usize,
        /// What is missing.
        message: String,
    },
    /// No objects at all.
    Empty(String),
}

impl std::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ManifestError::Io { path, source } => {
                write!(f, "the path \"{path}\" could not be read: {source}")
            }
            ManifestError::Parse {
                source_name,
                message,
            } => write!(f, "error parsing {source_name}: {message}"),
            ManifestError::Incomplete {
                source_name,
                index,
                message,
            } => {
                write!(
                    f,
                    "error validating \"{source_name}\": document {index}: {message}"
                )
            }
            ManifestError::Empty(verb) => write!(f, "no objects passed to {verb}"),
        }
    }
}

impl std::error::Error for ManifestError {}

/// Reads every object from `-f` arguments.
pub fn read_all(files: &[String], recursive: bool, verb: &str) -> Result<Vec<Doc>, ManifestError> {
    let mut docs = Vec::new();
    for f in files {
        if f == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|source| ManifestError::Io {
                    path: "-".into(),
                    source,
                })?;
            docs.extend(parse_docs(&text, "STDIN")?);
            continue;
        }
        for path in expand(Path::new(f), recursive, true)? {
            let text = std::fs::read_to_string(&path).map_err(|source| io_err(&path, source))?;
            docs.extend(parse_docs(&text, &path.display().to_string())?);
        }
    }
    if docs.is_empty() {
        return Err(ManifestError::Empty(verb.to_string()));
    }
    Ok(docs)
}

fn io_err(path: &Path, source: std::io::Error) -> ManifestError {
    ManifestError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The manifest files under `path`: itself if a file, else its `.yaml`/`.yml`/`.json` files in
/// name order (descending into subdirectories only when `recursive`).
fn expand(path: &Path, recursive: bool, top: bool) -> Result<Vec<PathBuf>, ManifestError> {
    let meta = std::fs::metadata(path).map_err(|e| io_err(path, e))?;
    if !meta.is_dir() {
        return Ok(vec![path.to_path_buf()]);
    }
    if !top && !recursive {
        return Ok(Vec::new());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| io_err(path, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    let mut out = Vec::new();
    for entry in entries {
        if entry.is_dir() {
            out.extend(expand(&entry, recursive, false)?);
        } else if entry
            .extension()
            .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
        {
            out.push(entry);
        }
    }
    Ok(out)
}

/// Splits a YAML stream into objects, dropping empty documents and flattening Lists.
pub fn parse_docs(text: &str, source: &str) -> Result<Vec<Doc>, ManifestError> {
    let mut docs = Vec::new();
    for (i, de) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let value = Value::deserialize(de).map_err(|e| ManifestError::Parse {
            source_name: source.to_string(),
            message: e.to_string(),
        })?;
        let incomplete = |message: &str| ManifestError::Incomplete {
            source_name: source.to_string(),
            index: i + 1,
            message: message.to_string(),
        };
        match value {
            Value::Null => continue,
            Value::Object(_) => {}
            _ => return Err(incomplete("not an object")),
        }
        let is_list = value["kind"]
            .as_str()
            .is_some_and(|k| k == "List" || k.ends_with("List"))
            && value["items"].is_array();
        let objects = if is_list {
            value["items"].as_array().cloned().unwrap_or_default()
        } else {
            vec![value]
        };
        for obj in objects {
            check(&obj).map_err(incomplete)?;
            docs.push(Doc {
                source: source.to_string(),
                obj,
            });
        }
    }
    Ok(docs)
}

fn check(obj: &Value) -> Result<(), &'static str> {
    if obj["apiVersion"].as_str().is_none_or(str::is_empty) {
        return Err("apiVersion not set");
    }
    if obj["kind"].as_str().is_none_or(str::is_empty) {
        return Err("kind not set");
    }
    if obj["metadata"]["name"].as_str().is_none_or(str::is_empty) {
        return Err("metadata.name not set");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_documents_and_skips_empty_ones() {
        let text = "---\napiVersion: v1\nkind: Namespace\nmetadata: {name: a}\n---\n# only a comment\n---\n{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\", \"metadata\": {\"name\": \"b\"}}\n";
        let docs = parse_docs(text, "f.yaml").unwrap();
        let names: Vec<&str> = docs.iter().map(Doc::name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(docs[1].kind(), "ConfigMap");
    }

    #[test]
    fn flattens_lists() {
        let text = "apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: x}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: y}}\n";
        assert_eq!(parse_docs(text, "l.yaml").unwrap().len(), 2);
    }

    #[test]
    fn malformed_yaml_names_the_file_and_line() {
        let err = parse_docs("apiVersion: v1\nkind: [unclosed\n", "bad.yaml").unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("error parsing bad.yaml: "), "{msg}");
        assert!(msg.contains("line"), "{msg}");
    }

    #[test]
    fn incomplete_objects_are_rejected() {
        let err = parse_docs("apiVersion: v1\nmetadata: {name: a}\n", "f.yaml").unwrap_err();
        assert_eq!(
            err.to_string(),
            "error validating \"f.yaml\": document 1: kind not set"
        );
        let err = parse_docs("- a\n- b\n", "f.yaml").unwrap_err();
        assert!(err.to_string().contains("not an object"));
    }

    #[test]
    fn directories_are_read_in_name_order_and_recursion_is_opt_in() {
        let dir = tempfile::tempdir().unwrap();
        let cm = |n: &str| format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {n}}}\n");
        std::fs::write(dir.path().join("b.yaml"), cm("b")).unwrap();
        std::fs::write(dir.path().join("a.yml"), cm("a")).unwrap();
        std::fs::write(dir.path().join("notes.txt"), "not a manifest").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(
            dir.path().join("sub/c.json"),
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}"#,
        )
        .unwrap();
        let d = dir.path().display().to_string();
        let names = |docs: Vec<Doc>| {
            docs.iter()
                .map(|x| x.name().to_string())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(read_all(std::slice::from_ref(&d), false, "apply").unwrap()),
            ["a", "b"]
        );
        assert_eq!(
            names(read_all(&[d], true, "apply").unwrap()),
            ["a", "b", "c"]
        );
        let empty = tempfile::tempdir().unwrap();
        let err = read_all(&[empty.path().display().to_string()], false, "apply").unwrap_err();
        assert_eq!(err.to_string(), "no objects passed to apply");
    }
}
