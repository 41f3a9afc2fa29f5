//! Byte encodings of the records kept in redb.
//!
//! Two record shapes exist: the latest value of a key (in the `kv` table, keyed by the key) and one
//! history entry per revision (in the `history` table, keyed by the revision). Integers are
//! little-endian; byte strings are length-prefixed with a `u32`, except a trailing value, which
//! runs to the end of the record. A hand-written format keeps the store free of a serialisation
//! dependency and makes a corrupt record a clean [`StoreError::Backend`] instead of a panic.

use crate::{KeyValue, Result, Revision, StoreError, WatchEvent};

/// Tag byte of a history entry that records a put.
const TAG_PUT: u8 = 0;
/// Tag byte of a history entry that records a delete.
const TAG_DELETE: u8 = 1;

/// The latest value of a key without the key itself (the table key holds it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoredValue {
    /// Revision of the write that created the key.
    pub create_revision: Revision,
    /// Revision of the last write to the key.
    pub mod_revision: Revision,
    /// The value bytes.
    pub value: Vec<u8>,
}

impl StoredValue {
    /// Attaches the key, giving the public shape.
    pub fn into_kv(self, key: String) -> KeyValue {
        KeyValue {
            key,
            value: self.value,
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }
}

/// Encodes a `kv` table record.
pub(crate) fn encode_value(
    create_revision: Revision,
    mod_revision: Revision,
    value: &[u8],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + value.len());
    out.extend_from_slice(&create_revision.to_le_bytes());
    out.extend_from_slice(&mod_revision.to_le_bytes());
    out.extend_from_slice(value);
    out
}

/// Decodes a `kv` table record.
pub(crate) fn decode_value(bytes: &[u8]) -> Result<StoredValue> {
    let mut r = Reader { bytes };
    let create_revision = r.i64()?;
    let mod_revision = r.i64()?;
    Ok(StoredValue {
        create_revision,
        mod_revision,
        value: r.rest().to_vec(),
    })
}

/// Encodes a history entry for `event`.
pub(crate) fn encode_event(event: &WatchEvent) -> Vec<u8> {
    let mut out = Vec::new();
    match event {
        WatchEvent::Put { kv, prev } => {
            out.push(TAG_PUT);
            put_bytes(&mut out, kv.key.as_bytes());
            put_prev(&mut out, prev.as_ref());
            out.extend_from_slice(&kv.create_revision.to_le_bytes());
            out.extend_from_slice(&kv.mod_revision.to_le_bytes());
            out.extend_from_slice(&kv.value);
        }
        WatchEvent::Delete { prev, revision } => {
            out.push(TAG_DELETE);
            put_bytes(&mut out, prev.key.as_bytes());
            put_prev(&mut out, Some(prev));
            out.extend_from_slice(&revision.to_le_bytes());
        }
    }
    out
}

/// Decodes a history entry.
pub(crate) fn decode_event(bytes: &[u8]) -> Result<WatchEvent> {
    let mut r = Reader { bytes };
    let tag = r.u8()?;
    let key = String::from_utf8(r.bytes()?.to_vec()).map_err(|_| corrupt("key is not UTF-8"))?;
    let prev = match r.u8()? {
        0 => None,
        _ => {
            let create_revision = r.i64()?;
            let mod_revision = r.i64()?;
            let value = r.bytes()?.to_vec();
            Some(KeyValue {
                key: key.clone(),
                value,
                create_revision,
                mod_revision,
            })
        }
    };
    match tag {
        TAG_PUT => {
            let create_revision = r.i64()?;
            let mod_revision = r.i64()?;
            let kv = KeyValue {
                key,
                value: r.rest().to_vec(),
                create_revision,
                mod_revision,
            };
            Ok(WatchEvent::Put { kv, prev })
        }
        TAG_DELETE => {
            let prev = prev.ok_or_else(|| corrupt("delete entry without previous value"))?;
            Ok(WatchEvent::Delete {
                prev,
                revision: r.i64()?,
            })
        }
        other => Err(corrupt(&format!("unknown history tag {other}"))),
    }
}

/// Reads only the key of a history entry (to filter by prefix without copying values).
pub(crate) fn event_key(bytes: &[u8]) -> Result<&str> {
    let mut r = Reader { bytes };
    r.u8()?;
    std::str::from_utf8(r.bytes()?).map_err(|_| corrupt("key is not UTF-8"))
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    // Keys and values are far below 4 GiB (redb itself limits values to 3 GiB).
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

fn put_prev(out: &mut Vec<u8>, prev: Option<&KeyValue>) {
    match prev {
        None => out.push(0),
        Some(p) => {
            out.push(1);
            out.extend_from_slice(&p.create_revision.to_le_bytes());
            out.extend_from_slice(&p.mod_revision.to_le_bytes());
            put_bytes(out, &p.value);
        }
    }
}

fn corrupt(what: &str) -> StoreError {
    StoreError::Backend(format!("corrupt record: {what}"))
}

/// A cursor over a record's bytes.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        if self.bytes.len() < n {
            return Err(corrupt("truncated"));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.take(1)?[0])
    }

    fn i64(&mut self) -> Result<i64> {
        let mut buf = [0u8; 8];
        buf.copy_from_slice(self.take(8)?);
        Ok(i64::from_le_bytes(buf))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let mut buf = [0u8; 4];
        buf.copy_from_slice(self.take(4)?);
        let len = u32::from_le_bytes(buf) as usize;
        self.take(len)
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, value: &[u8], c: Revision, m: Revision) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: value.to_vec(),
            create_revision: c,
            mod_revision: m,
        }
    }

    #[test]
    fn events_round_trip() {
        let events = [
            WatchEvent::Put {
                kv: kv("/a", b"one", 1, 1),
                prev: None,
            },
            WatchEvent::Put {
                kv: kv("/a", b"", 1, 2),
                prev: Some(kv("/a", b"one", 1, 1)),
            },
            WatchEvent::Delete {
                prev: kv("/a", b"two", 1, 2),
                revision: 3,
            },
        ];
        for e in events {
            let bytes = encode_event(&e);
            assert_eq!(decode_event(&bytes).unwrap(), e);
            assert_eq!(event_key(&bytes).unwrap(), "/a");
        }
    }

    #[test]
    fn values_round_trip_and_truncation_is_an_error() {
        let bytes = encode_value(4, 9, b"payload");
        assert_eq!(
            decode_value(&bytes).unwrap(),
            StoredValue {
                create_revision: 4,
                mod_revision: 9,
                value: b"payload".to_vec()
            }
        );
        assert!(matches!(
            decode_value(&bytes[..10]),
            Err(StoreError::Backend(_))
        ));
        let ev = encode_event(&WatchEvent::Put {
            kv: kv("/k", b"v", 1, 1),
            prev: None,
        });
        assert!(matches!(
            decode_event(&ev[..6]),
            Err(StoreError::Backend(_))
        ));
    }
}
