//! `berth-net`: pod network addressing shared by the controllers (node CIDRs) and the runtime (pod IPs).
