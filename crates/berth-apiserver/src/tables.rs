//! Glue to server-side Tables (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`).

use serde_json::{Value, json};

use crate::rest::Ctx;

/// A one-row Table for one object.
pub fn object_table(ctx: &Ctx, obj: &Value) -> Value {
    list_table(ctx, std::slice::from_ref(obj), json!({"resourceVersion": obj["metadata"]["resourceVersion"]}))
}

/// A Table of `items` with list metadata `meta`.
pub fn list_table(ctx: &Ctx, items: &[Value], meta: Value) -> Value {
    let _ = ctx;
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": [
        {"name": "Name", "type": "string", "format": "name", "description": "", "priority": 0}],
        "rows": items.iter().map(|o| json!({"cells": [o["metadata"]["name"]], "object": o})).collect::<Vec<_>>()})
}
