//! JSON in and out, through libraries rather than `format!` and substring search (docs/xtask.md
//! says why these two): written with write-json, rust-analyzer's choice (keys in the order the
//! code gives them, strings escaped as RFC 8259 says), and read with tinyjson (tested against
//! JSONTestSuite). Both are small crates with no dependencies. Everything the xtask emits with
//! `--json` and everything it reads (Prometheus' targets, the services' answers, OCI manifests)
//! goes through here.

pub use tinyjson::JsonValue;
pub use write_json::{array, object, Object};

/// Parses a JSON text; the error says where it stopped.
pub fn parse(text: &str) -> Result<JsonValue, String> {
    text.parse::<JsonValue>().map_err(|e| format!("not JSON: {e}"))
}

/// Reading parsed JSON without panicking: a missing key or a value of another type is `None`.
pub trait Read {
    fn field(&self, key: &str) -> Option<&JsonValue>;
    fn str(&self) -> Option<&str>;
    fn number(&self) -> Option<f64>;
    /// The elements of an array; none for anything else.
    fn items(&self) -> &[JsonValue];
}

impl Read for JsonValue {
    fn field(&self, key: &str) -> Option<&JsonValue> {
        match self {
            JsonValue::Object(map) => map.get(key),
            _ => None,
        }
    }

    fn str(&self) -> Option<&str> {
        match self {
            JsonValue::String(s) => Some(s),
            _ => None,
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            JsonValue::Number(n) => Some(*n),
            _ => None,
        }
    }

    fn items(&self) -> &[JsonValue] {
        match self {
            JsonValue::Array(items) => items,
            _ => &[],
        }
    }
}

/// Writing optional values: `null` when absent.
pub trait WriteOptional {
    fn string_or_null(&mut self, key: &str, value: Option<&str>) -> &mut Self;
    fn number_or_null(&mut self, key: &str, value: Option<f64>) -> &mut Self;
}

impl WriteOptional for Object<'_> {
    fn string_or_null(&mut self, key: &str, value: Option<&str>) -> &mut Self {
        match value {
            Some(v) => self.string(key, v),
            None => self.null(key),
        }
    }

    fn number_or_null(&mut self, key: &str, value: Option<f64>) -> &mut Self {
        match value {
            Some(v) => self.number(key, v),
            None => self.null(key),
        }
    }
}

/// Seconds rounded to milliseconds, as every `--json` output gives durations.
pub fn seconds(secs: f64) -> f64 {
    (secs * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_written_reads_back() {
        let mut out = String::new();
        {
            let mut o = object(&mut out);
            o.string("quoted", "x: \"q\"\n\u{1}é").number("n", 3.0).string_or_null("none", None);
            o.number_or_null("secs", Some(seconds(1.23456))).bool("ok", false);
            o.array("list").string("a").number(2.5);
        }
        assert_eq!(out, r#"{"quoted":"x: \"q\"\n\u0001é","n":3,"none":null,"secs":1.235,"ok":false,"list":["a",2.5]}"#);
        let v = parse(&out).unwrap();
        assert_eq!(v.field("quoted").and_then(Read::str), Some("x: \"q\"\n\u{1}é"));
        assert_eq!(v.field("n").and_then(Read::number), Some(3.0));
        assert!(matches!(v.field("none"), Some(JsonValue::Null)));
        assert!(matches!(v.field("ok"), Some(JsonValue::Boolean(false))));
        assert_eq!(v.field("list").map(|l| l.items().len()), Some(2));
        assert!(v.field("missing").is_none() && v.field("n").and_then(Read::str).is_none());
        assert!(parse("{\"a\": }").unwrap_err().starts_with("not JSON: "));
    }
}
