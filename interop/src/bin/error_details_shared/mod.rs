//! What `error_details_server` sends and `error_details_client` expects
//! (`interop/run-error-details.sh`); `interop/peers/error_details_common.py`
//! holds the same values for the grpcio peers.
//!
//! A directory module without `main.rs`, so that cargo does not take it for
//! a binary of its own; the two binaries include it with `#[path]`.

use ferrogrpc::{
    errdetails::{
        bad_request::FieldViolation, BadRequest, Detail, Duration, ErrorInfo, LocalizedMessage,
        RetryInfo,
    },
    Code,
};

/// The code of the rich errors (`UnaryCall`, `StreamingOutputCall`).
pub const CODE: Code = Code::InvalidArgument;

/// Their message: not ASCII and with a `%`, so that `grpc-message` is
/// percent-encoded on the wire while the message inside the details is not,
/// and grpcio's `from_call` compares the two.
pub const MESSAGE: &str = "name too short: 100% ungültig";

/// `EmptyCall` fails with this code and details whose code is
/// [`MISMATCH_DETAILS_CODE`].
pub const MISMATCH_CODE: Code = Code::Aborted;

/// The code inside `EmptyCall`'s details.
pub const MISMATCH_DETAILS_CODE: Code = Code::NotFound;

/// The text of the detail of a type outside `google.rpc`: a
/// `google.protobuf.StringValue`.
pub const OPAQUE_TEXT: &str = "opaque detail";

/// The type URL of that detail.
pub const OPAQUE_TYPE_URL: &str = "type.googleapis.com/google.protobuf.StringValue";

/// The expected [`ErrorInfo`].
pub fn error_info() -> ErrorInfo {
    ErrorInfo {
        reason: "NAME_TOO_SHORT".into(),
        domain: "interop.ferrogrpc.test".into(),
        metadata: [
            ("minLength".to_string(), "3".to_string()),
            ("field".to_string(), "name".to_string()),
        ]
        .into(),
    }
}

/// The expected [`BadRequest`].
pub fn bad_request() -> BadRequest {
    BadRequest {
        field_violations: vec![FieldViolation {
            field: "name".into(),
            description: "shorter than 3 characters".into(),
            reason: "TOO_SHORT".into(),
            localized_message: Some(LocalizedMessage {
                locale: "de-DE".into(),
                message: "zu kurz".into(),
            }),
        }],
    }
}

/// The expected [`RetryInfo`]: 1.5 s.
pub fn retry_info() -> RetryInfo {
    RetryInfo {
        retry_delay: Some(Duration {
            seconds: 1,
            nanos: 500_000_000,
        }),
    }
}

/// Every detail, in the order sent: the three standard ones, then the
/// opaque one (prost's `String` is `google.protobuf.StringValue`).
pub fn details() -> Vec<Detail> {
    vec![
        error_info().into(),
        bad_request().into(),
        retry_info().into(),
        Detail::pack(&OPAQUE_TEXT.to_string()),
    ]
}
