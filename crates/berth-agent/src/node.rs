//! Registration of this machine as a Node.
