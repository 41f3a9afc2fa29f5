//! Exec probes and image HEALTHCHECKs through a real in-process CRI runtime (written next).

fn main() {}
