//! Connectivity states (stub; being written).
