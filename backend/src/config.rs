//! Configuration from environment variables (see docs/contracts.md). Parsing is a pure function
//! of a map so it can be tested without touching the process environment.
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:3000";
pub const DEFAULT_GRPC_ADDR: &str = "0.0.0.0:50053";
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
pub const DEFAULT_ANALYTICS_URL: &str = "http://127.0.0.1:50051";
pub const DEFAULT_LOG_FILTER: &str = "info";
pub const DEFAULT_PUBLISH_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_PROMETHEUS_URL: &str = "http://prometheus:9090";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub nats_url: String,
    pub nats_subject: String,
    /// `V7_NATS_STREAM`: the JetStream stream capturing `nats_subject` (shared with
    /// analytics-engine, which creates it with the same config if it comes first).
    pub nats_stream: String,
    /// `V7_STREAM_MAX_BYTES`: the stream's `max_bytes` (discard New: a full stream refuses).
    pub stream_max_bytes: i64,
    /// `V7_STREAM_MAX_AGE_SECS`: the stream's `max_age`; 0 means no age limit.
    pub stream_max_age: Duration,
    /// `V7_PUBLISH_TIMEOUT_MS`: how long one request may wait for all its JetStream acks.
    pub publish_timeout: Duration,
    pub analytics_url: String,
    /// `V7_PROMETHEUS_URL`: probed (`/-/ready`) for `GET /api/health` only.
    pub prometheus_url: String,
    pub log_format: LogFormat,
    /// `RUST_LOG` (an `EnvFilter` directive), default `info`.
    pub log_filter: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.var, self.message)
    }
}

impl std::error::Error for ConfigError {}

impl Default for Config {
    fn default() -> Self {
        Config::from_map(&HashMap::new()).expect("defaults are valid")
    }
}

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = std::env::vars().collect();
        Config::from_map(&map)
    }

    /// Parses the configuration from a map of variable name to value. Empty values count as unset.
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let get = |name: &str, default: &str| -> String {
            match vars.get(name).map(|v| v.trim()) {
                Some(v) if !v.is_empty() => v.to_string(),
                _ => default.to_string(),
            }
        };

        let http_addr = parse_addr("V7_HTTP_ADDR", &get("V7_HTTP_ADDR", DEFAULT_HTTP_ADDR))?;
        let grpc_addr = parse_addr("V7_GRPC_ADDR", &get("V7_GRPC_ADDR", DEFAULT_GRPC_ADDR))?;

        let nats_url = get("V7_NATS_URL", DEFAULT_NATS_URL);
        if !(nats_url.starts_with("nats://")
            || nats_url.starts_with("tls://")
            || nats_url.starts_with("ws://")
            || nats_url.starts_with("wss://"))
        {
            return Err(ConfigError {
                var: "V7_NATS_URL",
                message: format!("expected a nats:// URL, got {nats_url:?}"),
            });
        }

        let nats_subject = get("V7_NATS_SUBJECT", event_stream::DEFAULT_SUBJECT);
        event_stream::validate_subject(&nats_subject)
            .map_err(|message| ConfigError { var: "V7_NATS_SUBJECT", message })?;

        let nats_stream = get("V7_NATS_STREAM", event_stream::DEFAULT_STREAM);
        event_stream::validate_name(&nats_stream)
            .map_err(|e| ConfigError { var: "V7_NATS_STREAM", message: format!("stream name {e}") })?;

        let stream_max_bytes = parse_int("V7_STREAM_MAX_BYTES", &get("V7_STREAM_MAX_BYTES", ""), 1, i64::MAX as u64)?
            .map_or(event_stream::DEFAULT_MAX_BYTES, |v| v as i64);
        let stream_max_age = Duration::from_secs(
            parse_int(
                "V7_STREAM_MAX_AGE_SECS",
                &get("V7_STREAM_MAX_AGE_SECS", ""),
                0,
                event_stream::MAX_AGE_SECS_LIMIT,
            )?
            .unwrap_or(event_stream::DEFAULT_MAX_AGE_SECS),
        );
        let publish_timeout = Duration::from_millis(
            parse_int("V7_PUBLISH_TIMEOUT_MS", &get("V7_PUBLISH_TIMEOUT_MS", ""), 1, PUBLISH_TIMEOUT_MS_LIMIT)?
                .unwrap_or(DEFAULT_PUBLISH_TIMEOUT_MS),
        );

        let analytics_url = get("V7_ANALYTICS_URL", DEFAULT_ANALYTICS_URL);
        if !(analytics_url.starts_with("http://") || analytics_url.starts_with("https://")) {
            return Err(ConfigError {
                var: "V7_ANALYTICS_URL",
                message: format!("expected an http:// URL, got {analytics_url:?}"),
            });
        }
        if analytics_url.starts_with("https://") {
            return Err(ConfigError {
                var: "V7_ANALYTICS_URL",
                message: "https is not supported (this build has no TLS); use http://".to_string(),
            });
        }

        let prometheus_url = get("V7_PROMETHEUS_URL", DEFAULT_PROMETHEUS_URL);
        crate::health::parse_http_url(&prometheus_url)
            .map_err(|message| ConfigError { var: "V7_PROMETHEUS_URL", message })?;

        let log_format = match get("V7_LOG_FORMAT", "json").to_ascii_lowercase().as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => {
                return Err(ConfigError {
                    var: "V7_LOG_FORMAT",
                    message: format!("expected json or text, got {other:?}"),
                })
            }
        };

        let log_filter = get("RUST_LOG", DEFAULT_LOG_FILTER);

        Ok(Config {
            http_addr,
            grpc_addr,
            nats_url,
            nats_subject,
            nats_stream,
            stream_max_bytes,
            stream_max_age,
            publish_timeout,
            analytics_url,
            prometheus_url,
            log_format,
            log_filter,
        })
    }
}

/// Upper bound of `V7_PUBLISH_TIMEOUT_MS` (10 min): a request waiting longer is useless to a client.
const PUBLISH_TIMEOUT_MS_LIMIT: u64 = 600_000;

/// An integer in `min..=max`; `None` when the value is empty (the caller's default applies).
fn parse_int(var: &'static str, value: &str, min: u64, max: u64) -> Result<Option<u64>, ConfigError> {
    if value.is_empty() {
        return Ok(None);
    }
    match value.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(Some(v)),
        _ => Err(ConfigError { var, message: format!("expected an integer from {min} to {max}, got {value:?}") }),
    }
}

fn parse_addr(var: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError { var, message: format!("expected IP:PORT (e.g. 0.0.0.0:3000), got {value:?}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_contracts() {
        let c = Config::from_map(&HashMap::new()).unwrap();
        assert_eq!(c.http_addr, "0.0.0.0:3000".parse().unwrap());
        assert_eq!(c.grpc_addr, "0.0.0.0:50053".parse().unwrap());
        assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(c.nats_subject, "v7.events");
        assert_eq!(c.analytics_url, "http://127.0.0.1:50051");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.log_filter, "info");
        assert_eq!(c.nats_stream, "V7_EVENTS");
        assert_eq!(c.stream_max_bytes, 1_073_741_824);
        assert_eq!(c.stream_max_age, Duration::from_secs(604_800));
        assert_eq!(c.publish_timeout, Duration::from_millis(5000));
        assert_eq!(c.prometheus_url, "http://prometheus:9090");
    }

    #[test]
    fn overrides_are_read() {
        let c = Config::from_map(&map(&[
            ("V7_HTTP_ADDR", "127.0.0.1:8080"),
            ("V7_GRPC_ADDR", "[::1]:9000"),
            ("V7_NATS_URL", "nats://nats:4222"),
            ("V7_NATS_SUBJECT", "x.y"),
            ("V7_ANALYTICS_URL", "http://analytics-engine:50051"),
            ("V7_LOG_FORMAT", "TEXT"),
            ("RUST_LOG", "backend=debug"),
            ("V7_NATS_STREAM", "EVENTS_2"),
            ("V7_STREAM_MAX_BYTES", "4096"),
            ("V7_STREAM_MAX_AGE_SECS", "0"),
            ("V7_PUBLISH_TIMEOUT_MS", "250"),
            ("V7_PROMETHEUS_URL", "http://127.0.0.1:9091"),
        ]))
        .unwrap();
        assert_eq!(c.http_addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.grpc_addr, "[::1]:9000".parse().unwrap());
        assert_eq!(c.nats_url, "nats://nats:4222");
        assert_eq!(c.nats_subject, "x.y");
        assert_eq!(c.analytics_url, "http://analytics-engine:50051");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.log_filter, "backend=debug");
        assert_eq!(c.nats_stream, "EVENTS_2");
        assert_eq!(c.stream_max_bytes, 4096);
        assert_eq!(c.stream_max_age, Duration::ZERO);
        assert_eq!(c.publish_timeout, Duration::from_millis(250));
        assert_eq!(c.prometheus_url, "http://127.0.0.1:9091");
    }

    #[test]
    fn empty_values_mean_default() {
        let c = Config::from_map(&map(&[("V7_HTTP_ADDR", ""), ("V7_LOG_FORMAT", "  ")])).unwrap();
        assert_eq!(c, Config::default());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("V7_HTTP_ADDR", "localhost"),
            ("V7_HTTP_ADDR", "0.0.0.0:99999"),
            ("V7_GRPC_ADDR", "nope"),
            ("V7_NATS_URL", "http://nats:4222"),
            ("V7_NATS_SUBJECT", "v7..events"),
            ("V7_NATS_SUBJECT", "v7.*"),
            ("V7_NATS_SUBJECT", "v7 events"),
            ("V7_ANALYTICS_URL", "analytics:50051"),
            ("V7_ANALYTICS_URL", "https://analytics:50051"),
            ("V7_LOG_FORMAT", "yaml"),
            ("V7_NATS_STREAM", "v7.events"),
            ("V7_NATS_STREAM", "A B"),
            ("V7_NATS_STREAM", "a/b"),
            ("V7_STREAM_MAX_BYTES", "0"),
            ("V7_STREAM_MAX_BYTES", "-1"),
            ("V7_STREAM_MAX_BYTES", "1GB"),
            ("V7_STREAM_MAX_AGE_SECS", "-5"),
            ("V7_STREAM_MAX_AGE_SECS", "99999999999999"),
            ("V7_PUBLISH_TIMEOUT_MS", "0"),
            ("V7_PUBLISH_TIMEOUT_MS", "soon"),
            ("V7_PROMETHEUS_URL", "prometheus:9090"),
            ("V7_PROMETHEUS_URL", "https://prometheus:9090"),
        ];
        for (var, value) in cases {
            let err = Config::from_map(&map(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}: {err}");
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }
}
