//! Validation of ModelService objects, reporting every problem with its field path in the
//! Kubernetes form (`spec.ports[1].containerPort`), so the API server can answer a 422 `Invalid`
//! Status whose causes name each field, and clients can show them all at once.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use k8s_openapi::api::core::v1::{ContainerPort, Probe, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{Value, json};

use crate::modelservice::{ModelService, ModelServiceSpec};
use crate::names;
use crate::quantity::parse_quantity;

/// Longest ModelService name: its pods are named `<name>-<hash up to 10>-<5 random>`, and pod
/// names must stay DNS-1123 labels (63 characters), so 17 characters are kept for the suffix.
pub const MAX_NAME_LEN: usize = names::DNS1123_LABEL_MAX - 17;

/// The kind of a field error; its [`reason`](ErrorType::reason) is the `reason` of a
/// `metav1.StatusCause`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    /// A required field is missing or empty.
    Required,
    /// A value is malformed or out of range.
    Invalid,
    /// A value must be unique but is repeated.
    Duplicate,
    /// A value is not one of the supported ones.
    NotSupported,
    /// A value is too long.
    TooLong,
}

impl ErrorType {
    /// The `metav1.CauseType` string, e.g. `FieldValueInvalid`.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::TooLong => "FieldValueTooLong",
        }
    }
}

/// One problem with one field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// What kind of problem.
    pub error_type: ErrorType,
    /// Field path, e.g. `spec.readinessProbe.httpGet.port`.
    pub field: String,
    /// The offending value, if there is one to show.
    pub value: Option<Value>,
    /// Why it is wrong.
    pub detail: String,
}

impl FieldError {
    fn new(
        error_type: ErrorType,
        field: impl Into<String>,
        value: Option<Value>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            error_type,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }

    /// A missing value.
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, field, None, detail)
    }

    /// A malformed value.
    pub fn invalid(field: impl Into<String>, value: Value, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Invalid, field, Some(value), detail)
    }

    /// A repeated value.
    pub fn duplicate(field: impl Into<String>, value: Value) -> Self {
        Self::new(ErrorType::Duplicate, field, Some(value), "")
    }

    /// An unsupported value.
    pub fn not_supported(field: impl Into<String>, value: Value, supported: &[&str]) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self::new(
            ErrorType::NotSupported,
            field,
            Some(value),
            format!("supported values: {}", list.join(", ")),
        )
    }

    /// The `metav1.StatusCause` reason, e.g. `FieldValueInvalid`.
    pub fn reason(&self) -> &'static str {
        self.error_type.reason()
    }

    /// The cause message, worded like kube-apiserver's (`Invalid value: -1: must be ...`).
    pub fn message(&self) -> String {
        let head = match self.error_type {
            ErrorType::Required => "Required value".to_string(),
            ErrorType::Invalid => format!("Invalid value: {}", self.value_text()),
            ErrorType::Duplicate => format!("Duplicate value: {}", self.value_text()),
            ErrorType::NotSupported => format!("Unsupported value: {}", self.value_text()),
            ErrorType::TooLong => "Too long".to_string(),
        };
        if self.detail.is_empty() {
            head
        } else {
            format!("{head}: {}", self.detail)
        }
    }

    fn value_text(&self) -> String {
        self.value
            .as_ref()
            .map_or_else(|| "null".to_string(), Value::to_string)
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

/// Validates a ModelService, returning every problem found.
pub fn validate(ms: &ModelService) -> Result<(), Vec<FieldError>> {
    let mut errs = Vec::new();
    validate_metadata(ms, &mut errs);
    validate_spec(&ms.spec, &mut errs);
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// Validates a ModelService given as JSON (what the API server holds): a shape that does not
/// deserialize is one error at the offending path, otherwise [`validate`]'s errors.
pub fn validate_value(obj: &Value) -> Vec<FieldError> {
    match serde_path_to_error::deserialize::<_, ModelService>(obj) {
        Ok(ms) => validate(&ms).err().unwrap_or_default(),
        Err(e) => vec![shape_error(&e)],
    }
}

fn shape_error(e: &serde_path_to_error::Error<serde_json::Error>) -> FieldError {
    let path = e.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let msg = e.inner().to_string();
    // serde words a missing field "missing field `x`"; Kubernetes calls that a required value.
    if let Some(field) = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        let full = if path.is_empty() {
            field.to_string()
        } else {
            format!("{path}.{field}")
        };
        return FieldError::required(full, "");
    }
    let detail = msg.split(" at line ").next().unwrap_or(&msg).to_string();
    let field = if path.is_empty() {
        "<root>".to_string()
    } else {
        path
    };
    FieldError::new(ErrorType::Invalid, field, None, detail)
}

fn validate_metadata(ms: &ModelService, errs: &mut Vec<FieldError>) {
    let meta = &ms.metadata;
    match meta.name.as_deref() {
        None | Some("") if meta.generate_name.is_some() => {}
        None | Some("") => errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            for e in names::validate_dns1123_label(name) {
                errs.push(FieldError::invalid("metadata.name", json!(name), e));
            }
            if name.len() > MAX_NAME_LEN && name.len() <= names::DNS1123_LABEL_MAX {
                let detail = format!(
                    "must be no more than {MAX_NAME_LEN} characters (pod names add a suffix)"
                );
                errs.push(FieldError::invalid("metadata.name", json!(name), detail));
            }
        }
    }
    if let Some(ns) = meta.namespace.as_deref() {
        for e in names::validate_dns1123_label(ns) {
            errs.push(FieldError::invalid("metadata.namespace", json!(ns), e));
        }
    }
}

fn validate_spec(spec: &ModelServiceSpec, errs: &mut Vec<FieldError>) {
    validate_image(&spec.image, errs);
    if spec.replicas < 0 {
        errs.push(FieldError::invalid(
            "spec.replicas",
            json!(spec.replicas),
            "must be greater than or equal to 0",
        ));
    }
    if let Some(d) = spec.progress_deadline_seconds.filter(|d| *d <= 0) {
        errs.push(FieldError::invalid(
            "spec.progressDeadlineSeconds",
            json!(d),
            "must be greater than 0",
        ));
    }
    validate_env(spec, errs);
    validate_ports(&spec.ports, errs);
    let probes = [
        ("spec.readinessProbe", &spec.readiness_probe, false),
        ("spec.livenessProbe", &spec.liveness_probe, true),
        ("spec.startupProbe", &spec.startup_probe, true),
    ];
    for (path, probe, single_success) in probes {
        if let Some(p) = probe {
            validate_probe(path, p, &spec.ports, single_success, errs);
        }
    }
    if let Some(r) = &spec.resources {
        validate_resources(r, errs);
    }
    validate_node_selector(&spec.node_selector, errs);
    validate_strategy(spec, errs);
    if let Some(svc) = &spec.service {
        check_port_number("spec.service.port", svc.port, errs);
        if let Some(target) = &svc.target_port {
            check_port_ref("spec.service.targetPort", target, &spec.ports, errs);
        }
    }
    if let Some(sc) = &spec.security_context {
        for (field, id) in [
            ("runAsUser", sc.run_as_user),
            ("runAsGroup", sc.run_as_group),
        ] {
            if let Some(id) = id.filter(|id| *id < 0) {
                let path = format!("spec.securityContext.{field}");
                errs.push(FieldError::invalid(
                    path,
                    json!(id),
                    "must be greater than or equal to 0",
                ));
            }
        }
    }
}

fn validate_image(image: &str, errs: &mut Vec<FieldError>) {
    if image.is_empty() {
        errs.push(FieldError::required("spec.image", ""));
    } else if let Err(e) = berth_oci::Reference::parse(image) {
        errs.push(FieldError::invalid(
            "spec.image",
            json!(image),
            format!("not an image reference: {e}"),
        ));
    }
}

fn validate_env(spec: &ModelServiceSpec, errs: &mut Vec<FieldError>) {
    for (i, env) in spec.env.iter().enumerate() {
        let path = format!("spec.env[{i}]");
        if env.name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        }
        for e in names::validate_env_var_name(&env.name)
            .into_iter()
            .filter(|_| !env.name.is_empty())
        {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                json!(env.name),
                e,
            ));
        }
        if env.value.as_deref().is_some_and(|v| !v.is_empty()) && env.value_from.is_some() {
            let detail = "may not be specified when `value` is not empty";
            errs.push(FieldError::invalid(
                format!("{path}.valueFrom"),
                json!(""),
                detail,
            ));
        }
    }
}

fn validate_ports(ports: &[ContainerPort], errs: &mut Vec<FieldError>) {
    let mut names_seen = HashSet::new();
    let mut numbers_seen = HashSet::new();
    for (i, port) in ports.iter().enumerate() {
        let path = format!("spec.ports[{i}]");
        check_port_number(&format!("{path}.containerPort"), port.container_port, errs);
        if let Some(host) = port.host_port {
            check_port_number(&format!("{path}.hostPort"), host, errs);
        }
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if !matches!(protocol, "TCP" | "UDP" | "SCTP") {
            errs.push(FieldError::not_supported(
                format!("{path}.protocol"),
                json!(protocol),
                &["SCTP", "TCP", "UDP"],
            ));
        }
        if !numbers_seen.insert((port.container_port, protocol)) {
            errs.push(FieldError::duplicate(
                format!("{path}.containerPort"),
                json!(port.container_port),
            ));
        }
        if let Some(name) = port.name.as_deref() {
            for e in names::validate_port_name(name) {
                errs.push(FieldError::invalid(format!("{path}.name"), json!(name), e));
            }
            if !names_seen.insert(name) {
                errs.push(FieldError::duplicate(format!("{path}.name"), json!(name)));
            }
        }
    }
}

fn check_port_number(path: &str, port: i32, errs: &mut Vec<FieldError>) {
    if !(1..=65535).contains(&port) {
        errs.push(FieldError::invalid(
            path,
            json!(port),
            "must be between 1 and 65535, inclusive",
        ));
    }
}

/// A port given as a number must be in range; given as a name it must name one of `ports`.
fn check_port_ref(
    path: &str,
    port: &IntOrString,
    ports: &[ContainerPort],
    errs: &mut Vec<FieldError>,
) {
    match port {
        IntOrString::Int(n) => check_port_number(path, *n, errs),
        IntOrString::String(name) => {
            if !ports
                .iter()
                .any(|p| p.name.as_deref() == Some(name.as_str()))
            {
                let detail = "must be a port number or the name of a port in spec.ports";
                errs.push(FieldError::invalid(path, json!(name), detail));
            }
        }
    }
}

fn validate_probe(
    path: &str,
    p: &Probe,
    ports: &[ContainerPort],
    single_success: bool,
    errs: &mut Vec<FieldError>,
) {
    let handlers = [
        p.exec.is_some(),
        p.http_get.is_some(),
        p.tcp_socket.is_some(),
        p.grpc.is_some(),
    ];
    match handlers.iter().filter(|h| **h).count() {
        0 => errs.push(FieldError::required(path, "must specify a handler type")),
        1 => {}
        _ => errs.push(FieldError::new(
            ErrorType::Invalid,
            path,
            None,
            "may not specify more than 1 handler type",
        )),
    }
    if let Some(h) = &p.http_get {
        check_port_ref(&format!("{path}.httpGet.port"), &h.port, ports, errs);
        if let Some(scheme) = h
            .scheme
            .as_deref()
            .filter(|s| !matches!(*s, "HTTP" | "HTTPS"))
        {
            errs.push(FieldError::not_supported(
                format!("{path}.httpGet.scheme"),
                json!(scheme),
                &["HTTP", "HTTPS"],
            ));
        }
    }
    if let Some(t) = &p.tcp_socket {
        check_port_ref(&format!("{path}.tcpSocket.port"), &t.port, ports, errs);
    }
    if let Some(g) = &p.grpc {
        check_port_number(&format!("{path}.grpc.port"), g.port, errs);
    }
    let numbers = [
        ("initialDelaySeconds", p.initial_delay_seconds, 0),
        ("timeoutSeconds", p.timeout_seconds, 1),
        ("periodSeconds", p.period_seconds, 1),
        ("successThreshold", p.success_threshold, 1),
        ("failureThreshold", p.failure_threshold, 1),
    ];
    for (field, value, min) in numbers {
        if let Some(v) = value.filter(|v| *v < min) {
            let detail = format!("must be greater than or equal to {min}");
            errs.push(FieldError::invalid(
                format!("{path}.{field}"),
                json!(v),
                detail,
            ));
        }
    }
    if single_success && p.success_threshold.is_some_and(|s| s > 1) {
        let detail = "must be 1 for liveness and startup probes";
        errs.push(FieldError::invalid(
            format!("{path}.successThreshold"),
            json!(p.success_threshold),
            detail,
        ));
    }
}

fn validate_resources(r: &ResourceRequirements, errs: &mut Vec<FieldError>) {
    let parse_all =
        |kind: &str, list: &Option<BTreeMap<String, Quantity>>, errs: &mut Vec<FieldError>| {
            let mut values = BTreeMap::new();
            for (name, q) in list.iter().flatten() {
                let path = format!("spec.resources.{kind}[{name}]");
                match parse_quantity(&q.0) {
                    Ok(v) if v < 0.0 => errs.push(FieldError::invalid(
                        path,
                        json!(q.0),
                        "must be greater than or equal to 0",
                    )),
                    Ok(v) => {
                        values.insert(name.clone(), v);
                    }
                    Err(e) => errs.push(FieldError::invalid(path, json!(q.0), e.to_string())),
                }
            }
            values
        };
    let limits = parse_all("limits", &r.limits, errs);
    let requests = parse_all("requests", &r.requests, errs);
    for (name, request) in &requests {
        if limits.get(name).is_some_and(|limit| request > limit) {
            let raw_limit = r
                .limits
                .as_ref()
                .and_then(|l| l.get(name))
                .map_or(String::new(), |q| q.0.clone());
            let raw_req = r
                .requests
                .as_ref()
                .and_then(|l| l.get(name))
                .map_or(String::new(), |q| q.0.clone());
            let detail = format!("must be less than or equal to {name} limit of {raw_limit}");
            errs.push(FieldError::invalid(
                format!("spec.resources.requests[{name}]"),
                json!(raw_req),
                detail,
            ));
        }
    }
}

fn validate_node_selector(selector: &BTreeMap<String, String>, errs: &mut Vec<FieldError>) {
    for (key, value) in selector {
        for e in names::validate_label_key(key) {
            errs.push(FieldError::invalid("spec.nodeSelector", json!(key), e));
        }
        for e in names::validate_label_value(value) {
            errs.push(FieldError::invalid(
                format!("spec.nodeSelector[{key}]"),
                json!(value),
                e,
            ));
        }
    }
}

/// The value of a rolling-update bound, `Err` with the reason when malformed.
fn bound_value(v: &IntOrString, max_percent: Option<u32>) -> Result<i64, String> {
    match v {
        IntOrString::Int(n) if *n < 0 => Err("must be greater than or equal to 0".to_string()),
        IntOrString::Int(n) => Ok(i64::from(*n)),
        IntOrString::String(s) => {
            let pct: u32 = s
                .strip_suffix('%')
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| {
                    "a valid percent string must be a numeric string followed by an ending '%'"
                        .to_string()
                })?;
            match max_percent {
                Some(max) if pct > max => Err(format!("must not be greater than {max}%")),
                _ => Ok(i64::from(pct)),
            }
        }
    }
}

fn validate_strategy(spec: &ModelServiceSpec, errs: &mut Vec<FieldError>) {
    let base = "spec.strategy.rollingUpdate";
    let surge = bound_value(&spec.max_surge(), None);
    let unavailable = bound_value(&spec.max_unavailable(), Some(100));
    let value = |v: IntOrString| match v {
        IntOrString::Int(n) => json!(n),
        IntOrString::String(s) => json!(s),
    };
    if let Err(e) = &surge {
        errs.push(FieldError::invalid(
            format!("{base}.maxSurge"),
            value(spec.max_surge()),
            e.clone(),
        ));
    }
    if let Err(e) = &unavailable {
        errs.push(FieldError::invalid(
            format!("{base}.maxUnavailable"),
            value(spec.max_unavailable()),
            e.clone(),
        ));
    }
    if surge == Ok(0) && unavailable == Ok(0) {
        let detail = "may not be 0 when `maxSurge` is 0";
        errs.push(FieldError::invalid(
            format!("{base}.maxUnavailable"),
            value(spec.max_unavailable()),
            detail,
        ));
    }
}
