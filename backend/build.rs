//! Compiles backend's own gRPC API (`proto/ingest.proto`, server side) and the
//! analytics-engine's API (`../analytics-engine/proto/analytics.proto`, client side; the server
//! side is generated too so tests can run a stand-in). The protos live only in those two places.
use std::env;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let ingest_dir = manifest_dir.join("proto");
    let analytics_dir = manifest_dir.join("..").join("analytics-engine").join("proto");
    let ingest = ingest_dir.join("ingest.proto");
    let analytics = analytics_dir.join("analytics.proto");

    println!("cargo:rerun-if-changed={}", ingest.display());
    println!("cargo:rerun-if-changed={}", analytics.display());
    println!("cargo:rerun-if-env-changed=PROTOC");

    for p in [&ingest, &analytics] {
        if !p.is_file() {
            panic!(
                "proto file not found: {} (build from the repository root so both proto dirs are present)",
                p.display()
            );
        }
    }

    if env::var_os("PROTOC").is_none() && find_in_path("protoc").is_none() {
        panic!(
            "protoc (the Protocol Buffers compiler) was not found and PROTOC is not set. \
             Install it: `apt-get install protobuf-compiler` (Debian/Ubuntu) or \
             `apk add protobuf-dev` (Alpine), or set PROTOC=/path/to/protoc."
        );
    }

    tonic_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_protos(&[ingest, analytics], &[ingest_dir, analytics_dir])
        .unwrap_or_else(|e| panic!("compiling protos failed: {e}"));
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| is_executable(candidate))
}

fn is_executable(p: &Path) -> bool {
    p.is_file()
}
