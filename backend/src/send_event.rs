//! The `send-event` subcommand: a one-shot gRPC ingestion client, so an operator tool can prove
//! that the gRPC port accepts an event. Sends one `v7.ingest.v1.Ingest/Publish` (connect and
//! answer within [`TIMEOUT`]) and reports the ack, or why there is none, on one line.
use std::process::ExitCode;
use std::time::Duration;

use tonic::transport::Endpoint;

use crate::app::{one_line, status_text};
use crate::proto::ingest::ingest_client::IngestClient;
use crate::proto::ingest::{Event as PbEvent, PublishAck};

/// Connecting and the `Publish` call together must finish within this.
pub const TIMEOUT: Duration = Duration::from_secs(5);
pub const DEFAULT_KIND: &str = "grpc_probe";
pub const DEFAULT_VALUE: f64 = 1.0;
pub const DEFAULT_SOURCE: &str = "backend-send-event";
pub const SYNOPSIS: &str = "backend send-event [--addr URL] [--kind KIND] [--value NUMBER] [--source TEXT]";

/// What to send and where.
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    /// `http://HOST:PORT` of the gRPC server (no TLS in this build).
    pub addr: String,
    pub kind: String,
    pub value: f64,
    pub source: String,
}

impl Args {
    /// The defaults: `http://127.0.0.1:<grpc_port>` (the port of `V7_GRPC_ADDR`, as `healthcheck`
    /// uses the port of `V7_HTTP_ADDR`), kind `grpc_probe`, value 1, source `backend-send-event`.
    pub fn defaults(grpc_port: u16) -> Args {
        Args {
            addr: format!("http://127.0.0.1:{grpc_port}"),
            kind: DEFAULT_KIND.to_string(),
            value: DEFAULT_VALUE,
            source: DEFAULT_SOURCE.to_string(),
        }
    }

    /// Parses the arguments after `send-event` (`--flag VALUE`, the last of a repeated flag
    /// wins). The event itself is validated by the server, not here.
    pub fn parse(args: impl IntoIterator<Item = String>, grpc_port: u16) -> Result<Args, String> {
        let mut out = Args::defaults(grpc_port);
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let slot = match flag.as_str() {
                "--addr" => &mut out.addr,
                "--kind" => &mut out.kind,
                "--source" => &mut out.source,
                "--value" => {
                    let v = args.next().ok_or("--value needs a NUMBER")?;
                    out.value = v.trim().parse().map_err(|_| format!("--value: expected a number, got {v:?}"))?;
                    continue;
                }
                other => return Err(format!("unknown argument {other:?}")),
            };
            *slot = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        }
        if !out.addr.starts_with("http://") || Endpoint::from_shared(out.addr.clone()).is_err() {
            return Err(format!("--addr: expected http://HOST:PORT, got {:?}", out.addr));
        }
        Ok(out)
    }
}

/// Publishes one event to `args.addr`. Errors are one line and name the address:
/// `connect http://127.0.0.1:1: transport error: tcp connect error: Connection refused (os error 111)`,
/// `http://127.0.0.1:50053 answered Unavailable: nats: not connected to nats://127.0.0.1:4222`.
pub async fn send(args: &Args) -> Result<PublishAck, String> {
    let addr = &args.addr;
    let endpoint = Endpoint::from_shared(addr.clone()).map_err(|e| format!("--addr {addr:?}: {e}"))?;
    let event = PbEvent {
        kind: args.kind.clone(),
        value: args.value,
        source: args.source.clone(),
        attributes: Default::default(),
        ts_unix_ms: 0,
        id: String::new(),
    };
    let call = async {
        let channel = endpoint.connect().await.map_err(|e| format!("connect {addr}: {}", error_chain(&e)))?;
        IngestClient::new(channel)
            .publish(event)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|status| format!("{addr} answered {}", one_line(&status_text(&status))))
    };
    tokio::time::timeout(TIMEOUT, call).await.unwrap_or_else(|_| Err(format!("{addr}: no answer within {TIMEOUT:?}")))
}

/// Runs the subcommand: one line on stdout and exit 0 when the event was accepted; one line on
/// stderr and exit 1 when not; a usage error and exit 2 on bad arguments.
pub fn exit_code(args: impl IntoIterator<Item = String>, grpc_port: u16) -> ExitCode {
    let args = match Args::parse(args, grpc_port) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("backend send-event: {e} (usage: {SYNOPSIS})");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("backend send-event: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(send(&args)) {
        Ok(ack) => {
            println!("{}", ack_line(&args, &ack));
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("backend send-event: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `accepted 1 event at http://127.0.0.1:50053: id 0192…` (the stdout line).
pub fn ack_line(args: &Args, ack: &PublishAck) -> String {
    let plural = if ack.accepted == 1 { "" } else { "s" };
    format!("accepted {} event{plural} at {}: id {}", ack.accepted, args.addr, ack.ids.join(","))
}

/// `transport error: tcp connect error: Connection refused (os error 111)`: tonic's own
/// message is only the outermost "transport error".
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    one_line(&parts.join(": "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        Args::parse(args.iter().map(|s| s.to_string()), 50053)
    }

    #[test]
    fn defaults_use_the_grpc_port() {
        assert_eq!(
            parse(&[]).unwrap(),
            Args {
                addr: "http://127.0.0.1:50053".into(),
                kind: "grpc_probe".into(),
                value: 1.0,
                source: "backend-send-event".into()
            }
        );
    }

    #[test]
    fn flags_override_the_defaults() {
        let a = parse(&["--addr", "http://backend:9000", "--kind", "k", "--value", "-2.5", "--source", "ops"]).unwrap();
        assert_eq!(a, Args { addr: "http://backend:9000".into(), kind: "k".into(), value: -2.5, source: "ops".into() });
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let cases: [(&[&str], &str); 6] = [
            (&["--value", "abc"], "--value: expected a number"),
            (&["--value"], "--value needs"),
            (&["--kind"], "--kind needs"),
            (&["--nope"], "unknown argument \"--nope\""),
            (&["--addr", "127.0.0.1:50053"], "--addr: expected http://"),
            (&["--addr", "http://bad host"], "--addr: expected http://"),
        ];
        for (args, want) in cases {
            let err = parse(args).unwrap_err();
            assert!(err.starts_with(want), "{args:?}: {err:?}");
            assert!(!err.contains('\n'), "{err:?}");
        }
    }

    #[test]
    fn ack_line_names_the_ids() {
        let a = Args::defaults(1);
        let ack = PublishAck { accepted: 1, ids: vec!["abc".into()] };
        assert_eq!(ack_line(&a, &ack), "accepted 1 event at http://127.0.0.1:1: id abc");
    }
}
