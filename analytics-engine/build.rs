//! Compiles `proto/analytics.proto` (the only definition of the analytics API) with tonic-build.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=proto/analytics.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");

    let protoc = std::env::var_os("PROTOC").unwrap_or_else(|| "protoc".into());
    let found = Command::new(&protoc).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    if !found {
        panic!(
            "protoc (the Protocol Buffers compiler) was not found (tried {:?}; set PROTOC to its path). \
             Install it: `apt-get install protobuf-compiler` (Debian/Ubuntu) or `apk add protobuf-dev` (Alpine).",
            Path::new(&protoc)
        );
    }

    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&["proto/analytics.proto"], &["proto"])
        .unwrap_or_else(|e| panic!("compiling proto/analytics.proto failed: {e}"));
}
