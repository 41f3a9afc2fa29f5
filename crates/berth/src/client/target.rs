//! The objects a command line names: `KIND NAME...` or `KIND/NAME...`, like kubectl.

/// A kind as typed plus the names given for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The kind as typed (`ms`, `pods`, ...).
    pub kind: String,
    /// The object names (empty means "all").
    pub names: Vec<String>,
}

/// Why positional arguments do not name objects.
#[derive(Debug, PartialEq, Eq)]
pub enum TargetError {
    /// Nothing given.
    Missing,
    /// `KIND/NAME` mixed with a separate kind argument.
    Mixed,
}

impl std::fmt::Display for TargetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TargetError::Missing => f.write_str("you must specify the type of resource"),
            TargetError::Mixed => f.write_str(
                "there is no need to specify a resource type as a separate argument when passing arguments in \
                 resource/name form (e.g. 'berth get resource/<resource_name>' instead of 'berth get resource \
                 resource/<resource_name>')",
            ),
        }
    }
}

impl std::error::Error for TargetError {}

/// Splits positional arguments into targets, in the order given.
pub fn parse(args: &[String]) -> Result<Vec<Target>, TargetError> {
    let first = args.first().ok_or(TargetError::Missing)?;
    if !first.contains('/') {
        if args[1..].iter().any(|a| a.contains('/')) {
            return Err(TargetError::Mixed);
        }
        return Ok(vec![Target {
            kind: first.clone(),
            names: args[1..].to_vec(),
        }]);
    }
    let mut targets: Vec<Target> = Vec::new();
    for arg in args {
        let (kind, name) = arg.split_once('/').ok_or(TargetError::Mixed)?;
        match targets.iter_mut().find(|t| t.kind == kind) {
            Some(t) => t.names.push(name.to_string()),
            None => targets.push(Target {
                kind: kind.to_string(),
                names: vec![name.to_string()],
            }),
        }
    }
    Ok(targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn kind_then_names() {
        assert_eq!(
            parse(&s(&["ms", "a", "b"])).unwrap(),
            vec![Target {
                kind: "ms".into(),
                names: s(&["a", "b"])
            }]
        );
        assert_eq!(
            parse(&s(&["ms"])).unwrap(),
            vec![Target {
                kind: "ms".into(),
                names: vec![]
            }]
        );
    }

    #[test]
    fn slash_form_groups_by_kind() {
        let got = parse(&s(&["ms/a", "pod/p", "ms/b"])).unwrap();
        assert_eq!(
            got,
            vec![
                Target {
                    kind: "ms".into(),
                    names: s(&["a", "b"])
                },
                Target {
                    kind: "pod".into(),
                    names: s(&["p"])
                },
            ]
        );
    }

    #[test]
    fn rejects_mixed_and_empty() {
        assert_eq!(parse(&s(&["ms", "ms/a"])), Err(TargetError::Mixed));
        assert_eq!(parse(&s(&["ms/a", "b"])), Err(TargetError::Mixed));
        assert_eq!(parse(&[]), Err(TargetError::Missing));
    }
}
