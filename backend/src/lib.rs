//! V7 backend: accepts events over HTTP (`POST /api/events`) and gRPC (`v7.ingest.v1.Ingest`),
//! validates them (docs/contracts.md) and stores them in a NATS JetStream stream, answering only
//! once they are acknowledged; serves `/api/stats` and `/api/health` with analytics-engine over
//! gRPC. `main.rs` is a thin wrapper around [`serve`].
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub mod app;
pub mod config;
pub mod event;
pub mod grpc;
pub mod health;
pub mod http;
pub mod jetstream;
pub mod metrics;
pub mod send_event;

pub use app::AppState;
pub use config::{Config, LogFormat};

/// Generated from `backend/proto/ingest.proto` and `analytics-engine/proto/analytics.proto`.
#[allow(clippy::all, clippy::pedantic)]
pub mod proto {
    pub mod ingest {
        tonic::include_proto!("v7.ingest.v1");
    }
    pub mod analytics {
        tonic::include_proto!("v7.analytics.v1");
    }
}

/// How long in-flight requests may take to finish after the shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// Both listeners bound, nothing served yet (so callers, e.g. tests, can learn the ports).
pub struct Server {
    state: Arc<AppState>,
    http: TcpListener,
    grpc: TcpListener,
}

impl Server {
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        let http = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding HTTP on {} (V7_HTTP_ADDR)", config.http_addr))?;
        let grpc = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding gRPC on {} (V7_GRPC_ADDR)", config.grpc_addr))?;
        let state = AppState::new(config)?;
        Ok(Server { state, http, grpc })
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().expect("bound listener has an address")
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().expect("bound listener has an address")
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Serves HTTP and gRPC until `shutdown` completes (or one server fails), lets in-flight
    /// requests finish (at most [`DRAIN_TIMEOUT`]), then flushes NATS (when connected).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let Server { state, http, grpc } = self;
        let http_addr = http.local_addr()?;
        let grpc_addr = grpc.local_addr()?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);

        {
            let stop_tx = stop_tx.clone();
            tokio::spawn(async move {
                shutdown.await;
                let _ = stop_tx.send(true);
            });
        }
        tokio::spawn(app::connect_nats(state.clone(), stop_rx.clone()));

        let stopped = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };

        let http_server = {
            let router = http::router(state.clone());
            let stop_tx = stop_tx.clone();
            let signal = stopped(stop_rx.clone());
            async move {
                let res = axum::serve(http, router).with_graceful_shutdown(signal).await;
                let _ = stop_tx.send(true);
                res.context("HTTP server")
            }
        };
        let grpc_server = {
            let svc = grpc::service(state.clone());
            let stop_tx = stop_tx.clone();
            let signal = stopped(stop_rx.clone());
            async move {
                let res = tonic::transport::Server::builder()
                    .add_service(svc)
                    .serve_with_incoming_shutdown(grpc_incoming(grpc), signal)
                    .await;
                let _ = stop_tx.send(true);
                res.context("gRPC server")
            }
        };

        tracing::info!(%http_addr, %grpc_addr, nats = %state.config.nats_url,
            subject = %state.config.nats_subject, stream = %state.config.nats_stream, analytics = %state.config.analytics_url, "backend listening");

        let both = async { tokio::join!(http_server, grpc_server) };
        let deadline = async {
            stopped(stop_rx.clone()).await;
            tracing::info!("shutting down: draining HTTP and gRPC");
            tokio::time::sleep(DRAIN_TIMEOUT).await;
        };
        let result = tokio::select! {
            (h, g) = both => h.and(g),
            _ = deadline => {
                tracing::warn!(?DRAIN_TIMEOUT, "requests still running after the drain timeout; closing");
                Ok(())
            }
        };

        // Every answered event is already stored (acked), so the flush only pushes out what
        // is still queued (e.g. acks of in-flight fetches); with no connection there is nothing
        // it could do but wait for its timeout.
        let connected = |c: &async_nats::Client| c.connection_state() == async_nats::connection::State::Connected;
        if let Some(client) = state.nats().filter(|c| connected(c)) {
            match tokio::time::timeout(Duration::from_secs(5), client.flush()).await {
                Ok(Ok(())) => tracing::info!("NATS flushed"),
                Ok(Err(e)) => tracing::warn!(error = %e, "NATS flush failed"),
                Err(_) => tracing::warn!("NATS flush timed out"),
            }
        }
        tracing::info!("backend stopped");
        result
    }
}

/// Binds both servers from `config` and serves until `shutdown` completes.
pub async fn serve(config: Config, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    Server::bind(config).await?.run(shutdown).await
}

/// Installs the tracing subscriber: `V7_LOG_FORMAT` json|text, level from `RUST_LOG`.
pub fn init_tracing(config: &Config) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(&config.log_filter).unwrap_or_else(|e| {
        eprintln!("RUST_LOG={:?} is invalid ({e}); using info", config.log_filter);
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// Completes on SIGTERM or Ctrl-C (SIGINT).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("Ctrl-C received"),
        _ = term => tracing::info!("SIGTERM received"),
    }
}

/// The gRPC listener's connections with TCP_NODELAY. tonic leaves it unset for a listener it did
/// not bind, and without it a second answer on a connection waits for the peer's delayed ACK
/// (about 40 ms on Linux): measured on back-to-back GetStats/PublishBatch calls by
/// xtask/bench/ingest.sh.
fn grpc_incoming(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true))
}
