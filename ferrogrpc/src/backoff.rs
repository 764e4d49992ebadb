//! Connection backoff (stub; being written).
