//! The event of docs/contracts.md: parsing (JSON body, gRPC message), validation and the
//! payload published on NATS. HTTP and gRPC share `validate` and `Event::finalize`.
use std::collections::hash_map::RandomState;
use std::collections::BTreeMap;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::Value;

pub const KIND_MAX: usize = 64;
pub const SOURCE_MAX: usize = 64;
pub const ATTRIBUTES_MAX: usize = 32;
pub const ATTRIBUTE_KEY_MAX: usize = 64;
pub const ATTRIBUTE_VALUE_MAX: usize = 256;
/// A client-supplied id: 1 to `ID_MAX` characters of `[A-Za-z0-9_.:-]` (it becomes the
/// JetStream `Nats-Msg-Id`, so it must be a header-safe token).
pub const ID_MAX: usize = 64;

/// An event as a producer sent it (before validation; `ts_unix_ms` 0 means "now").
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    /// The producer's own id, so a retry of the same event is stored once (JetStream dedupes
    /// `Nats-Msg-Id` within the stream's duplicate window); `None` = backend makes one.
    pub id: Option<String>,
    pub kind: String,
    pub value: f64,
    pub source: String,
    pub attributes: BTreeMap<String, String>,
    pub ts_unix_ms: i64,
}

/// The NATS payload: the event with `id` and `ts_unix_ms` filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishedEvent {
    pub id: String,
    pub kind: String,
    pub value: f64,
    pub source: String,
    pub attributes: BTreeMap<String, String>,
    pub ts_unix_ms: i64,
}

/// Why an event was rejected; `field` names the offending field (`kind`, `attributes`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidationError {
    pub field: String,
    pub message: String,
}

impl ValidationError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        ValidationError { field: field.into(), message: message.into() }
    }

    /// Prefixes the field, e.g. `kind` -> `events[3].kind` in a batch.
    pub fn within(self, prefix: &str) -> Self {
        ValidationError { field: format!("{prefix}.{}", self.field), message: self.message }
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for ValidationError {}

/// Parses a `POST /api/events` body. Type errors name the field; range checks are `validate`'s.
pub fn parse_json(body: &[u8]) -> Result<Event, ValidationError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| ValidationError::new("body", format!("invalid JSON: {e}")))?;
    let obj = match root {
        Value::Object(obj) => obj,
        other => {
            return Err(ValidationError::new("body", format!("expected a JSON object, got {}", json_type(&other))))
        }
    };

    let mut ev = Event::default();
    let mut have_kind = false;
    let mut have_value = false;
    for (key, v) in obj {
        match key.as_str() {
            "id" => match v {
                Value::String(s) => ev.id = Some(s),
                Value::Null => {}
                other => return Err(type_error("id", "a string", &other)),
            },
            "kind" => match v {
                Value::String(s) => {
                    ev.kind = s;
                    have_kind = true;
                }
                Value::Null => {}
                other => return Err(type_error("kind", "a string", &other)),
            },
            "value" => match v {
                Value::Number(n) => {
                    // serde_json numbers are finite; as_f64 is None only for arbitrary precision.
                    ev.value = n.as_f64().ok_or_else(|| ValidationError::new("value", "must be a finite number"))?;
                    have_value = true;
                }
                Value::Null => {}
                other => return Err(type_error("value", "a number", &other)),
            },
            "source" => match v {
                Value::String(s) => ev.source = s,
                Value::Null => {}
                other => return Err(type_error("source", "a string", &other)),
            },
            "attributes" => match v {
                Value::Object(map) => {
                    for (k, val) in map {
                        match val {
                            Value::String(s) => {
                                ev.attributes.insert(k, s);
                            }
                            other => {
                                return Err(ValidationError::new(
                                    format!("attributes[{k:?}]"),
                                    format!("must be a string, got {}", json_type(&other)),
                                ))
                            }
                        }
                    }
                }
                Value::Null => {}
                other => return Err(type_error("attributes", "an object of strings", &other)),
            },
            "ts_unix_ms" => match v {
                Value::Number(n) => {
                    ev.ts_unix_ms = n.as_i64().ok_or_else(|| {
                        ValidationError::new(
                            "ts_unix_ms",
                            format!("must be an integer number of milliseconds, got {n}"),
                        )
                    })?;
                }
                Value::Null => {}
                other => return Err(type_error("ts_unix_ms", "an integer", &other)),
            },
            _ => {
                return Err(ValidationError::new(
                    key.clone(),
                    "unknown field (expected id, kind, value, source, attributes, ts_unix_ms)",
                ))
            }
        }
    }
    if !have_kind {
        return Err(ValidationError::new("kind", "is required"));
    }
    if !have_value {
        return Err(ValidationError::new("value", "is required"));
    }
    validate(&ev)?;
    Ok(ev)
}

fn type_error(field: &str, expected: &str, got: &Value) -> ValidationError {
    ValidationError::new(field, format!("must be {expected}, got {}", json_type(got)))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The rules of docs/contracts.md, shared by HTTP and gRPC.
pub fn validate(ev: &Event) -> Result<(), ValidationError> {
    if let Some(id) = &ev.id {
        validate_id(id)?;
    }
    let kind_len = ev.kind.chars().count();
    if kind_len == 0 {
        return Err(ValidationError::new("kind", "must not be empty"));
    }
    if kind_len > KIND_MAX {
        return Err(ValidationError::new("kind", format!("must be at most {KIND_MAX} characters, got {kind_len}")));
    }
    if let Some(c) =
        ev.kind.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '_' | '.' | '-')))
    {
        return Err(ValidationError::new("kind", format!("invalid character {c:?} (allowed: a-z 0-9 _ . -)")));
    }
    if !ev.value.is_finite() {
        return Err(ValidationError::new("value", format!("must be a finite number, got {}", ev.value)));
    }
    let source_len = ev.source.chars().count();
    if source_len > SOURCE_MAX {
        return Err(ValidationError::new(
            "source",
            format!("must be at most {SOURCE_MAX} characters, got {source_len}"),
        ));
    }
    if ev.attributes.len() > ATTRIBUTES_MAX {
        return Err(ValidationError::new(
            "attributes",
            format!("at most {ATTRIBUTES_MAX} entries, got {}", ev.attributes.len()),
        ));
    }
    for (k, v) in &ev.attributes {
        let klen = k.chars().count();
        if klen > ATTRIBUTE_KEY_MAX {
            let head: String = k.chars().take(16).collect();
            return Err(ValidationError::new(
                "attributes",
                format!("key {head:?}... is {klen} characters, at most {ATTRIBUTE_KEY_MAX}"),
            ));
        }
        let vlen = v.chars().count();
        if vlen > ATTRIBUTE_VALUE_MAX {
            return Err(ValidationError::new(
                format!("attributes[{k:?}]"),
                format!("value is {vlen} characters, at most {ATTRIBUTE_VALUE_MAX}"),
            ));
        }
    }
    if ev.ts_unix_ms < 0 {
        return Err(ValidationError::new(
            "ts_unix_ms",
            format!("must be 0 (now) or a positive Unix time in milliseconds, got {}", ev.ts_unix_ms),
        ));
    }
    Ok(())
}

fn validate_id(id: &str) -> Result<(), ValidationError> {
    let len = id.chars().count();
    if len == 0 || len > ID_MAX {
        return Err(ValidationError::new("id", format!("must be 1 to {ID_MAX} characters, got {len}")));
    }
    if let Some(c) = id.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))) {
        return Err(ValidationError::new("id", format!("invalid character {c:?} (allowed: A-Z a-z 0-9 _ . : -)")));
    }
    Ok(())
}

impl Event {
    /// Keeps the producer's id or assigns one, and fills `ts_unix_ms` when 0. Call after `validate`.
    pub fn finalize(self) -> PublishedEvent {
        let now = now_unix_ms();
        PublishedEvent {
            id: self.id.unwrap_or_else(|| new_id(now)),
            kind: self.kind,
            value: self.value,
            source: self.source,
            attributes: self.attributes,
            ts_unix_ms: if self.ts_unix_ms == 0 { now } else { self.ts_unix_ms },
        }
    }
}

pub fn now_unix_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// A UUIDv7-shaped id: 48 bits of Unix milliseconds, then 74 bits that are unique within this
/// process (a per-process random seed mixed with a counter) and random across processes.
pub fn new_id(now_ms: i64) -> String {
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        let mut h = RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        h.finish()
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let r = splitmix64(seed.wrapping_add(n));
    let r2 = splitmix64(r ^ seed.rotate_left(17));
    let ms = (now_ms.max(0) as u64) & 0xffff_ffff_ffff;
    let rand_a = (r2 >> 52) & 0x0fff;
    let rand_b = r & 0x3fff_ffff_ffff_ffff;
    let hi = (ms << 16) | (0x7 << 12) | rand_a;
    let lo = (0b10u64 << 62) | rand_b;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn err_of(body: &str) -> ValidationError {
        parse_json(body.as_bytes()).expect_err(body)
    }

    #[test]
    fn parses_the_contract_example() {
        let ev = parse_json(
            br#"{"kind": "page_view", "value": 1.5, "source": "web", "attributes": {"path": "/"}, "ts_unix_ms": 0}"#,
        )
        .unwrap();
        assert_eq!(ev.kind, "page_view");
        assert_eq!(ev.value, 1.5);
        assert_eq!(ev.source, "web");
        assert_eq!(ev.attributes.get("path").map(String::as_str), Some("/"));
        assert_eq!(ev.ts_unix_ms, 0);
    }

    #[test]
    fn optional_fields_default() {
        let ev = parse_json(br#"{"kind":"a","value":-3}"#).unwrap();
        assert_eq!(ev.source, "");
        assert!(ev.attributes.is_empty());
        assert_eq!(ev.ts_unix_ms, 0);
        let ev = parse_json(br#"{"kind":"a","value":0,"source":null,"attributes":null,"ts_unix_ms":null}"#).unwrap();
        assert_eq!(ev.source, "");
    }

    #[test]
    fn bad_json_inputs_name_the_field() {
        let long_kind = "k".repeat(65);
        let long_source = "s".repeat(65);
        let long_key = "a".repeat(65);
        let long_val = "v".repeat(257);
        let many: Vec<String> = (0..33).map(|i| format!("\"k{i}\":\"v\"")).collect();
        let cases: Vec<(String, &str)> = vec![
            ("not json".into(), "body"),
            ("".into(), "body"),
            ("[1,2]".into(), "body"),
            ("\"kind\"".into(), "body"),
            (r#"{"value":1}"#.into(), "kind"),
            (r#"{"kind":null,"value":1}"#.into(), "kind"),
            (r#"{"kind":"","value":1}"#.into(), "kind"),
            (r#"{"kind":"Page","value":1}"#.into(), "kind"),
            (r#"{"kind":"page view","value":1}"#.into(), "kind"),
            (r#"{"kind":"páge","value":1}"#.into(), "kind"),
            (r#"{"kind":7,"value":1}"#.into(), "kind"),
            (format!(r#"{{"kind":"{long_kind}","value":1}}"#), "kind"),
            (r#"{"kind":"a"}"#.into(), "value"),
            (r#"{"kind":"a","value":null}"#.into(), "value"),
            (r#"{"kind":"a","value":"1"}"#.into(), "value"),
            (r#"{"kind":"a","value":true}"#.into(), "value"),
            (r#"{"kind":"a","value":1,"source":5}"#.into(), "source"),
            (format!(r#"{{"kind":"a","value":1,"source":"{long_source}"}}"#), "source"),
            (r#"{"kind":"a","value":1,"attributes":[]}"#.into(), "attributes"),
            (r#"{"kind":"a","value":1,"attributes":"x"}"#.into(), "attributes"),
            (r#"{"kind":"a","value":1,"attributes":{"n":1}}"#.into(), "attributes[\"n\"]"),
            (format!(r#"{{"kind":"a","value":1,"attributes":{{"{long_key}":"v"}}}}"#), "attributes"),
            (format!(r#"{{"kind":"a","value":1,"attributes":{{"k":"{long_val}"}}}}"#), "attributes[\"k\"]"),
            (format!(r#"{{"kind":"a","value":1,"attributes":{{{}}}}}"#, many.join(",")), "attributes"),
            (r#"{"kind":"a","value":1,"ts_unix_ms":-1}"#.into(), "ts_unix_ms"),
            (r#"{"kind":"a","value":1,"ts_unix_ms":1.5}"#.into(), "ts_unix_ms"),
            (r#"{"kind":"a","value":1,"ts_unix_ms":"0"}"#.into(), "ts_unix_ms"),
            (r#"{"kind":"a","value":1,"id":""}"#.into(), "id"),
            (r#"{"kind":"a","value":1,"id":7}"#.into(), "id"),
            (r#"{"kind":"a","value":1,"id":"has space"}"#.into(), "id"),
            (r#"{"kind":"a","value":1,"id":"a/b"}"#.into(), "id"),
            (r#"{"kind":"a","value":1,"id":"é"}"#.into(), "id"),
            (format!(r#"{{"kind":"a","value":1,"id":"{}"}}"#, "i".repeat(65)), "id"),
            (r#"{"kind":"a","value":1,"valeu":2}"#.into(), "valeu"),
        ];
        for (body, field) in cases {
            let err = err_of(&body);
            assert_eq!(err.field, field, "body {body:?} -> {err}");
            assert!(err.to_string().starts_with(field), "{err}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
        }
    }

    #[test]
    fn client_ids_are_kept() {
        let id = format!("Ab9_.:-{}", "x".repeat(57));
        assert_eq!(id.len(), 64);
        let ev = parse_json(format!(r#"{{"id":"{id}","kind":"a","value":1}}"#).as_bytes()).unwrap();
        assert_eq!(ev.id.as_deref(), Some(id.as_str()));
        assert_eq!(ev.finalize().id, id);
        let ev = parse_json(br#"{"id":null,"kind":"a","value":1}"#).unwrap();
        assert_eq!(ev.id, None);
        assert_eq!(ev.finalize().id.len(), 36, "backend makes one");
    }

    #[test]
    fn limits_are_inclusive() {
        let ev = Event {
            id: Some("i".repeat(ID_MAX)),
            kind: "k".repeat(64),
            value: 1.0,
            source: "s".repeat(64),
            attributes: (0..32).map(|i| (format!("{i:0>64}"), "v".repeat(256))).collect(),
            ts_unix_ms: 1,
        };
        validate(&ev).unwrap();
        validate(&Event { kind: "a-b_c.9".into(), ..Default::default() }).unwrap();
    }

    #[test]
    fn validate_rejects_non_finite_values() {
        for v in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let err = validate(&Event { kind: "a".into(), value: v, ..Default::default() }).unwrap_err();
            assert_eq!(err.field, "value");
        }
    }

    #[test]
    fn batch_prefix() {
        let err = validate(&Event::default()).unwrap_err().within("events[2]");
        assert_eq!(err.to_string(), "events[2].kind: must not be empty");
    }

    #[test]
    fn finalize_fills_id_and_time() {
        let before = now_unix_ms();
        let p = Event { kind: "a".into(), ..Default::default() }.finalize();
        assert!(p.ts_unix_ms >= before);
        let p2 = Event { kind: "a".into(), ts_unix_ms: 42, ..Default::default() }.finalize();
        assert_eq!(p2.ts_unix_ms, 42);
        assert_ne!(p.id, p2.id);
        let json = serde_json::to_value(&p2).unwrap();
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 6);
    }

    #[test]
    fn ids_are_unique_and_uuid_shaped() {
        let mut seen = HashSet::new();
        for _ in 0..10_000 {
            let id = new_id(1_700_000_000_000);
            assert_eq!(id.len(), 36);
            assert_eq!(&id[14..15], "7", "version nibble: {id}");
            assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "variant: {id}");
            assert!(seen.insert(id));
        }
    }
}
