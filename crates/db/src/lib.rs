//! conflux-db (being written).
