//! conflux-http (being written).
