//! The event as published on NATS (see `docs/contracts.md`) and its ClickHouse row.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// An event as it arrives on NATS.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Event {
    /// Set by backend before publishing; an event without one gets a generated id.
    #[serde(default)]
    pub id: Option<String>,
    pub kind: String,
    pub value: f64,
    #[serde(default)]
    pub source: Option<String>,
    #[serde(default)]
    pub attributes: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub ts_unix_ms: Option<u64>,
}

/// One row of the `events` table, serialized as a `JSONEachRow` line.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub id: String,
    pub kind: String,
    pub value: f64,
    pub source: String,
    /// The attributes map as a JSON object string.
    pub attributes: String,
    pub ts_unix_ms: u64,
}

/// Why a payload was rejected.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidEvent(pub String);

impl fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InvalidEvent {}

pub const MAX_KIND: usize = 64;
pub const MAX_SOURCE: usize = 64;
pub const MAX_ATTRIBUTES: usize = 32;
pub const MAX_ATTR_KEY: usize = 64;
pub const MAX_ATTR_VALUE: usize = 256;
pub const MAX_ID: usize = 128;

/// Whether `kind` is 1–64 chars of `[a-z0-9_.-]`.
pub fn valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= MAX_KIND
        && kind.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-'))
}

/// Parses and validates a NATS payload. `now_ms` fills a missing or zero timestamp and
/// `fallback_id` a missing id.
pub fn parse_event(payload: &[u8], now_ms: u64, fallback_id: impl FnOnce() -> String) -> Result<Row, InvalidEvent> {
    let ev: Event =
        serde_json::from_slice(payload).map_err(|e| InvalidEvent(format!("not an event JSON object: {e}")))?;
    if !valid_kind(&ev.kind) {
        return Err(InvalidEvent(format!(
            "kind must be 1-{MAX_KIND} chars of [a-z0-9_.-], got {:?}",
            truncate(&ev.kind, 80)
        )));
    }
    if !ev.value.is_finite() {
        return Err(InvalidEvent("value must be a finite number".into()));
    }
    let source = ev.source.unwrap_or_default();
    if source.chars().count() > MAX_SOURCE {
        return Err(InvalidEvent(format!("source longer than {MAX_SOURCE} chars")));
    }
    let attributes = ev.attributes.unwrap_or_default();
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(InvalidEvent(format!("more than {MAX_ATTRIBUTES} attributes")));
    }
    for (k, v) in &attributes {
        if k.chars().count() > MAX_ATTR_KEY {
            return Err(InvalidEvent(format!("attribute key longer than {MAX_ATTR_KEY} chars")));
        }
        if v.chars().count() > MAX_ATTR_VALUE {
            return Err(InvalidEvent(format!("attribute {:?} longer than {MAX_ATTR_VALUE} chars", truncate(k, 64))));
        }
    }
    let id = match ev.id {
        Some(id) if !id.is_empty() => {
            if id.chars().count() > MAX_ID {
                return Err(InvalidEvent(format!("id longer than {MAX_ID} chars")));
            }
            id
        }
        _ => fallback_id(),
    };
    let ts_unix_ms = match ev.ts_unix_ms {
        Some(ts) if ts > 0 => ts,
        _ => now_ms,
    };
    Ok(Row {
        id,
        kind: ev.kind,
        value: ev.value,
        source,
        attributes: serde_json::to_string(&attributes).expect("a string map always serializes"),
        ts_unix_ms,
    })
}

/// Encodes rows as a `JSONEachRow` body (one JSON object per line).
pub fn encode_json_each_row(rows: &[Row]) -> String {
    let mut out = String::with_capacity(rows.len() * 128);
    for row in rows {
        out.push_str(&serde_json::to_string(row).expect("rows always serialize"));
        out.push('\n');
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Row, InvalidEvent> {
        parse_event(s.as_bytes(), 1_000, || "gen-1".to_string())
    }

    #[test]
    fn parses_a_full_event() {
        let row = parse(
            r#"{"id":"e1","kind":"page_view","value":1.5,"source":"web","attributes":{"path":"/","a":"b"},"ts_unix_ms":1700000000123}"#,
        )
        .unwrap();
        assert_eq!(
            row,
            Row {
                id: "e1".into(),
                kind: "page_view".into(),
                value: 1.5,
                source: "web".into(),
                attributes: r#"{"a":"b","path":"/"}"#.into(),
                ts_unix_ms: 1_700_000_000_123,
            }
        );
    }

    #[test]
    fn optional_fields_get_defaults() {
        let row = parse(r#"{"kind":"k","value":2}"#).unwrap();
        assert_eq!(row.id, "gen-1");
        assert_eq!(row.source, "");
        assert_eq!(row.attributes, "{}");
        assert_eq!(row.ts_unix_ms, 1_000);
        let row = parse(r#"{"id":"","kind":"k","value":2,"ts_unix_ms":0,"source":null,"attributes":null}"#).unwrap();
        assert_eq!(row.id, "gen-1");
        assert_eq!(row.ts_unix_ms, 1_000);
    }

    #[test]
    fn unknown_fields_are_ignored() {
        assert!(parse(r#"{"kind":"k","value":2,"extra":[1]}"#).is_ok());
    }

    #[test]
    fn invalid_payloads_are_rejected() {
        for bad in [
            "",
            "not json",
            "[1,2]",
            r#"{"value":1}"#,
            r#"{"kind":"k"}"#,
            r#"{"kind":"k","value":"1"}"#,
            r#"{"kind":"","value":1}"#,
            r#"{"kind":"Page","value":1}"#,
            r#"{"kind":"a b","value":1}"#,
            r#"{"kind":"k","value":1e999}"#,
            r#"{"kind":"k","value":1,"attributes":{"a":1}}"#,
            r#"{"kind":"k","value":1,"ts_unix_ms":-5}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be invalid");
        }
        let long_kind = format!(r#"{{"kind":"{}","value":1}}"#, "a".repeat(65));
        assert!(parse(&long_kind).is_err());
        let ok_kind = format!(r#"{{"kind":"{}","value":1}}"#, "a".repeat(64));
        assert!(parse(&ok_kind).is_ok());
        let long_source = format!(r#"{{"kind":"k","value":1,"source":"{}"}}"#, "s".repeat(65));
        assert!(parse(&long_source).is_err());
        let many: Vec<String> = (0..33).map(|i| format!(r#""k{i}":"v""#)).collect();
        let many_attrs = format!(r#"{{"kind":"k","value":1,"attributes":{{{}}}}}"#, many.join(","));
        assert!(parse(&many_attrs).is_err());
        let long_val = format!(r#"{{"kind":"k","value":1,"attributes":{{"a":"{}"}}}}"#, "v".repeat(257));
        assert!(parse(&long_val).is_err());
    }

    #[test]
    fn valid_kind_charset() {
        assert!(valid_kind("page_view.v2-x"));
        assert!(!valid_kind("PageView"));
        assert!(!valid_kind("ä"));
    }

    #[test]
    fn json_each_row_encoding() {
        let rows = vec![
            parse(r#"{"id":"a","kind":"k","value":1,"attributes":{"q":"\"x\"\n"},"ts_unix_ms":5}"#).unwrap(),
            parse(r#"{"id":"b","kind":"k","value":-2.25,"ts_unix_ms":6}"#).unwrap(),
        ];
        let body = encode_json_each_row(&rows);
        let lines: Vec<&str> = body.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(body.ends_with('\n'));
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["id"], "a");
        assert_eq!(first["value"], 1.0);
        assert_eq!(first["ts_unix_ms"], 5);
        assert_eq!(first["attributes"], r#"{"q":"\"x\"\n"}"#);
        assert_eq!(lines[1], r#"{"id":"b","kind":"k","value":-2.25,"source":"","attributes":"{}","ts_unix_ms":6}"#);
    }
}
