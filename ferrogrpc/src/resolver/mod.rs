//! Name resolution (stub; being written).

pub mod target;
