//! Fault-injecting redb storage (being written).
