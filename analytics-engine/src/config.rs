//! Configuration from environment variables (see `docs/contracts.md` and the README); every
//! variable has a default. The JetStream names and limits are the shared contract of issue 10:
//! backend reads the same variables with the same defaults, because whichever service starts
//! first creates the stream.

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// Log output format (`V7_LOG_FORMAT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
}

/// The engine's settings. `Debug` never shows the ClickHouse password.
#[derive(Clone)]
pub struct Config {
    pub grpc_addr: SocketAddr,
    pub http_addr: SocketAddr,
    pub nats_url: String,
    pub nats_subject: String,
    /// `V7_NATS_STREAM`: the JetStream stream capturing `nats_subject`.
    pub nats_stream: String,
    /// `V7_NATS_CONSUMER`: the durable pull consumer every engine instance shares.
    pub nats_consumer: String,
    /// `V7_STREAM_MAX_BYTES`: the stream's `max_bytes` (discard New: a full stream refuses).
    pub stream_max_bytes: i64,
    /// `V7_STREAM_MAX_AGE_SECS`: the stream's `max_age`; zero means no age limit.
    pub stream_max_age: Duration,
    pub clickhouse_url: String,
    pub clickhouse_database: String,
    pub clickhouse_user: String,
    pub clickhouse_password: String,
    pub python: String,
    pub log_format: LogFormat,
    /// Prepended to `PYTHONPATH` of the statistics process (tests and local runs point it at
    /// `analytics-engine/python`; the image installs the package so it stays `None`).
    pub python_path: Option<PathBuf>,
    /// `V7_INGEST_FLUSH_MS`: how long one pull request waits for its batch to fill, i.e. the
    /// longest an event waits in NATS for a batch to be inserted when traffic is low.
    pub flush_interval: Duration,
    /// `V7_INGEST_BATCH`: messages per pull request and per ClickHouse insert. It is also all the
    /// engine ever holds unacknowledged in memory: nothing more is fetched until they are stored.
    pub batch_size: usize,
    /// `V7_STATS_CACHE_MS`: how long a `GetStats` answer is reused for the same request (the
    /// dashboards poll every 5 s; zero still coalesces concurrent identical requests).
    pub stats_cache_ttl: Duration,
}

pub const DEFAULT_GRPC_ADDR: &str = "0.0.0.0:50051";
pub const DEFAULT_HTTP_ADDR: &str = "0.0.0.0:9100";
/// Upper bound of `V7_INGEST_BATCH`: the consumer's `max_ack_pending` (10 000); a pull asking
/// for more could never be filled.
pub const MAX_BATCH: u64 = 10_000;

impl Config {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_map(&std::env::vars().collect())
    }

    /// Builds the configuration from a map of variables (missing or empty means default).
    pub fn from_map(vars: &HashMap<String, String>) -> Result<Self> {
        let get = |key: &str, default: &str| -> String {
            match vars.get(key) {
                Some(v) if !v.trim().is_empty() => v.trim().to_string(),
                _ => default.to_string(),
            }
        };
        let grpc_addr = parse_addr(&get("V7_GRPC_ADDR", DEFAULT_GRPC_ADDR)).context("V7_GRPC_ADDR")?;
        let http_addr = parse_addr(&get("V7_HTTP_ADDR", DEFAULT_HTTP_ADDR)).context("V7_HTTP_ADDR")?;
        let clickhouse_url = get("V7_CLICKHOUSE_URL", "http://127.0.0.1:8123").trim_end_matches('/').to_string();
        if !clickhouse_url.starts_with("http://") {
            bail!("V7_CLICKHOUSE_URL must be an http:// URL (TLS is not built in), got {clickhouse_url:?}");
        }
        let clickhouse_database = get("V7_CLICKHOUSE_DATABASE", "v7");
        if clickhouse_database.len() > 64 || !clickhouse_database.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            bail!("V7_CLICKHOUSE_DATABASE must be 1-64 chars of [A-Za-z0-9_], got {clickhouse_database:?}");
        }
        let log_format = match get("V7_LOG_FORMAT", "json").to_ascii_lowercase().as_str() {
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            other => bail!("V7_LOG_FORMAT must be `json` or `text`, got {other:?}"),
        };
        let nats_subject = get("V7_NATS_SUBJECT", event_stream::DEFAULT_SUBJECT);
        if let Err(e) = event_stream::validate_subject(&nats_subject) {
            bail!("V7_NATS_SUBJECT: {e}");
        }
        let nats_stream = get("V7_NATS_STREAM", event_stream::DEFAULT_STREAM);
        event_stream::validate_name(&nats_stream).map_err(|e| anyhow::anyhow!("V7_NATS_STREAM: {e}"))?;
        let nats_consumer = get("V7_NATS_CONSUMER", event_stream::DEFAULT_CONSUMER);
        event_stream::validate_name(&nats_consumer).map_err(|e| anyhow::anyhow!("V7_NATS_CONSUMER: {e}"))?;
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
        let batch_size =
            parse_int("V7_INGEST_BATCH", &get("V7_INGEST_BATCH", ""), 1, MAX_BATCH)?.unwrap_or(500) as usize;
        let flush_interval = Duration::from_millis(
            parse_int("V7_INGEST_FLUSH_MS", &get("V7_INGEST_FLUSH_MS", ""), 10, 60_000)?.unwrap_or(200),
        );
        let stats_cache_ttl = Duration::from_millis(
            parse_int("V7_STATS_CACHE_MS", &get("V7_STATS_CACHE_MS", ""), 0, 60_000)?.unwrap_or(1000),
        );
        Ok(Config {
            grpc_addr,
            http_addr,
            nats_url: get("V7_NATS_URL", "nats://127.0.0.1:4222"),
            nats_subject,
            nats_stream,
            nats_consumer,
            stream_max_bytes,
            stream_max_age,
            clickhouse_url,
            clickhouse_database,
            clickhouse_user: get("V7_CLICKHOUSE_USER", "default"),
            clickhouse_password: clickhouse_password(vars)?,
            python: get("V7_PYTHON", "python3"),
            log_format,
            python_path: None,
            flush_interval,
            batch_size,
            stats_cache_ttl,
        })
    }
}

/// An integer in `min..=max`; `None` when the value is empty (the caller's default applies).
fn parse_int(var: &str, value: &str, min: u64, max: u64) -> Result<Option<u64>> {
    if value.is_empty() {
        return Ok(None);
    }
    match value.parse::<u64>() {
        Ok(v) if (min..=max).contains(&v) => Ok(Some(v)),
        _ => bail!("{var} must be an integer from {min} to {max}, got {value:?}"),
    }
}

/// `V7_CLICKHOUSE_PASSWORD_FILE` (a podman secret mounted as a file: it never shows in
/// `podman inspect`, unlike an environment variable), else `V7_CLICKHOUSE_PASSWORD`, else none.
/// The password may legitimately contain spaces: taken verbatim, but for one trailing newline.
fn clickhouse_password(vars: &HashMap<String, String>) -> Result<String> {
    match vars.get("V7_CLICKHOUSE_PASSWORD_FILE").filter(|p| !p.trim().is_empty()) {
        Some(path) => {
            let text = std::fs::read_to_string(path.trim())
                .with_context(|| format!("V7_CLICKHOUSE_PASSWORD_FILE={path}: cannot read the password file"))?;
            Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
        }
        None => Ok(vars.get("V7_CLICKHOUSE_PASSWORD").cloned().unwrap_or_default()),
    }
}

/// Parses `host:port`; `:port` means `0.0.0.0:port`.
pub fn parse_addr(s: &str) -> Result<SocketAddr> {
    let s = s.trim();
    let full = if s.starts_with(':') { format!("0.0.0.0{s}") } else { s.to_string() };
    full.parse::<SocketAddr>().with_context(|| format!("{s:?} is not an address like 0.0.0.0:9100"))
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("grpc_addr", &self.grpc_addr)
            .field("http_addr", &self.http_addr)
            .field("nats_url", &self.nats_url)
            .field("nats_subject", &self.nats_subject)
            .field("nats_stream", &self.nats_stream)
            .field("nats_consumer", &self.nats_consumer)
            .field("stream_max_bytes", &self.stream_max_bytes)
            .field("stream_max_age", &self.stream_max_age)
            .field("clickhouse_url", &self.clickhouse_url)
            .field("clickhouse_database", &self.clickhouse_database)
            .field("clickhouse_user", &self.clickhouse_user)
            .field("clickhouse_password", &if self.clickhouse_password.is_empty() { "<empty>" } else { "<redacted>" })
            .field("python", &self.python)
            .field("log_format", &self.log_format)
            .field("python_path", &self.python_path)
            .field("flush_interval", &self.flush_interval)
            .field("batch_size", &self.batch_size)
            .field("stats_cache_ttl", &self.stats_cache_ttl)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = Config::from_map(&HashMap::new()).unwrap();
        assert_eq!(c.grpc_addr, "0.0.0.0:50051".parse().unwrap());
        assert_eq!(c.http_addr, "0.0.0.0:9100".parse().unwrap());
        assert_eq!(c.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(c.nats_subject, "v7.events");
        assert_eq!(c.clickhouse_url, "http://127.0.0.1:8123");
        assert_eq!(c.clickhouse_database, "v7");
        assert_eq!(c.clickhouse_user, "default");
        assert_eq!(c.clickhouse_password, "");
        assert_eq!(c.python, "python3");
        assert_eq!(c.log_format, LogFormat::Json);
        assert_eq!(c.python_path, None);
        assert_eq!(c.nats_stream, "V7_EVENTS");
        assert_eq!(c.nats_consumer, "analytics-engine");
        assert_eq!(c.stream_max_bytes, 1_073_741_824);
        assert_eq!(c.stream_max_age, Duration::from_secs(604_800));
        assert_eq!(c.batch_size, 500);
        assert_eq!(c.flush_interval, Duration::from_millis(200));
        assert_eq!(c.stats_cache_ttl, Duration::from_millis(1000));
    }

    #[test]
    fn overrides_are_read() {
        let c = Config::from_map(&map(&[
            ("V7_GRPC_ADDR", "127.0.0.1:6000"),
            ("V7_HTTP_ADDR", ":7000"),
            ("V7_NATS_URL", "nats://nats:4222"),
            ("V7_NATS_SUBJECT", "x.y"),
            ("V7_CLICKHOUSE_URL", "http://ch:8123/"),
            ("V7_CLICKHOUSE_DATABASE", "other_db"),
            ("V7_CLICKHOUSE_USER", "u"),
            ("V7_CLICKHOUSE_PASSWORD", " p w "),
            ("V7_PYTHON", "/usr/bin/python3.11"),
            ("V7_LOG_FORMAT", "TEXT"),
            ("V7_NATS_STREAM", "EVENTS_2"),
            ("V7_NATS_CONSUMER", "ae-2"),
            ("V7_STREAM_MAX_BYTES", "4096"),
            ("V7_STREAM_MAX_AGE_SECS", "0"),
            ("V7_INGEST_BATCH", "50"),
            ("V7_INGEST_FLUSH_MS", "1000"),
            ("V7_STATS_CACHE_MS", "0"),
        ]))
        .unwrap();
        assert_eq!(c.nats_stream, "EVENTS_2");
        assert_eq!(c.nats_consumer, "ae-2");
        assert_eq!(c.stream_max_bytes, 4096);
        assert_eq!(c.stream_max_age, Duration::ZERO);
        assert_eq!(c.batch_size, 50);
        assert_eq!(c.flush_interval, Duration::from_secs(1));
        assert_eq!(c.stats_cache_ttl, Duration::ZERO);
        assert_eq!(c.grpc_addr, "127.0.0.1:6000".parse().unwrap());
        assert_eq!(c.http_addr, "0.0.0.0:7000".parse().unwrap());
        assert_eq!(c.nats_url, "nats://nats:4222");
        assert_eq!(c.nats_subject, "x.y");
        assert_eq!(c.clickhouse_url, "http://ch:8123");
        assert_eq!(c.clickhouse_database, "other_db");
        assert_eq!(c.clickhouse_user, "u");
        assert_eq!(c.clickhouse_password, " p w ");
        assert_eq!(c.python, "/usr/bin/python3.11");
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn the_password_file_wins_and_keeps_inner_spaces() {
        let dir = std::env::temp_dir().join(format!("v7-ae-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("clickhouse-password");
        std::fs::write(&file, " s3 cret\n").unwrap();
        let path = file.display().to_string();
        let c = Config::from_map(&map(&[("V7_CLICKHOUSE_PASSWORD_FILE", &path), ("V7_CLICKHOUSE_PASSWORD", "env")]))
            .unwrap();
        assert_eq!(c.clickhouse_password, " s3 cret", "one trailing newline dropped, nothing else");
        let missing = dir.join("absent").display().to_string();
        let e = Config::from_map(&map(&[("V7_CLICKHOUSE_PASSWORD_FILE", &missing)])).unwrap_err();
        assert!(format!("{e:#}").contains("V7_CLICKHOUSE_PASSWORD_FILE"), "{e:#}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn empty_values_mean_default() {
        let c = Config::from_map(&map(&[("V7_GRPC_ADDR", ""), ("V7_LOG_FORMAT", " ")])).unwrap();
        assert_eq!(c.grpc_addr.port(), 50051);
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn invalid_values_are_rejected() {
        assert!(Config::from_map(&map(&[("V7_HTTP_ADDR", "nope")])).is_err());
        assert!(Config::from_map(&map(&[("V7_LOG_FORMAT", "xml")])).is_err());
        assert!(Config::from_map(&map(&[("V7_CLICKHOUSE_DATABASE", "a;drop")])).is_err());
        assert!(Config::from_map(&map(&[("V7_CLICKHOUSE_URL", "https://ch:8443")])).is_err());
        for (var, bad) in [
            ("V7_NATS_STREAM", "v7.events"),
            ("V7_NATS_STREAM", "A B"),
            ("V7_NATS_CONSUMER", "a/b"),
            ("V7_NATS_CONSUMER", "x>"),
            ("V7_STREAM_MAX_BYTES", "0"),
            ("V7_STREAM_MAX_BYTES", "-1"),
            ("V7_STREAM_MAX_AGE_SECS", "1e3"),
            ("V7_INGEST_BATCH", "0"),
            ("V7_INGEST_BATCH", "10001"),
            ("V7_INGEST_FLUSH_MS", "5"),
            ("V7_STATS_CACHE_MS", "x"),
        ] {
            let e = Config::from_map(&map(&[(var, bad)])).unwrap_err();
            assert!(format!("{e:#}").contains(var), "{var}={bad}: {e:#}");
        }
    }

    #[test]
    fn debug_never_shows_the_password() {
        let c = Config::from_map(&map(&[("V7_CLICKHOUSE_PASSWORD", "hunter2")])).unwrap();
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("<redacted>"));
    }
}
