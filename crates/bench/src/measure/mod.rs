//! The measuring instruments every workload shares: open-loop scheduling, HDR latency
//! histograms with repeated runs, the recorder deliveries land in, and CPU and memory read
//! from `/proc`.

pub mod cpu;
pub mod latency;
pub mod recorder;
pub mod schedule;
