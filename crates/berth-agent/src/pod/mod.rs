//! Pod workers: one per Pod bound to this node.
