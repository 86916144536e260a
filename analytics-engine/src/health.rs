//! The engine's dependencies, checked for the `Health` RPC (the dashboard's health view, via
//! backend's `GET /api/health`) and `/readyz`: `nats` (connected and the durable consumer
//! answers `CONSUMER.INFO`), `clickhouse` (`SELECT 1`; the detail says whether the schema is
//! ready) and `python` (the statistics component answers `ping`).
//!
//! The checks run concurrently, each bounded by [`CHECK_TIMEOUT`], and are coalesced for a second:
//! many dashboards asking at once cost one round of checks.

use std::sync::Arc;
use std::time::Duration;

use crate::coalesce::Coalescer;
use crate::Shared;

/// Bound of each check. They run concurrently, so `Health` answers within about this long even
/// when a dependency hangs: below backend's 2 s probe, which must not mistake a slow dependency
/// for a dead engine.
pub const CHECK_TIMEOUT: Duration = Duration::from_millis(1500);
/// How long one round of checks is reused.
pub const HEALTH_TTL: Duration = Duration::from_secs(1);

/// One dependency's state (the `DependencyHealth` message).
#[derive(Debug, Clone, PartialEq)]
pub struct Dependency {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
}

/// The last round of checks, plus what `/readyz` needs beyond them.
#[derive(Debug, Clone)]
pub struct Report {
    pub dependencies: Vec<Dependency>,
    /// ClickHouse has the current schema (created or migrated).
    pub schema_ready: bool,
}

impl Report {
    pub fn get(&self, name: &str) -> Option<&Dependency> {
        self.dependencies.iter().find(|d| d.name == name)
    }
}

pub type HealthCache = Coalescer<(), Arc<Report>, ()>;

pub fn cache() -> HealthCache {
    Coalescer::new(HEALTH_TTL)
}

/// The current report (at most [`HEALTH_TTL`] old).
pub async fn report(shared: &Arc<Shared>) -> Arc<Report> {
    let s = shared.clone();
    let r = shared.health.get((), move || async move { Ok::<_, ()>(Arc::new(check_all(&s).await)) }).await;
    r.expect("health checks never fail, they report")
}

/// Runs every check now.
pub async fn check_all(shared: &Shared) -> Report {
    let (nats, clickhouse, python) = tokio::join!(nats(shared), clickhouse(shared), python(shared));
    Report { dependencies: vec![nats, clickhouse, python], schema_ready: shared.schema.is_ready() }
}

async fn nats(shared: &Shared) -> Dependency {
    let fail = |detail: String| Dependency { name: "nats", ok: false, detail };
    if let Err(why) = shared.nats.ready() {
        return fail(why);
    }
    let Some(mut consumer) = shared.nats.consumer() else { return fail("consumer not bound".into()) };
    match tokio::time::timeout(CHECK_TIMEOUT, consumer.info()).await {
        Err(_) => fail(format!("consumer info: no answer within {CHECK_TIMEOUT:?}")),
        Ok(Err(e)) => fail(format!("consumer info: {e}")),
        Ok(Ok(info)) => Dependency {
            name: "nats",
            ok: true,
            detail: format!(
                "connected; consumer {} on stream {}: {} events waiting, {} delivered and not yet acknowledged, \
                 {} redelivered",
                info.name, info.stream_name, info.num_pending, info.num_ack_pending, info.num_redelivered
            ),
        },
    }
}

async fn clickhouse(shared: &Shared) -> Dependency {
    match shared.clickhouse.ping(CHECK_TIMEOUT).await {
        Err(e) => Dependency { name: "clickhouse", ok: false, detail: format!("{e:#}") },
        Ok(()) => {
            let schema = if shared.schema.is_ready() {
                "events table ready".to_string()
            } else {
                match shared.schema.error() {
                    Some(e) => format!("events table not ready: {e}"),
                    None => "events table being created or migrated".to_string(),
                }
            };
            Dependency { name: "clickhouse", ok: true, detail: format!("SELECT 1 ok; {schema}") }
        }
    }
}

async fn python(shared: &Shared) -> Dependency {
    match shared.python.ping(CHECK_TIMEOUT).await {
        Ok(version) => Dependency {
            name: "python",
            ok: true,
            detail: format!("v7stats {version} answered ping (reference statistics; GetStats does not depend on it)"),
        },
        Err(e) => Dependency { name: "python", ok: false, detail: format!("{e:#}") },
    }
}
