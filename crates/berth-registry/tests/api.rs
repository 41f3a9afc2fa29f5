//! The registry's HTTP API as clients see it (distribution-spec v1.1 behaviours).
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

mod common;

use berth_registry::AuthMode;
use common::{OCI_INDEX, OCI_MANIFEST, image_manifest, sha256, start};

fn header(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn base_endpoint_advertises_api_version() {
    let reg = start(AuthMode::None).await;
    let r = reg.client.get(reg.url("/v2/")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        header(&r, "docker-distribution-api-version"),
        "registry/2.0"
    );
}

#[tokio::test]
async fn chunked_upload_with_status_and_streamed_append() {
    let reg = start(AuthMode::None).await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let r = reg
        .client
        .post(reg.url("/v2/lib/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-0");
    assert!(!header(&r, "docker-upload-uuid").is_empty());
    let loc = reg.location(&r);

    // First chunk with Content-Range.
    let r = reg
        .client
        .patch(&loc)
        .header("content-range", "0-99999")
        .body(data[..100_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-99999");
    let loc = reg.location(&r);

    // Resume: ask where we are.
    let r = reg.client.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(header(&r, "range"), "0-99999");

    // Second chunk without Content-Range: appended at the current offset (docker/containerd).
    let r = reg
        .client
        .patch(&loc)
        .body(data[100_000..250_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(header(&r, "range"), "0-249999");

    // Closing PUT carries the last chunk.
    let d = sha256(&data);
    let r = reg
        .client
        .put(format!("{loc}?digest={d}"))
        .body(data[250_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), d.to_string());
    let blob = reg.location(&r);
    let r = reg.client.get(&blob).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "docker-content-digest"), d.to_string());
    assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);

    // The session is gone once completed.
    let r = reg.client.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn out_of_order_and_repeated_chunks_get_416() {
    let reg = start(AuthMode::None).await;
    let r = reg
        .client
        .post(reg.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = reg.location(&r);
    let r = reg
        .client
        .patch(&loc)
        .header("content-range", "10-19")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), "0-0");
    let r = reg
        .client
        .patch(&loc)
        .header("content-range", "0-9")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    // Retrying the chunk that was already accepted is out of order too.
    let r = reg
        .client
        .patch(&loc)
        .header("content-range", "0-9")
        .body(vec![1u8; 10])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "range"), "0-9");
    let d = sha256(&[1u8; 10]);
    let r = reg
        .client
        .put(format!("{loc}?digest={d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

#[tokio::test]
async fn cancelled_upload_is_unknown_afterwards() {
    let reg = start(AuthMode::None).await;
    let r = reg
        .client
        .post(reg.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = reg.location(&r);
    reg.client
        .patch(&loc)
        .body(vec![5u8; 100])
        .send()
        .await
        .unwrap();
    assert_eq!(reg.client.delete(&loc).send().await.unwrap().status(), 204);
    let r = reg.client.get(&loc).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("BLOB_UPLOAD_UNKNOWN"));
    assert_eq!(
        std::fs::read_dir(reg.storage_root().join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

#[tokio::test]
async fn post_then_put_monolithic_upload() {
    let reg = start(AuthMode::None).await;
    let r = reg
        .client
        .post(reg.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = reg.location(&r);
    let d = sha256(b"whole blob");
    let r = reg
        .client
        .put(format!("{loc}?digest={d}"))
        .body("whole blob")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let r = reg
        .client
        .head(reg.url(&format!("/v2/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-length"), "10");
}

#[tokio::test]
async fn range_reads_return_206_and_416() {
    let reg = start(AuthMode::None).await;
    let data = b"0123456789abcdef";
    let d = reg.push_blob("app", data).await;
    let url = reg.url(&format!("/v2/app/blobs/{d}"));
    let r = reg
        .client
        .get(&url)
        .header("range", "bytes=2-5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(header(&r, "content-range"), "bytes 2-5/16");
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"2345");
    let r = reg
        .client
        .get(&url)
        .header("range", "bytes=10-")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"abcdef");
    let r = reg
        .client
        .get(&url)
        .header("range", "bytes=-3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"def");
    let r = reg
        .client
        .get(&url)
        .header("range", "bytes=16-20")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 416);
    assert_eq!(header(&r, "content-range"), "bytes */16");
}

#[tokio::test]
async fn blobs_are_per_repository_until_mounted() {
    let reg = start(AuthMode::None).await;
    let d = reg.push_blob("team/a", b"shared layer").await;
    let in_b = reg.url(&format!("/v2/team/b/blobs/{d}"));
    let r = reg.client.get(&in_b).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("BLOB_UNKNOWN"));

    // Mount from a repository that does not have it: a plain session instead.
    let r = reg
        .client
        .post(reg.url(&format!("/v2/team/b/blobs/uploads/?mount={d}&from=team/c")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);

    let r = reg
        .client
        .post(reg.url(&format!("/v2/team/b/blobs/uploads/?mount={d}&from=team/a")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), d.to_string());
    assert_eq!(reg.location(&r), in_b);
    let r = reg.client.get(&in_b).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().await.unwrap().as_ref(), b"shared layer");
}

#[tokio::test]
async fn manifests_by_tag_and_digest_keep_exact_bytes() {
    let reg = start(AuthMode::None).await;
    let (m, md, _) = reg.push_image("app", "v1", b"layer").await;
    for reference in ["v1".to_string(), md.to_string()] {
        let url = reg.url(&format!("/v2/app/manifests/{reference}"));
        let r = reg.client.head(&url).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header(&r, "content-length"), m.len().to_string());
        let r = reg.client.get(&url).send().await.unwrap();
        assert_eq!(header(&r, "content-type"), OCI_MANIFEST);
        assert_eq!(header(&r, "docker-content-digest"), md.to_string());
        assert_eq!(r.bytes().await.unwrap().as_ref(), &m[..]);
    }
    // A Docker manifest list naming it is accepted and served with its own type.
    let list = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": md.to_string(), "size": m.len(),
                       "platform": {"architecture": "amd64", "os": "linux"}}]
    }))
    .unwrap();
    let r = reg
        .put_manifest(
            "app",
            "multi",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            &list,
        )
        .await;
    assert_eq!(r.status(), 201);
    let r = reg
        .client
        .get(reg.url("/v2/app/manifests/multi"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "content-type"),
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
}

#[tokio::test]
async fn tags_and_catalog_paginate_with_link() {
    let reg = start(AuthMode::None).await;
    let (m, _, _) = reg.push_image("app", "t1", b"l").await;
    for t in ["t2", "t3", "t4", "t5"] {
        assert_eq!(
            reg.put_manifest("app", t, OCI_MANIFEST, &m).await.status(),
            201
        );
    }
    let r = reg
        .client
        .get(reg.url("/v2/app/tags/list?n=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/app/tags/list?n=2&last=t2>; rel=\"next\""
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v, serde_json::json!({"name": "app", "tags": ["t1", "t2"]}));
    let r = reg
        .client
        .get(reg.url("/v2/app/tags/list?n=2&last=t2"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["t3", "t4"]));
    let r = reg
        .client
        .get(reg.url("/v2/app/tags/list?n=2&last=t4"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "link"), "");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["tags"], serde_json::json!(["t5"]));
    let r = reg
        .client
        .get(reg.url("/v2/app/tags/list?n=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "link"), "");
    assert_eq!(
        r.json::<serde_json::Value>().await.unwrap()["tags"],
        serde_json::json!([])
    );
    let r = reg
        .client
        .get(reg.url("/v2/nothing/tags/list"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("NAME_UNKNOWN"));

    reg.push_blob("z/last", b"x").await;
    reg.push_blob("b/nested/repo", b"x").await;
    let r = reg
        .client
        .get(reg.url("/v2/_catalog?n=2"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&r, "link"),
        "</v2/_catalog?n=2&last=b%2Fnested%2Frepo>; rel=\"next\""
    );
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        v["repositories"],
        serde_json::json!(["app", "b/nested/repo"])
    );
    let r = reg
        .client
        .get(reg.url("/v2/_catalog?n=2&last=b%2Fnested%2Frepo"))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["repositories"], serde_json::json!(["z/last"]));
}

#[tokio::test]
async fn delete_tag_manifest_and_blob() {
    let reg = start(AuthMode::None).await;
    let (m, md, ld) = reg.push_image("app", "v1", b"layer").await;
    assert_eq!(
        reg.put_manifest("app", "v2", OCI_MANIFEST, &m)
            .await
            .status(),
        201
    );

    // Deleting a tag removes only that tag.
    let r = reg
        .client
        .delete(reg.url("/v2/app/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert_eq!(
        reg.client
            .get(reg.url("/v2/app/manifests/v1"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        reg.client
            .get(reg.url("/v2/app/manifests/v2"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // Deleting by digest removes the manifest and every tag on it.
    let r = reg
        .client
        .delete(reg.url(&format!("/v2/app/manifests/{md}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let r = reg
        .client
        .get(reg.url(&format!("/v2/app/manifests/{md}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("MANIFEST_UNKNOWN"));
    assert_eq!(
        reg.client
            .get(reg.url("/v2/app/manifests/v2"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let v: serde_json::Value = reg
        .client
        .get(reg.url("/v2/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["tags"], serde_json::json!([]));

    let blob = reg.url(&format!("/v2/app/blobs/{ld}"));
    assert_eq!(reg.client.delete(&blob).send().await.unwrap().status(), 202);
    assert_eq!(reg.client.get(&blob).send().await.unwrap().status(), 404);
    assert_eq!(reg.client.delete(&blob).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn referrers_list_and_filter_by_artifact_type() {
    let reg = start(AuthMode::None).await;
    let (m, md, _) = reg.push_image("app", "v1", b"layer").await;
    let empty = reg.push_blob("app", b"{}").await;
    let subject = format!(
        r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{md}","size":{}}}"#,
        m.len()
    );
    let mut pushed = Vec::new();
    for (kind, note) in [
        ("application/vnd.example.sbom", "sbom"),
        ("application/vnd.example.sig", "sig"),
    ] {
        let mut a: serde_json::Value = serde_json::from_slice(&image_manifest(
            &empty,
            2,
            &empty,
            2,
            Some(("subject", &subject)),
        ))
        .unwrap();
        a["artifactType"] = kind.into();
        a["annotations"] = serde_json::json!({ "note": note });
        let bytes = serde_json::to_vec(&a).unwrap();
        let d = sha256(&bytes);
        let r = reg
            .put_manifest("app", &d.to_string(), OCI_MANIFEST, &bytes)
            .await;
        assert_eq!(r.status(), 201);
        assert_eq!(header(&r, "oci-subject"), md.to_string());
        pushed.push(d);
    }
    let r = reg
        .client
        .get(reg.url(&format!("/v2/app/referrers/{md}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "content-type"), OCI_INDEX);
    let v: serde_json::Value = r.json().await.unwrap();
    let mut got: Vec<String> = v["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap().to_string())
        .collect();
    got.sort();
    let mut want: Vec<String> = pushed.iter().map(|d| d.to_string()).collect();
    want.sort();
    assert_eq!(got, want);

    let r = reg
        .client
        .get(reg.url(&format!(
            "/v2/app/referrers/{md}?artifactType=application/vnd.example.sig"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "oci-filters-applied"), "artifactType");
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
    assert_eq!(v["manifests"][0]["digest"], pushed[1].to_string());
    assert_eq!(
        v["manifests"][0]["artifactType"],
        "application/vnd.example.sig"
    );
    assert_eq!(v["manifests"][0]["annotations"]["note"], "sig");

    // Unknown subject: an empty list, not 404. Bad digest: 400.
    let other = sha256(b"nothing");
    let v: serde_json::Value = reg
        .client
        .get(reg.url(&format!("/v2/app/referrers/{other}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["manifests"], serde_json::json!([]));
    let r = reg
        .client
        .get(reg.url("/v2/app/referrers/sha256:xyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Deleting a referrer removes it from the list.
    reg.client
        .delete(reg.url(&format!("/v2/app/manifests/{}", pushed[0])))
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = reg
        .client
        .get(reg.url(&format!("/v2/app/referrers/{md}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["manifests"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    let reg = start(AuthMode::None).await;
    reg.push_image("app", "v1", b"layer").await;
    let before = reg.snapshot();
    let wrong = sha256(b"something else");
    let r = reg
        .client
        .post(reg.url(&format!("/v2/app/blobs/uploads/?digest={wrong}")))
        .body("payload")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("DIGEST_INVALID"));
    // Chunked path too.
    let r = reg
        .client
        .post(reg.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = reg.location(&r);
    reg.client.patch(&loc).body("payload").send().await.unwrap();
    let r = reg
        .client
        .put(format!("{loc}?digest={wrong}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // Manifest PUT by a digest its bytes do not hash to.
    let r = reg
        .put_manifest(
            "app",
            &wrong.to_string(),
            OCI_MANIFEST,
            br#"{"schemaVersion":2,"layers":[]}"#,
        )
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(reg.snapshot(), before);
    let r = reg
        .client
        .get(reg.url(&format!("/v2/app/blobs/{}", sha256(b"payload"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn manifest_naming_missing_blob_is_rejected() {
    let reg = start(AuthMode::None).await;
    let cd = reg.push_blob("app", b"{}").await;
    // Present in another repository only: still missing here.
    let ld = reg.push_blob("other", b"layer").await;
    let before = reg.snapshot();
    let m = image_manifest(&cd, 2, &ld, 5, None);
    let r = reg.put_manifest("app", "v1", OCI_MANIFEST, &m).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("MANIFEST_BLOB_UNKNOWN"));
    assert_eq!(reg.snapshot(), before);
    // A missing subject is fine.
    let ld = reg.push_blob("app", b"layer").await;
    let subject = format!(
        r#"{{"mediaType":"{OCI_MANIFEST}","digest":"{}","size":3}}"#,
        sha256(b"absent")
    );
    let m = image_manifest(&cd, 2, &ld, 5, Some(("subject", &subject)));
    assert_eq!(
        reg.put_manifest("app", "v1", OCI_MANIFEST, &m)
            .await
            .status(),
        201
    );
}

#[tokio::test]
async fn invalid_repository_names_are_rejected() {
    let reg = start(AuthMode::None).await;
    let before = reg.snapshot();
    for name in ["UPPER", "a//b", "a/.b", "a/%00", "a/_manifests", "-x"] {
        let r = reg
            .client
            .post(reg.url(&format!("/v2/{name}/blobs/uploads/")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{name}");
        assert!(r.text().await.unwrap().contains("NAME_INVALID"), "{name}");
    }
    // `..` sent raw (HTTP client libraries would normalize it away).
    let host = reg.base.trim_start_matches("http://").to_string();
    let reply = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&host).unwrap();
        let d = sha256(b"evil");
        write!(s, "POST /v2/../../../tmp/x/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 4\r\nConnection: close\r\n\r\nevil").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .await
    .unwrap();
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert!(reply.contains("NAME_INVALID"));
    assert_eq!(reg.snapshot(), before);
}

#[tokio::test]
async fn oversized_manifest_gets_413() {
    let reg = start(AuthMode::None).await;
    let before = reg.snapshot();
    let mut big = br#"{"schemaVersion":2,"layers":[],"annotations":{"pad":""#.to_vec();
    big.extend(std::iter::repeat_n(b'x', 4 * 1024 * 1024));
    big.extend(br#""}}"#);
    let r = reg.put_manifest("app", "big", OCI_MANIFEST, &big).await;
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("MANIFEST_INVALID"));
    assert_eq!(reg.snapshot(), before);
}

#[tokio::test]
async fn mismatched_media_type_is_rejected() {
    let reg = start(AuthMode::None).await;
    let r = reg.put_manifest("app", "v1", OCI_INDEX, br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","layers":[]}"#).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("MANIFEST_INVALID"));
}

#[tokio::test]
async fn corrupted_blob_is_never_served() {
    let reg = start(AuthMode::None).await;
    let data = vec![42u8; 100_000];
    let d = reg.push_blob("app", &data).await;
    let url = reg.url(&format!("/v2/app/blobs/{d}"));
    assert_eq!(reg.client.get(&url).send().await.unwrap().status(), 200);
    // Flip one byte on disk, keeping the size.
    let path = reg.storage_root().join("blobs/sha256").join(d.hex());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[5000] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    let r = reg.client.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("BLOB_UNKNOWN"));
    assert_eq!(reg.client.head(&url).send().await.unwrap().status(), 404);
    // Kept aside for inspection, not deleted.
    assert_eq!(
        std::fs::read_dir(reg.storage_root().join("quarantine"))
            .unwrap()
            .count(),
        1
    );
    // Pushing the right content again repairs it.
    reg.push_blob("app", &data).await;
    assert_eq!(
        reg.client
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .as_ref(),
        &data[..]
    );
}

#[tokio::test]
async fn errors_use_the_spec_json_form() {
    let reg = start(AuthMode::None).await;
    let r = reg
        .client
        .get(reg.url(&format!("/v2/app/manifests/{}", sha256(b"x"))))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["errors"][0]["code"], "MANIFEST_UNKNOWN");
    assert!(v["errors"][0]["message"].is_string());
}

#[tokio::test]
async fn sha512_blobs_are_accepted() {
    let reg = start(AuthMode::None).await;
    let data = b"sha512 content";
    let d = berth_oci::digest::Digest::of_with(berth_oci::digest::Algorithm::Sha512, data);
    let r = reg
        .client
        .post(reg.url(&format!("/v2/app/blobs/uploads/?digest={d}")))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(header(&r, "docker-content-digest"), d.to_string());
    let r = reg
        .client
        .get(reg.url(&format!("/v2/app/blobs/{d}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), data);
    // Chunked, announced with digest-algorithm.
    let r = reg
        .client
        .post(reg.url("/v2/app/blobs/uploads/?digest-algorithm=sha512"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let loc = reg.location(&r);
    reg.client
        .patch(&loc)
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        reg.client
            .put(format!("{loc}?digest={d}"))
            .send()
            .await
            .unwrap()
            .status(),
        201
    );
    let r = reg
        .client
        .post(reg.url("/v2/app/blobs/uploads/?digest-algorithm=md5"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn docker_schema2_manifest_round_trips() {
    let reg = start(AuthMode::None).await;
    let cd = reg.push_blob("app", b"{}").await;
    let ld = reg.push_blob("app", b"gz").await;
    let ty = "application/vnd.docker.distribution.manifest.v2+json";
    let m = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2, "mediaType": ty,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": cd.to_string(), "size": 2},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": ld.to_string(), "size": 2},
                   {"mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", "digest": sha256(b"windows base").to_string(),
                    "size": 12, "urls": ["https://example.invalid/layer"]}]
    }))
    .unwrap();
    let r = reg.put_manifest("app", "latest", ty, &m).await;
    assert_eq!(r.status(), 201, "foreign layers need not be pushed");
    let r = reg
        .client
        .get(reg.url("/v2/app/manifests/latest"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&r, "content-type"), ty);
    assert_eq!(r.bytes().await.unwrap().as_ref(), &m[..]);
}

#[tokio::test]
async fn unfinished_upload_leaves_nothing_visible() {
    let reg = start(AuthMode::None).await;
    let before = reg.snapshot();
    let r = reg
        .client
        .post(reg.url("/v2/app/blobs/uploads/"))
        .send()
        .await
        .unwrap();
    let loc = reg.location(&r);
    assert_eq!(
        reg.client
            .patch(&loc)
            .body(vec![9u8; 4096])
            .send()
            .await
            .unwrap()
            .status(),
        202
    );
    let d = sha256(&[9u8; 4096]);
    assert_eq!(
        reg.client
            .head(reg.url(&format!("/v2/app/blobs/{d}")))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // Only the staging area changed.
    assert_eq!(reg.snapshot(), before);
    assert_eq!(
        std::fs::read_dir(reg.storage_root().join("uploads"))
            .unwrap()
            .count(),
        1
    );
}

#[tokio::test]
async fn manifest_put_with_tag_parameters() {
    let reg = start(AuthMode::None).await;
    let (m, md, _) = reg.push_image("app", "v1", b"l").await;
    let r = reg
        .client
        .put(reg.url(&format!("/v2/app/manifests/{md}?tag=a&tag=b")))
        .header("content-type", OCI_MANIFEST)
        .body(m.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let tags: Vec<_> = r
        .headers()
        .get_all("oci-tag")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert_eq!(tags, ["a", "b"]);
    let v: serde_json::Value = reg
        .client
        .get(reg.url("/v2/app/tags/list"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["tags"], serde_json::json!(["a", "b", "v1"]));
}

#[tokio::test]
async fn concurrent_pushes_of_the_same_blob_all_succeed() {
    let reg = std::sync::Arc::new(start(AuthMode::None).await);
    let data: Vec<u8> = (0..500_000u32).map(|i| (i % 253) as u8).collect();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let (reg, data) = (reg.clone(), data.clone());
        tasks.push(tokio::spawn(async move {
            reg.push_blob(&format!("repo{}", i % 4), &data).await
        }));
    }
    let d = sha256(&data);
    for t in tasks {
        assert_eq!(t.await.unwrap(), d);
    }
    for i in 0..4 {
        let r = reg
            .client
            .get(reg.url(&format!("/v2/repo{i}/blobs/{d}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.bytes().await.unwrap().as_ref(), &data[..]);
    }
    assert_eq!(
        std::fs::read_dir(reg.storage_root().join("uploads"))
            .unwrap()
            .count(),
        0
    );
}
