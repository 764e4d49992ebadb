//! gRPC status codes, as listed in `doc/statuscodes.md` of the gRPC project.
//!
//! Each code says when ferrogrpc itself produces it, so a caller can tell a
//! library-made status from one the remote application chose.

use std::fmt;

/// A gRPC status code.
///
/// The numeric values are fixed by the protocol. A `grpc-status` received
/// from a peer that is not one of these numbers is read as [`Code::Unknown`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(i32)]
pub enum Code {
    /// Not an error. A [`Status`](crate::Status) returned as an error never
    /// carries this code: the library turns such a value into `Unknown`.
    Ok = 0,
    /// The operation was cancelled, typically by the caller. The library
    /// produces it when the peer resets a stream with `CANCEL`, or when a
    /// client drops a call.
    Cancelled = 1,
    /// Unknown error. The library produces it when a handler panics, when a
    /// peer sends a `grpc-status` value outside the known range, and for
    /// unmapped HTTP statuses.
    Unknown = 2,
    /// The client specified an invalid argument.
    InvalidArgument = 3,
    /// The deadline expired before the operation could complete. The library
    /// produces it on both sides when a call's deadline passes.
    DeadlineExceeded = 4,
    /// Some requested entity was not found.
    NotFound = 5,
    /// The entity that a client attempted to create already exists.
    AlreadyExists = 6,
    /// The caller does not have permission to execute the operation.
    PermissionDenied = 7,
    /// Some resource has been exhausted. The library produces it when a
    /// message exceeds the configured maximum size.
    ResourceExhausted = 8,
    /// The system is not in a state required for the operation.
    FailedPrecondition = 9,
    /// The operation was aborted, typically due to a concurrency issue.
    Aborted = 10,
    /// The operation was attempted past the valid range.
    OutOfRange = 11,
    /// The operation is not implemented or supported. The library produces it
    /// for unknown services and methods.
    Unimplemented = 12,
    /// Internal error: an invariant of the protocol was broken. The library
    /// produces it for malformed messages, bad framing, missing trailers and
    /// protocol errors.
    Internal = 13,
    /// The service is currently unavailable. The library produces it when a
    /// connection cannot be made or is lost; such calls may be retried.
    Unavailable = 14,
    /// Unrecoverable data loss or corruption.
    DataLoss = 15,
    /// The request does not have valid authentication credentials.
    Unauthenticated = 16,
}

impl Code {
    /// Every code, in numeric order.
    pub const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code for a numeric value; values outside `0..=16` become `Unknown`.
    pub fn from_i32(value: i32) -> Code {
        usize::try_from(value)
            .ok()
            .and_then(|i| Code::ALL.get(i).copied())
            .unwrap_or(Code::Unknown)
    }

    /// Parses the ASCII decimal form used in the `grpc-status` header.
    /// Returns `None` when the text is not a decimal number.
    pub fn from_ascii(text: &[u8]) -> Option<Code> {
        if text.is_empty() || text.len() > 10 || !text.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let mut value: i64 = 0;
        for &b in text {
            value = value * 10 + i64::from(b - b'0');
        }
        Some(i32::try_from(value).map_or(Code::Unknown, Code::from_i32))
    }

    /// The numeric value.
    pub fn as_i32(self) -> i32 {
        self as i32
    }

    /// The decimal text of the numeric value, as sent in `grpc-status`.
    pub fn as_ascii(self) -> &'static str {
        const TEXT: [&str; 17] = [
            "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15",
            "16",
        ];
        TEXT[self as usize]
    }

    /// The canonical upper-case name, as in the gRPC documentation.
    pub fn name(self) -> &'static str {
        match self {
            Code::Ok => "OK",
            Code::Cancelled => "CANCELLED",
            Code::Unknown => "UNKNOWN",
            Code::InvalidArgument => "INVALID_ARGUMENT",
            Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
            Code::NotFound => "NOT_FOUND",
            Code::AlreadyExists => "ALREADY_EXISTS",
            Code::PermissionDenied => "PERMISSION_DENIED",
            Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
            Code::FailedPrecondition => "FAILED_PRECONDITION",
            Code::Aborted => "ABORTED",
            Code::OutOfRange => "OUT_OF_RANGE",
            Code::Unimplemented => "UNIMPLEMENTED",
            Code::Internal => "INTERNAL",
            Code::Unavailable => "UNAVAILABLE",
            Code::DataLoss => "DATA_LOSS",
            Code::Unauthenticated => "UNAUTHENTICATED",
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl From<i32> for Code {
    fn from(value: i32) -> Code {
        Code::from_i32(value)
    }
}

impl From<Code> for i32 {
    fn from(code: Code) -> i32 {
        code as i32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_round_trip() {
        for code in Code::ALL {
            assert_eq!(Code::from_i32(code.as_i32()), code);
            assert_eq!(Code::from_ascii(code.as_ascii().as_bytes()), Some(code));
        }
    }

    #[test]
    fn out_of_range_is_unknown() {
        assert_eq!(Code::from_i32(17), Code::Unknown);
        assert_eq!(Code::from_i32(-1), Code::Unknown);
        assert_eq!(Code::from_ascii(b"99999999999"), None);
        assert_eq!(Code::from_ascii(b"4294967296"), Some(Code::Unknown));
        assert_eq!(Code::from_ascii(b""), None);
        assert_eq!(Code::from_ascii(b"1x"), None);
        assert_eq!(Code::from_ascii(b"-1"), None);
    }
}
