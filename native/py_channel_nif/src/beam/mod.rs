//! What touches the BEAM and never Python: the channel as a resource, how a term is stored in
//! it, the channel NIFs, channel owners, and waking readers parked on it.

pub mod answer_look;
pub mod atoms;
pub mod caller;
mod channel_nifs;
pub mod channel_resource;
pub mod env_pool;
pub mod flat_chunks;
pub mod flat_term;
pub mod frame;
pub mod kept_bytes;
mod owners;
mod park_watch;
mod raw_nif;
pub mod task_wake;
pub mod term_scan;

pub use owners::open_watch_type as open_owner_watch_type;
