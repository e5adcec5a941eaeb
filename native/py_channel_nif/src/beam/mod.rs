//! What touches the BEAM and never Python: the channel as a resource, how a term is stored in
//! it, the channel NIFs, and waking readers parked on it.

pub mod atoms;
mod channel_nifs;
pub mod channel_resource;
pub mod frame;
pub mod task_wake;
mod term_scan;
