//! `backend` runs the servers; `backend healthcheck` probes /healthz (the image's HEALTHCHECK);
//! `backend send-event` publishes one event over gRPC (proves the ingestion port accepts it).
use std::process::ExitCode;

use backend::Config;

const USAGE: &str = "usage: backend [healthcheck | send-event [--addr URL] [--kind KIND] [--value NUMBER] [--source TEXT]]\n\
  (no argument)  serve HTTP (V7_HTTP_ADDR) and gRPC (V7_GRPC_ADDR) until SIGTERM/Ctrl-C\n  \
  healthcheck    GET /healthz on 127.0.0.1:<port of V7_HTTP_ADDR>; exit 0 on 200, else 1\n  \
  send-event     gRPC Ingest/Publish one event (5 s timeout) and print the ack; exit 0 when accepted,\n                 \
  1 on failure (cause on stderr), 2 on bad arguments. Defaults: --addr http://127.0.0.1:<port of\n                 \
  V7_GRPC_ADDR>, --kind grpc_probe, --value 1, --source backend-send-event\n\
  configuration: see backend/README.md and docs/contracts.md";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("backend: invalid configuration: {e}");
            return ExitCode::FAILURE;
        }
    };
    match args.first().map(String::as_str) {
        None => run(config),
        Some("healthcheck") => healthcheck::exit_code("backend", config.http_addr.port()),
        Some("send-event") => backend::send_event::exit_code(args[1..].to_vec(), config.grpc_addr.port()),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("backend: unknown argument {other:?}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(config: Config) -> ExitCode {
    backend::init_tracing(&config);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("backend: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(backend::serve(config, backend::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "backend failed");
            ExitCode::FAILURE
        }
    }
}
