//! Target URIs (stub; being written).
