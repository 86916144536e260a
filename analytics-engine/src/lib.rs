//! V7 analytics-engine: consumes the events from a JetStream durable consumer, stores each
//! exactly once in effect in ClickHouse, and serves statistics computed by ClickHouse over gRPC.
//!
//! [`serve`] runs everything in-process (main.rs and the integration tests use it).

pub mod clickhouse;
pub mod coalesce;
pub mod config;
pub mod event;
pub mod grpc;
pub mod health;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod python;
pub mod stats;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use config::{Config, LogFormat};

/// Generated from `proto/analytics.proto`.
pub mod pb {
    tonic::include_proto!("v7.analytics.v1");
}

/// State shared by the gRPC and HTTP handlers.
pub struct Shared {
    pub metrics: Arc<metrics::Metrics>,
    pub clickhouse: clickhouse::ClickHouse,
    pub schema: Arc<ingest::SchemaState>,
    pub python: Arc<python::PythonStats>,
    pub nats: Arc<ingest::NatsState>,
    pub stats: stats::Stats,
    pub health: health::HealthCache,
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Installs the global tracing subscriber: JSON or text lines, level from `RUST_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.with_ansi(false).try_init(),
    };
}

/// The engine with its listening sockets bound (so callers can learn the ports first).
pub struct Server {
    config: Config,
    http: TcpListener,
    grpc: TcpListener,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds the HTTP and gRPC ports. Nothing else is contacted yet.
    pub async fn bind(config: Config) -> Result<Server> {
        let http = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding HTTP on {}", config.http_addr))?;
        let grpc = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding gRPC on {}", config.grpc_addr))?;
        let metrics = Arc::new(metrics::Metrics::default());
        let clickhouse = clickhouse::ClickHouse::new(
            &config.clickhouse_url,
            &config.clickhouse_database,
            &config.clickhouse_user,
            &config.clickhouse_password,
        )?;
        let shared = Arc::new(Shared {
            stats: stats::Stats::new(clickhouse.clone(), metrics.clone(), config.stats_cache_ttl),
            clickhouse,
            schema: Arc::new(ingest::SchemaState::default()),
            python: Arc::new(python::PythonStats::new(
                config.python.clone(),
                config.python_path.clone(),
                metrics.clone(),
            )),
            nats: Arc::new(ingest::NatsState::default()),
            health: health::cache(),
            metrics,
        });
        Ok(Server { config, http, grpc, shared })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound socket")
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound socket")
    }

    /// State shared with the handlers (tests read metrics and the python process from it).
    pub fn shared(&self) -> Arc<Shared> {
        self.shared.clone()
    }

    /// Runs until `shutdown` completes, then stops fetching, stores and acknowledges the batch
    /// in hand, stops the servers and the Python process.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
        let Server { config, http, grpc, shared } = self;
        tracing::info!(
            http = %http.local_addr()?, grpc = %grpc.local_addr()?,
            nats_url = %config.nats_url, subject = %config.nats_subject,
            stream = %config.nats_stream, consumer = %config.nats_consumer,
            clickhouse_url = %config.clickhouse_url, database = %config.clickhouse_database,
            python = %config.python,
            "analytics-engine starting"
        );
        let (stop_tx, stop_rx) = watch::channel(false);

        let python_task = tokio::spawn(shared.python.clone().supervise(stop_rx.clone()));
        let schema_task =
            tokio::spawn(ingest::run_schema(shared.clickhouse.clone(), shared.schema.clone(), stop_rx.clone()));
        let ingest = ingest::Ingest {
            settings: ingest::IngestSettings::from_config(&config),
            nats: shared.nats.clone(),
            ch: shared.clickhouse.clone(),
            schema: shared.schema.clone(),
            metrics: shared.metrics.clone(),
        };
        let ingest_task = tokio::spawn(ingest.run(stop_rx.clone()));

        let mut http_stop = stop_rx.clone();
        let router = http::router(shared.clone());
        let http_task = tokio::spawn(async move {
            axum::serve(http, router).with_graceful_shutdown(async move { stopped(&mut http_stop).await }).await
        });
        let mut grpc_stop = stop_rx.clone();
        let svc = pb::analytics_server::AnalyticsServer::new(grpc::AnalyticsService { shared: shared.clone() });
        let grpc_task = tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(svc)
                .serve_with_incoming_shutdown(grpc_incoming(grpc), async move { stopped(&mut grpc_stop).await }),
        );

        // Run until asked to stop, or until a server dies.
        let mut http_task = http_task;
        let mut grpc_task = grpc_task;
        let early: Option<anyhow::Error> = tokio::select! {
            _ = shutdown => None,
            r = &mut http_task => Some(anyhow::anyhow!("HTTP server stopped: {r:?}")),
            r = &mut grpc_task => Some(anyhow::anyhow!("gRPC server stopped: {r:?}")),
        };
        tracing::info!("shutting down: stop fetching, store and acknowledge the batch in hand, stop python");
        let _ = stop_tx.send(true);

        let _ = ingest_task.await;
        let _ = schema_task.await;
        if let Some(client) = shared.nats.client.write().expect("nats state lock").take() {
            drop(client);
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            if !http_task.is_finished() {
                let _ = (&mut http_task).await;
            }
            if !grpc_task.is_finished() {
                let _ = (&mut grpc_task).await;
            }
        })
        .await;
        let _ = python_task.await;
        tracing::info!("analytics-engine stopped");
        match early {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// Binds and runs the engine until `shutdown` completes.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> Result<()> {
    Server::bind(config).await?.run(shutdown).await
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

/// Resolves once the stop flag is true (or its sender is gone). Holds no lock across awaits.
pub(crate) async fn stopped(rx: &mut watch::Receiver<bool>) {
    let _ = rx.wait_for(|s| *s).await;
}

/// The gRPC listener's connections with TCP_NODELAY. tonic leaves it unset for a listener it did
/// not bind, and without it a second answer on a connection waits for the peer's delayed ACK
/// (about 40 ms on Linux): measured on back-to-back GetStats/PublishBatch calls by
/// xtask/bench/ingest.sh.
fn grpc_incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
