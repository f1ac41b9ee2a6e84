//! conflux-auth (being written).
