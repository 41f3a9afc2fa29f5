//! Name grammars shared by Kubernetes objects: DNS-1123 labels and subdomains, IANA service
//! (port) names, label keys and values, environment variable names.
//!
//! Each check returns the list of problems (empty when the name is valid), phrased like
//! kube-apiserver's messages, so callers can put them into field errors unchanged.

/// Longest DNS-1123 label.
pub const DNS1123_LABEL_MAX: usize = 63;
/// Longest DNS-1123 subdomain.
pub const DNS1123_SUBDOMAIN_MAX: usize = 253;

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_label(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum)
}

/// Problems with `name` as an RFC 1123 label (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63).
pub fn validate_dns1123_label(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !is_label(name) {
        errs.push(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', \
             and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc')"
                .to_string(),
        );
    }
    errs
}

/// Problems with `name` as an RFC 1123 subdomain (dot-separated labels, at most 253).
pub fn validate_dns1123_subdomain(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if !name.split('.').all(is_label) {
        errs.push(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' \
             or '.', and must start and end with an alphanumeric character (e.g. 'example.com')"
                .to_string(),
        );
    }
    errs
}

/// Problems with `name` as an IANA service name (a container port name): at most 15
/// characters of `[a-z0-9-]`, at least one letter, no leading, trailing or doubled `-`.
pub fn validate_port_name(name: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters".to_string());
    }
    if !name.chars().all(|c| is_lower_alnum(c) || c == '-') {
        errs.push(
            "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".to_string(),
        );
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens".to_string());
    }
    if !name.chars().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".to_string());
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen".to_string());
    }
    errs
}

/// Problems with `name` as an environment variable name (`[-._a-zA-Z][-._a-zA-Z0-9]*`).
pub fn validate_env_var_name(name: &str) -> Vec<String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_');
    let ok = !name.is_empty()
        && name.chars().all(allowed)
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Vec::new()
    } else {
        vec![
            "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', \
             or '.', and must not start with a digit"
                .to_string(),
        ]
    }
}

fn is_label_value_body(s: &str) -> bool {
    let alnum = |c: char| c.is_ascii_alphanumeric();
    s.chars().all(|c| alnum(c) || matches!(c, '-' | '_' | '.'))
        && s.starts_with(alnum)
        && s.ends_with(alnum)
}

/// Problems with `value` as a label value (empty, or at most 63 of `[A-Za-z0-9_.-]` starting and
/// ending alphanumeric).
pub fn validate_label_value(value: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if value.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !value.is_empty() && !is_label_value_body(value) {
        errs.push(
            "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', \
             and must start and end with an alphanumeric character"
                .to_string(),
        );
    }
    errs
}

/// Problems with `key` as a label key (`[prefix/]name`, prefix a DNS subdomain, name like a
/// non-empty label value).
pub fn validate_label_key(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut errs = Vec::new();
    if let Some(prefix) = prefix {
        errs.extend(
            validate_dns1123_subdomain(prefix)
                .into_iter()
                .map(|e| format!("prefix part {e}")),
        );
    }
    if name.is_empty() || name.len() > DNS1123_LABEL_MAX || !is_label_value_body(name) {
        errs.push(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end \
             with an alphanumeric character, at most 63 characters"
                .to_string(),
        );
    }
    errs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        assert!(validate_dns1123_label("churn-model").is_empty());
        assert!(validate_dns1123_label("a1").is_empty());
        for bad in ["", "Churn", "-a", "a-", "a.b", "a_b"] {
            assert!(!validate_dns1123_label(bad).is_empty(), "{bad:?} accepted");
        }
        assert!(!validate_dns1123_label(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn dns_subdomains() {
        assert!(validate_dns1123_subdomain("modelservices.berth.dev").is_empty());
        for bad in ["", "a..b", ".a", "A.b", "a.-b"] {
            assert!(
                !validate_dns1123_subdomain(bad).is_empty(),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn port_names() {
        assert!(validate_port_name("http").is_empty());
        assert!(validate_port_name("grpc-2").is_empty());
        for bad in ["", "8080", "HTTP", "a--b", "-http", "abcdefghijklmnop"] {
            assert!(!validate_port_name(bad).is_empty(), "{bad:?} accepted");
        }
    }

    #[test]
    fn env_names() {
        assert!(validate_env_var_name("MODEL_PATH").is_empty());
        assert!(validate_env_var_name("_x.y-z").is_empty());
        for bad in ["", "1X", "A=B", "A B"] {
            assert!(!validate_env_var_name(bad).is_empty(), "{bad:?} accepted");
        }
    }

    #[test]
    fn label_keys_and_values() {
        assert!(validate_label_key("kubernetes.io/arch").is_empty());
        assert!(validate_label_key("gpu").is_empty());
        assert!(!validate_label_key("Bad_/x").is_empty());
        assert!(!validate_label_key("a/").is_empty());
        assert!(validate_label_value("").is_empty());
        assert!(validate_label_value("amd64").is_empty());
        assert!(!validate_label_value("-x").is_empty());
    }
}
