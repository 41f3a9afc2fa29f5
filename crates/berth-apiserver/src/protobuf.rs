//! Decoding of Kubernetes protobuf request bodies for a few core kinds.
//!
//! kubectl's typed commands (`kubectl create namespace|configmap|secret`) send
//! `application/vnd.kubernetes.protobuf` bodies. The server answers in JSON (kubectl accepts it);
//! only these bodies are translated to JSON. Other kinds get 415.
//!
//! Wire format: the magic `k8s\0`, then a `runtime.Unknown` message (1: typeMeta {1: apiVersion,
//! 2: kind}, 2: raw = the typed message). Field numbers are those of Kubernetes' generated.proto.

use base64::Engine;
use serde_json::{Map, Value, json};

/// How one protobuf field maps to JSON.
#[derive(Clone, Copy)]
enum Field {
    Str(&'static str),
    Bool(&'static str),
    StrList(&'static str),
    StrMap(&'static str),
    BytesMap(&'static str),
    Msg(&'static str, &'static [(u32, Field)]),
}

const OBJECT_META: &[(u32, Field)] = &[
    (1, Field::Str("name")),
    (2, Field::Str("generateName")),
    (3, Field::Str("namespace")),
    (11, Field::StrMap("labels")),
    (12, Field::StrMap("annotations")),
    (14, Field::StrList("finalizers")),
];
const NAMESPACE: &[(u32, Field)] = &[
    (1, Field::Msg("metadata", OBJECT_META)),
    (2, Field::Msg("spec", &[(1, Field::StrList("finalizers"))])),
];
const CONFIG_MAP: &[(u32, Field)] = &[
    (1, Field::Msg("metadata", OBJECT_META)),
    (2, Field::StrMap("data")),
    (3, Field::BytesMap("binaryData")),
    (4, Field::Bool("immutable")),
];
const SECRET: &[(u32, Field)] = &[
    (1, Field::Msg("metadata", OBJECT_META)),
    (2, Field::BytesMap("data")),
    (3, Field::Str("type")),
    (4, Field::StrMap("stringData")),
    (5, Field::Bool("immutable")),
];

/// One decoded field: number and raw payload (varint value or length-delimited bytes).
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *buf.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Splits a message into its fields (skipping fixed-width ones, which these kinds do not use).
fn fields(buf: &[u8]) -> Option<Vec<(u32, Wire<'_>)>> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let tag = varint(buf, &mut pos)?;
        let num = u32::try_from(tag >> 3).ok()?;
        match tag & 7 {
            0 => out.push((num, Wire::Varint(varint(buf, &mut pos)?))),
            2 => {
                let len = usize::try_from(varint(buf, &mut pos)?).ok()?;
                let bytes = buf.get(pos..pos.checked_add(len)?)?;
                pos += len;
                out.push((num, Wire::Bytes(bytes)));
            }
            1 => pos += 8,
            5 => pos += 4,
            _ => return None,
        }
    }
    Some(out)
}

fn text(b: &[u8]) -> Option<Value> {
    Some(Value::String(String::from_utf8(b.to_vec()).ok()?))
}

fn b64(b: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(b))
}

/// A map entry message {1: key, 2: value}.
fn entry(b: &[u8]) -> Option<(String, &[u8])> {
    let (mut key, mut val) = (String::new(), &b[..0]);
    for (n, w) in fields(b)? {
        match (n, w) {
            (1, Wire::Bytes(k)) => key = String::from_utf8(k.to_vec()).ok()?,
            (2, Wire::Bytes(v)) => val = v,
            _ => {}
        }
    }
    Some((key, val))
}

fn decode(buf: &[u8], schema: &[(u32, Field)]) -> Option<Value> {
    let mut out = Map::new();
    for (num, wire) in fields(buf)? {
        let Some((_, field)) = schema.iter().find(|(n, _)| *n == num) else {
            continue;
        };
        match (*field, wire) {
            // Go marshals unset strings as ""; JSON clients omit them.
            (Field::Str(_), Wire::Bytes([])) => {}
            (Field::Str(name), Wire::Bytes(b)) => {
                out.insert(name.into(), text(b)?);
            }
            (Field::Bool(name), Wire::Varint(v)) => {
                out.insert(name.into(), Value::Bool(v != 0));
            }
            (Field::StrList(name), Wire::Bytes(b)) => {
                let list = out.entry(name).or_insert_with(|| json!([]));
                list.as_array_mut()?.push(text(b)?);
            }
            (Field::StrMap(name), Wire::Bytes(b)) => {
                let (k, v) = entry(b)?;
                out.entry(name)
                    .or_insert_with(|| json!({}))
                    .as_object_mut()?
                    .insert(k, text(v)?);
            }
            (Field::BytesMap(name), Wire::Bytes(b)) => {
                let (k, v) = entry(b)?;
                out.entry(name)
                    .or_insert_with(|| json!({}))
                    .as_object_mut()?
                    .insert(k, b64(v));
            }
            (Field::Msg(name, sub), Wire::Bytes(b)) => {
                out.insert(name.into(), decode(b, sub)?);
            }
            _ => return None,
        }
    }
    Some(Value::Object(out))
}

/// Translates a protobuf body into the JSON object, or `None` if its kind is not supported.
pub fn to_json(body: &[u8]) -> Option<Value> {
    let envelope = body.strip_prefix(b"k8s\0")?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &envelope[..0]);
    for (n, w) in fields(envelope)? {
        match (n, w) {
            (1, Wire::Bytes(tm)) => {
                for (m, v) in fields(tm)? {
                    if let Wire::Bytes(s) = v {
                        let s = String::from_utf8(s.to_vec()).ok()?;
                        if m == 1 {
                            api_version = s
                        } else if m == 2 {
                            kind = s
                        }
                    }
                }
            }
            (2, Wire::Bytes(r)) => raw = r,
            _ => {}
        }
    }
    let schema = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "ConfigMap") => CONFIG_MAP,
        ("v1", "Secret") => SECRET,
        _ => return None,
    };
    let mut obj = decode(raw, schema)?;
    obj["apiVersion"] = Value::String(api_version);
    obj["kind"] = Value::String(kind);
    Some(obj)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(num: u32, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![((num << 3) | 2) as u8, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn decodes_a_configmap_envelope() {
        let meta = [
            ld(1, b"cfg"),
            ld(2, b""),
            ld(11, &[ld(1, b"app"), ld(2, b"x")].concat()),
        ]
        .concat();
        let cm = [
            ld(1, &meta),
            ld(2, &[ld(1, b"k"), ld(2, b"v")].concat()),
            vec![(4 << 3), 1],
        ]
        .concat();
        let type_meta = [ld(1, b"v1"), ld(2, b"ConfigMap")].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &type_meta), ld(2, &cm)].concat();
        let v = to_json(&body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg","labels":{"app":"x"}},
            "data":{"k":"v"},"immutable":true})
        );
        let pod = [
            b"k8s\0".to_vec(),
            ld(1, &[ld(1, b"v1"), ld(2, b"Pod")].concat()),
        ]
        .concat();
        assert!(to_json(&pod).is_none());
    }
}
