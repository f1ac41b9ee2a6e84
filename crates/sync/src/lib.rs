//! conflux-sync (being written).
