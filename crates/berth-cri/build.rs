//! Compiles berth's CRI v1 subset (proto/cri/api.proto) into tonic clients and server traits.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../proto/cri");
    let proto = format!("{proto_dir}/api.proto");
    println!("cargo:rerun-if-changed={proto}");
    tonic_prost_build::configure().compile_protos(&[proto.as_str()], &[proto_dir])?;
    Ok(())
}
