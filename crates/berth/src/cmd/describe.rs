//! `berth describe`: a kubectl-style description of objects: metadata, spec and status as
//! indented "Title Case" fields, conditions as a small table, then the object's Events
//! (core/v1 events selected by `involvedObject.*` fields).

use kube::api::{Api, DynamicObject, ListParams};
use kube::core::ApiResource;
use serde_json::Value;

use crate::client::connect::ConnArgs;
use crate::client::discovery::Catalog;
use crate::client::errors::explain;
use crate::client::table::age_of;
use crate::client::target;

/// Arguments of `berth describe`.
#[derive(clap::Args)]
pub struct Args {
    /// KIND [NAME...] or KIND/NAME... (all objects of the kind when no name is given).
    #[arg(required = true)]
    pub targets: Vec<String>,
    /// Label selector, e.g. `app=churn-model`.
    #[arg(short = 'l', long)]
    pub selector: Option<String>,
    #[command(flatten)]
    pub conn: ConnArgs,
}

/// Runs `berth describe`.
pub fn run(args: Args) -> anyhow::Result<()> {
    crate::rt::block_on(describe(args))?
}

async fn describe(args: Args) -> anyhow::Result<()> {
    let conn = args.conn.connect().await?;
    let catalog = Catalog::load(&conn.client).await?;
    let events_kind = catalog.by_gvk("v1", "Event").ok().map(|k| k.ar.clone());
    let mut failed = Vec::new();
    let mut first = true;
    for t in target::parse(&args.targets)? {
        let kind = catalog.find(&t.kind)?;
        let api: Api<DynamicObject> = if kind.namespaced {
            Api::namespaced_with(conn.client.clone(), &conn.namespace, &kind.ar)
        } else {
            Api::all_with(conn.client.clone(), &kind.ar)
        };
        let mut objects = Vec::new();
        if t.names.is_empty() {
            let mut lp = ListParams::default();
            if let Some(s) = &args.selector {
                lp = lp.labels(s);
            }
            objects.extend(api.list(&lp).await.map_err(explain)?.items);
        }
        for name in &t.names {
            match api.get(name).await {
                Ok(o) => objects.push(o),
                Err(e) => failed.push(explain(e)),
            }
        }
        for o in objects {
            let mut obj = serde_json::to_value(&o)?;
            obj["apiVersion"] = Value::String(kind.ar.api_version.clone());
            obj["kind"] = Value::String(kind.ar.kind.clone());
            let events = match &events_kind {
                Some(ar) => events_for(&conn.client, ar, &obj).await.unwrap_or_default(),
                None => Vec::new(),
            };
            if !first {
                println!();
            }
            first = false;
            print!("{}", render(&obj, &events));
        }
    }
    super::get::finish(failed)
}

/// The core/v1 Events about `obj`, oldest first.
async fn events_for(
    client: &kube::Client,
    events: &ApiResource,
    obj: &Value,
) -> anyhow::Result<Vec<Value>> {
    let meta = &obj["metadata"];
    let name = meta["name"].as_str().unwrap_or_default();
    let mut selector = format!(
        "involvedObject.name={name},involvedObject.kind={}",
        obj["kind"].as_str().unwrap_or_default()
    );
    if let Some(uid) = meta["uid"].as_str() {
        selector.push_str(&format!(",involvedObject.uid={uid}"));
    }
    let api: Api<DynamicObject> = match meta["namespace"].as_str() {
        Some(ns) => {
            selector.push_str(&format!(",involvedObject.namespace={ns}"));
            Api::namespaced_with(client.clone(), ns, events)
        }
        None => Api::all_with(client.clone(), events),
    };
    let list = api
        .list(&ListParams::default().fields(&selector))
        .await
        .map_err(explain)?;
    let mut out: Vec<Value> = list
        .items
        .iter()
        .filter_map(|e| serde_json::to_value(e).ok())
        .collect();
    // Servers that ignore the field selector still give a correct answer.
    out.retain(|e| e["involvedObject"]["name"].as_str() == Some(name));
    out.sort_by_key(|e| last_seen(e).to_string());
    Ok(out)
}

/// When the event was last seen: core/v1's lastTimestamp, else (events.k8s.io/v1 events, as the
/// agent's recorder writes them) the series' lastObservedTime or the eventTime.
fn last_seen(e: &Value) -> &str {
    ["lastTimestamp", "eventTime", "firstTimestamp"]
        .iter()
        .find_map(|k| e[*k].as_str())
        .into_iter()
        .chain(e["series"]["lastObservedTime"].as_str())
        .max()
        .or_else(|| e["metadata"]["creationTimestamp"].as_str())
        .unwrap_or("")
}

/// The whole description of one object.
pub fn render(obj: &Value, events: &[Value]) -> String {
    let meta = &obj["metadata"];
    let mut head = vec![field("Name:", meta["name"].as_str().unwrap_or(""))];
    if let Some(ns) = meta["namespace"].as_str() {
        head.push(field("Namespace:", ns));
    }
    head.push(field("Labels:", &pairs(&meta["labels"])));
    head.push(field("Annotations:", &pairs(&meta["annotations"])));
    head.push(field(
        "API Version:",
        obj["apiVersion"].as_str().unwrap_or(""),
    ));
    head.push(field("Kind:", obj["kind"].as_str().unwrap_or("")));
    let mut out = indent("", &head, "");
    let mut rest = meta.clone();
    if let Some(m) = rest.as_object_mut() {
        for k in [
            "name",
            "namespace",
            "labels",
            "annotations",
            "managedFields",
        ] {
            m.remove(k);
        }
    }
    out.push_str("Metadata:\n");
    out.push_str(&nested(&rest, 1));
    for section in ["spec", "status"] {
        let mut value = obj[section].clone();
        let conditions = value.as_object_mut().and_then(|m| m.remove("conditions"));
        if value.as_object().is_some_and(|m| !m.is_empty()) || conditions.is_some() {
            out.push_str(&format!("{}:\n", title(section)));
            out.push_str(&nested(&value, 1));
            if let Some(Value::Array(c)) = conditions {
                out.push_str(&conditions_table(&c));
            }
        }
    }
    out.push_str(&events_table(events));
    out
}

fn field(key: &str, value: &str) -> Vec<String> {
    vec![key.to_string(), value.to_string()]
}

/// `a=b,c=d` lines of a string map, or `<none>`.
fn pairs(map: &Value) -> String {
    match map.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("\n              "),
        _ => "<none>".to_string(),
    }
}

/// `readyReplicas` -> `Ready Replicas`, `uid` -> `UID`.
pub fn title(key: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in key.chars() {
        if c.is_uppercase()
            && !current.is_empty()
            && !current.chars().last().is_some_and(char::is_uppercase)
        {
            words.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    words.push(current);
    words
        .into_iter()
        .map(|w| match w.as_str() {
            "uid" | "url" | "ip" | "api" => w.to_uppercase(),
            _ => {
                let mut cs = w.chars();
                cs.next()
                    .map(|f| f.to_uppercase().chain(cs).collect())
                    .unwrap_or_default()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".to_string(),
        other => other.to_string(),
    }
}

/// Nested fields at `depth` (two spaces per level); scalars of one map are aligned together.
fn nested(v: &Value, depth: usize) -> String {
    let pad = "  ".repeat(depth);
    let mut out = String::new();
    match v {
        Value::Object(m) => {
            let width = m
                .iter()
                .filter(|(_, x)| !is_nested(x))
                .map(|(k, _)| title(k).len() + 1)
                .max()
                .unwrap_or(0);
            for (k, x) in m {
                if is_nested(x) {
                    out.push_str(&format!("{pad}{}:\n{}", title(k), nested(x, depth + 1)));
                } else {
                    out.push_str(&format!(
                        "{pad}{:<width$}  {}\n",
                        format!("{}:", title(k)),
                        scalar(x)
                    ));
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                match item {
                    Value::Object(_) => out.push_str(&nested(item, depth)),
                    _ => out.push_str(&format!("{pad}{}\n", scalar(item))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
    out
}

fn is_nested(v: &Value) -> bool {
    matches!(v, Value::Object(m) if !m.is_empty()) || matches!(v, Value::Array(a) if !a.is_empty())
}

fn conditions_table(conditions: &[Value]) -> String {
    let mut lines = vec![
        ["Type", "Status", "Reason", "Message"]
            .map(String::from)
            .to_vec(),
        ["----", "------", "------", "-------"]
            .map(String::from)
            .to_vec(),
    ];
    for c in conditions {
        lines.push(
            ["type", "status", "reason", "message"]
                .iter()
                .map(|k| c[*k].as_str().unwrap_or("").to_string())
                .collect(),
        );
    }
    indent("  Conditions:\n", &lines, "    ")
}

fn events_table(events: &[Value]) -> String {
    if events.is_empty() {
        return "Events:  <none>\n".to_string();
    }
    let mut lines = vec![
        ["Type", "Reason", "Age", "From", "Message"]
            .map(String::from)
            .to_vec(),
        ["----", "------", "----", "----", "-------"]
            .map(String::from)
            .to_vec(),
    ];
    for e in events {
        let from = e["source"]["component"]
            .as_str()
            .or_else(|| e["reportingComponent"].as_str())
            .unwrap_or("");
        lines.push(vec![
            e["type"].as_str().unwrap_or("").to_string(),
            e["reason"].as_str().unwrap_or("").to_string(),
            event_age(e),
            from.to_string(),
            e["message"].as_str().unwrap_or("").trim().to_string(),
        ]);
    }
    indent("Events:\n", &lines, "  ")
}

/// `5m`, or `2m (x3 over 10m)` for repeated events.
fn event_age(e: &Value) -> String {
    let last = age_of(last_seen(e));
    // events.k8s.io/v1 counts repeats in series.count and starts at eventTime.
    let count = e["count"]
        .as_i64()
        .or_else(|| e["series"]["count"].as_i64())
        .unwrap_or(1);
    match e["firstTimestamp"]
        .as_str()
        .or_else(|| e["eventTime"].as_str())
    {
        Some(first) if count > 1 => format!("{last} (x{count} over {})", age_of(first)),
        _ => last,
    }
}

/// A heading then an aligned block with each line indented.
fn indent(heading: &str, lines: &[Vec<String>], pad: &str) -> String {
    let widths: Vec<usize> = (0..lines[0].len())
        .map(|i| {
            lines
                .iter()
                .map(|l| l[i].chars().count())
                .max()
                .unwrap_or(0)
                + 2
        })
        .collect();
    let mut out = heading.to_string();
    for l in lines {
        let mut line = pad.to_string();
        for (i, cell) in l.iter().enumerate() {
            if i + 1 == l.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn titles() {
        assert_eq!(title("readyReplicas"), "Ready Replicas");
        assert_eq!(title("uid"), "UID");
        assert_eq!(title("image"), "Image");
        assert_eq!(title("containerPort"), "Container Port");
    }

    #[test]
    fn describes_a_model_service() {
        let obj = json!({
            "apiVersion": "berth.dev/v1alpha1", "kind": "ModelService",
            "metadata": {"name": "churn-model", "namespace": "default", "labels": {"app": "churn-model"},
                         "generation": 2, "uid": "u-1", "managedFields": [{"manager": "berth"}]},
            "spec": {"image": "localhost:5000/churn-model:v1", "replicas": 3,
                     "ports": [{"name": "http", "containerPort": 8000}]},
            "status": {"readyReplicas": 2, "conditions": [
                {"type": "Available", "status": "False", "reason": "MinimumReplicasUnavailable", "message": "2 of 3 ready"}]}
        });
        let events = vec![
            json!({"type": "Normal", "reason": "ScalingUp", "message": "created pod churn-model-x",
            "source": {"component": "modelservice-controller"}, "lastTimestamp": "2020-01-01T00:00:00Z"}),
        ];
        let out = render(&obj, &events);
        let want_lines = [
            "Name:         churn-model",
            "Namespace:    default",
            "Labels:       app=churn-model",
            "Annotations:  <none>",
            "API Version:  berth.dev/v1alpha1",
            "Kind:         ModelService",
            "  Generation:  2",
            "  UID:         u-1",
            "Spec:",
            "  Image:     localhost:5000/churn-model:v1",
            "  Ports:",
            "    Container Port:  8000",
            "    Name:            http",
            "  Replicas:  3",
            "Status:",
            "  Ready Replicas:  2",
            "    Type       Status  Reason                      Message",
            "    Available  False   MinimumReplicasUnavailable  2 of 3 ready",
            "Events:",
            "  Type    Reason     Age",
        ];
        for line in want_lines {
            assert!(
                out.lines().any(|l| l.starts_with(line)),
                "missing {line:?} in:\n{out}"
            );
        }
        assert!(
            !out.contains("managedFields") && !out.contains("Managed Fields"),
            "{out}"
        );
        assert!(out.contains("Normal  ScalingUp"), "{out}");
        assert!(
            out.contains("modelservice-controller  created pod churn-model-x"),
            "{out}"
        );
    }

    #[test]
    fn events_recorded_through_events_k8s_io_show_with_their_series() {
        // The core/v1 view of an events.k8s.io/v1 Event as kube-runtime's Recorder writes it.
        let event = json!({"type": "Normal", "reason": "Started", "message": "Started container model",
            "reportingComponent": "berth-agent", "eventTime": "2020-01-01T00:00:00.000000Z",
            "series": {"count": 4, "lastObservedTime": "2020-01-01T00:05:00.000000Z"}});
        assert_eq!(last_seen(&event), "2020-01-01T00:05:00.000000Z");
        assert!(
            event_age(&event).contains("(x4 over "),
            "{}",
            event_age(&event)
        );
        let out = render(
            &json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
            &[event],
        );
        assert!(out.contains("Normal  Started"), "{out}");
        assert!(
            out.contains("berth-agent  Started container model"),
            "{out}"
        );
    }

    #[test]
    fn no_events() {
        let out = render(
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}),
            &[],
        );
        assert!(out.ends_with("Events:  <none>\n"), "{out}");
        assert!(!out.contains("Namespace:"));
    }
}
