//! Shared by the appliance (`taphold`) and the backup node (`taphold-backup`):
//! reading a YAML config so that every error names its field and line
//! ([`yaml`]), reading the options after EAL's `--` ([`args`]), what a poll
//! loop does when idle ([`idle`]), proving it does not allocate
//! ([`alloc_count`]), the appliance's persisted epoch ([`epoch`]), and the digest
//! key from the config or a key file of its own ([`key`]).

pub mod alloc_count;
pub mod args;
pub mod epoch;
pub mod idle;
pub mod key;
pub mod metrics;
pub mod yaml;
