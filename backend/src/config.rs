//! Configuration from environment variables (see docs/contracts.md). Parsing is a pure function
//! of a map so it can be tested without touching the process environment.
use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;

pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:3000";
pub const DEFAULT_GRPC_ADDR: &str = "0.0.0.0:50053";
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";
pub const DEFAULT_NATS_SUBJECT: &str = "v7.events";
pub const DEFAULT_ANALYTICS_URL: &str = "http://127.0.0.1:50051";
pub const DEFAULT_LOG_FILTER: &str = "info";

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
    pub analytics_url: String,
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

        let nats_subject = get("V7_NATS_SUBJECT", DEFAULT_NATS_SUBJECT);
        validate_subject(&nats_subject).map_err(|message| ConfigError { var: "V7_NATS_SUBJECT", message })?;

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

        Ok(Config { http_addr, grpc_addr, nats_url, nats_subject, analytics_url, log_format, log_filter })
    }
}

fn parse_addr(var: &'static str, value: &str) -> Result<SocketAddr, ConfigError> {
    value
        .parse()
        .map_err(|_| ConfigError { var, message: format!("expected IP:PORT (e.g. 0.0.0.0:3000), got {value:?}") })
}

/// A subject to publish on: dot-separated non-empty tokens, no whitespace, no wildcards.
fn validate_subject(s: &str) -> Result<(), String> {
    if s.split('.').any(|t| t.is_empty()) {
        return Err(format!("subject {s:?} has an empty token"));
    }
    if s.chars().any(|c| c.is_whitespace() || c == '*' || c == '>') {
        return Err(format!("subject {s:?} must not contain whitespace or wildcards"));
    }
    Ok(())
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
        ]))
        .unwrap();
        assert_eq!(c.http_addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(c.grpc_addr, "[::1]:9000".parse().unwrap());
        assert_eq!(c.nats_url, "nats://nats:4222");
        assert_eq!(c.nats_subject, "x.y");
        assert_eq!(c.analytics_url, "http://analytics-engine:50051");
        assert_eq!(c.log_format, LogFormat::Text);
        assert_eq!(c.log_filter, "backend=debug");
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
        ];
        for (var, value) in cases {
            let err = Config::from_map(&map(&[(var, value)])).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}: {err}");
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }
}
