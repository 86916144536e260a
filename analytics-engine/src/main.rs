//! `analytics-engine` runs the service; `analytics-engine healthcheck` probes its `/healthz`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("healthcheck") => {
            let addr = std::env::var("V7_HTTP_ADDR").ok().filter(|s| !s.trim().is_empty());
            let addr = addr.as_deref().unwrap_or(analytics_engine::config::DEFAULT_HTTP_ADDR);
            let port = match analytics_engine::config::parse_addr(addr) {
                Ok(a) => a.port(),
                Err(e) => {
                    eprintln!("analytics-engine healthcheck: V7_HTTP_ADDR: {e:#}");
                    return ExitCode::FAILURE;
                }
            };
            healthcheck::exit_code("analytics-engine", port)
        }
        Some("-h") | Some("--help") => {
            println!("usage: analytics-engine [healthcheck]\n\nConfiguration comes from V7_* environment variables (see analytics-engine/README.md).");
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprintln!("unknown argument {other:?}; usage: analytics-engine [healthcheck]");
            ExitCode::from(2)
        }
        None => run(),
    }
}

fn run() -> ExitCode {
    let config = match analytics_engine::Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("analytics-engine: invalid configuration: {e:#}");
            return ExitCode::from(2);
        }
    };
    analytics_engine::init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(analytics_engine::serve(config, analytics_engine::shutdown_signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "analytics-engine failed");
            ExitCode::FAILURE
        }
    }
}
