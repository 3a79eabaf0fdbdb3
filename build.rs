//! Compiles `proto/` with protox (pure Rust, no system `protoc`) and generates the tonic services.
//! The file descriptor set is also written to `OUT_DIR` for server reflection.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/loanledger/v1/common.proto",
        "proto/loanledger/v1/registry.proto",
        "proto/loanledger/v1/loans.proto",
        "proto/loanledger/v1/audit.proto",
        "proto/loanledger/v1/subsidy.proto",
        "proto/loanledger/v1/risk_fund.proto",
        "proto/loanledger/v1/pools.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    // sqlx's `migrate!` embeds the files of migrations/ as it finds them at compile time: a new
    // migration must rebuild the crate.
    println!("cargo:rerun-if-changed=migrations");
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("loanledger_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    // The services' own codec (src/api/codec.rs): a message prost cannot decode is
    // INVALID_ARGUMENT naming its field, not tonic's INTERNAL.
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::api::codec::Codec")
        .compile_fds(fds)?;
    Ok(())
}
