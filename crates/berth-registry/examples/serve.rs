//! A bare registry server taking the same flags as `berth registry`
//! (`[registry] --port P --data-dir D [--registry-auth MODE] [--address A]`), so that
//! `berth bench registry --berth-bin target/release/examples/serve` can measure an optimized
//! registry without an optimized build of the whole `berth` binary.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use std::path::PathBuf;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut port = 5000u16;
    let mut address = "127.0.0.1".to_string();
    let mut data_dir = PathBuf::from(".");
    let mut auth = berth_registry::AuthMode::Push;
    let mut args = std::env::args().skip(1).filter(|a| a != "registry");
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = value.parse()?,
            "--address" => address = value,
            "--data-dir" => data_dir = value.into(),
            "--registry-auth" => auth = value.parse()?,
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    let config = berth_registry::Config { auth, tls: false };
    let registry = berth_registry::Registry::open(&data_dir, config)?;
    let listener = tokio::net::TcpListener::bind((address.as_str(), port)).await?;
    registry.serve(listener).await?;
    Ok(())
}
