//! Compiles `proto/` into Rust types, a tonic client and server, and the file
//! descriptor set that gRPC reflection serves. protoc comes from the
//! `protoc-bin-vendored` crate, so no system protoc is needed.

use std::{env, error::Error, path::PathBuf};

fn main() -> Result<(), Box<dyn Error>> {
    let out_dir = PathBuf::from(env::var("OUT_DIR")?);
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let well_known = protoc_bin_vendored::include_path()?;

    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);

    tonic_prost_build::configure()
        .codec_path("crate::codec::LeanCodec")
        .file_descriptor_set_path(out_dir.join("eventgateway_descriptor.bin"))
        .compile_with_config(
            config,
            &[PathBuf::from("proto/eventgateway/v1/gateway.proto")],
            &[PathBuf::from("proto"), well_known],
        )?;
    Ok(())
}
