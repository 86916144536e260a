//! `backend` runs the servers; `backend healthcheck` probes /healthz (the image's HEALTHCHECK).
use std::process::ExitCode;

use backend::Config;

const USAGE: &str = "usage: backend [healthcheck]\n\
  (no argument)  serve HTTP (V7_HTTP_ADDR) and gRPC (V7_GRPC_ADDR) until SIGTERM/Ctrl-C\n  \
  healthcheck    GET /healthz on 127.0.0.1:<port of V7_HTTP_ADDR>; exit 0 on 200, else 1\n\
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
