//! Rich error details, as gRPC-Go's `errdetails` package and its `status`
//! package's `WithDetails` / `Details`: the standard messages of
//! `google/rpc/error_details.proto` ([`ErrorInfo`], [`RetryInfo`],
//! [`BadRequest`], ...) attached to an error [`Status`] and read back from
//! one.
//!
//! On the wire the details travel as every gRPC implementation sends them:
//! a `google.rpc.Status` ([`pb::Status`]: code, message, and each detail
//! packed in a `google.protobuf.Any` with its type URL,
//! `type.googleapis.com/google.rpc.ErrorInfo` say), encoded in the
//! `grpc-status-details-bin` trailer. So a ferrogrpc server's details are
//! read by gRPC-Go's `status.FromError(err).Details()`, by grpcio's
//! `grpc_status.rpc_status.from_call`, by grpc-java's `StatusProto`, and the
//! other way round.
//!
//! # Usage
//!
//! A server attaches details to the status it fails a call with, in one
//! call ([`Status::with_error_details`], gRPC-Go's `status.WithDetails`):
//!
//! ```
//! use ferrogrpc::{
//!     errdetails::{bad_request::FieldViolation, BadRequest, Duration, ErrorInfo, RetryInfo},
//!     Code, Status,
//! };
//!
//! fn check_name(name: &str) -> Result<(), Status> {
//!     if name.len() >= 3 {
//!         return Ok(());
//!     }
//!     Err(Status::invalid_argument("name too short").with_error_details([
//!         ErrorInfo {
//!             reason: "NAME_TOO_SHORT".into(),
//!             domain: "example.com".into(),
//!             metadata: [("minLength".to_string(), "3".to_string())].into(),
//!         }
//!         .into(),
//!         BadRequest {
//!             field_violations: vec![FieldViolation {
//!                 field: "name".into(),
//!                 description: "shorter than 3 characters".into(),
//!                 ..Default::default()
//!             }],
//!         }
//!         .into(),
//!         RetryInfo {
//!             retry_delay: Some(Duration { seconds: 1, nanos: 0 }),
//!         }
//!         .into(),
//!     ]))
//! }
//! # let status = check_name("x").unwrap_err();
//! # assert_eq!(status.code(), Code::InvalidArgument);
//! # assert_eq!(status.error_details().unwrap().len(), 3);
//! ```
//!
//! A client reads them from the status its call failed with: all of them
//! with [`Status::error_details`] (gRPC-Go's `Details`), or the first of one
//! type with [`Status::error_detail`]:
//!
//! ```
//! use ferrogrpc::{
//!     errdetails::{Detail, ErrorInfo, RetryInfo},
//!     Code, Status,
//! };
//!
//! fn report(status: &Status) {
//!     // One type: `None` when the status has no such detail.
//!     if let Some(retry) = status.error_detail::<RetryInfo>() {
//!         println!("retry after {:?}", retry.retry_delay);
//!     }
//!     // Everything, in the order sent.
//!     match status.error_details() {
//!         Ok(details) => {
//!             for detail in details {
//!                 match detail {
//!                     Detail::ErrorInfo(info) => println!("reason {}", info.reason),
//!                     Detail::BadRequest(bad) => println!("{:?}", bad.field_violations),
//!                     Detail::Other(any) => println!("a {} I do not know", any.type_url),
//!                     _ => {}
//!                 }
//!             }
//!         }
//!         Err(err) => println!("details not readable: {err}"),
//!     }
//! }
//! # let status = Status::unavailable("busy").with_error_details([ErrorInfo {
//! #     reason: "BUSY".into(),
//! #     ..Default::default()
//! # }
//! # .into()]);
//! # report(&status);
//! # assert_eq!(status.error_detail::<ErrorInfo>().unwrap().reason, "BUSY");
//! # assert_eq!(status.error_detail::<RetryInfo>(), None);
//! ```
//!
//! | gRPC-Go | ferrogrpc |
//! |---|---|
//! | `status.New(c, msg).WithDetails(d1, d2)` | `Status::new(c, msg).with_error_details([d1.into(), d2.into()])` |
//! | `s.Details()` | [`s.error_details()`](Status::error_details) |
//! | a type switch over `s.Details()` | [`s.error_detail::<T>()`](Status::error_detail), or a `match` on [`Detail`] |
//! | `s.Proto()` | [`s.details()`](Status::details) (the encoded [`pb::Status`]) |
//! | `errdetails.ErrorInfo`, `errdetails.BadRequest_FieldViolation` | [`ErrorInfo`], [`bad_request::FieldViolation`] |
//!
//! # Design
//!
//! - **Methods on [`Status`], not a separate status type.** The details are
//!   already part of every `Status` (the raw [`Status::details`] bytes that
//!   the transport sends and receives untouched); these methods only encode
//!   and decode them, so a status from any call, interceptor or handler has
//!   them, and nothing else about `Status` changes.
//! - **A [`Detail`] enum of the standard types, plus
//!   [`Other`](Detail::Other).** Reading gives values to `match` on (Rust
//!   has no `any` to type-switch over, as Go does with `Details()`). A
//!   detail of a type this module does not know, an application's own
//!   message say, is kept as its `google.protobuf.Any`, never dropped, and
//!   can be decoded with [`Status::error_detail`] or
//!   [`Any::to_msg`].
//! - **Any `prost::Name` message, no trait of our own.** [`Status::error_detail`]
//!   and [`Detail::pack`] take any message with `prost::Name`, which
//!   prost-build generates with `enable_type_names` (and the standard types
//!   here have), so an application's own detail messages work like the
//!   standard ones. A message whose `Name` has no type URL domain is packed
//!   with `type.googleapis.com/`, as gRPC-Go's `anypb.New`, grpcio and
//!   grpc-java do; reading compares only the full name after the last `/`.
//! - **The encoded code and message are the status's own.**
//!   [`Status::with_error_details`] writes its code and message into the
//!   `google.rpc.Status`, so they always agree with `grpc-status` and
//!   `grpc-message` (grpcio's `from_call` raises an error otherwise, and
//!   gRPC-Go checks the code).
//! - **Reading checks the code, as gRPC-Go does.** A gRPC-Go client (since
//!   1.59) that receives a `google.rpc.Status` whose code is not the
//!   `grpc-status` code turns the status into INTERNAL and drops the
//!   details; one whose details cannot be decoded keeps the plain code and
//!   message. ferrogrpc leaves the received status as it is (its code and
//!   message are `grpc-status` and `grpc-message`, and [`Status::details`]
//!   keeps the raw bytes) and refuses such details when they are read:
//!   [`Status::error_details`] fails with [`DetailsError::CodeMismatch`] or
//!   [`DetailsError::Decode`], and [`Status::error_detail`] gives `None`.
//!   The encoded message is not compared with `grpc-message` (gRPC-Go does
//!   not either).
//! - **A detail that does not decode fails the read.** gRPC-Go puts an
//!   error in the place of such a detail in `Details()`; here
//!   [`Status::error_details`] returns [`DetailsError::Decode`], so that a
//!   peer's broken detail is not mistaken for a missing one, and
//!   [`Status::error_detail`] skips it.
//! - **OK carries no details.** gRPC-Go's `WithDetails` refuses an OK
//!   status; [`Status::with_error_details`] returns it unchanged (a status
//!   returned as an error is never OK anyway: the server sends UNKNOWN).
//! - **Behind the default-on `errdetails` feature**, which needs `prost`
//!   and `prost-types` (for `Any` and `Duration`).
//!
//! The generated code, from the protos vendored in `proto/google/rpc/`, is
//! in [`pb`]; the details' types are re-exported here.

use std::fmt;

use bytes::Bytes;
use prost::{Message, Name};

use crate::{codes::Code, status::Status};

/// The code generated from `google/rpc/status.proto` and
/// `google/rpc/error_details.proto`: [`pb::Status`] (what
/// `grpc-status-details-bin` holds) and the standard details, re-exported
/// in [`errdetails`](self).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    include!("generated/google.rpc.rs");
}

pub use pb::{
    bad_request, help, precondition_failure, quota_failure, BadRequest, DebugInfo, ErrorInfo, Help,
    LocalizedMessage, PreconditionFailure, QuotaFailure, RequestInfo, ResourceInfo, RetryInfo,
};

/// `google.protobuf.Any`, in which details travel packed, and
/// `google.protobuf.Duration` ([`RetryInfo::retry_delay`]), from
/// prost-types: re-exported so that no direct dependency on it is needed.
pub use prost_types::{Any, Duration};

/// The type URL prefix of packed details, when a message's `prost::Name`
/// gives none.
const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

macro_rules! details {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// One error detail: a standard `google.rpc` detail, or
        /// [`Other`](Detail::Other) for any other message.
        ///
        /// Each standard type converts into a `Detail` with `into()`, so
        /// that a list of details of several types can be given to
        /// [`Status::with_error_details`].
        #[derive(Clone, Debug, PartialEq)]
        #[non_exhaustive]
        pub enum Detail {
            $($(#[$doc])* $name($name),)*
            /// A message of another type, kept packed: an application's own
            /// detail, or a standard one this version does not know.
            Other(Any),
        }

        $(
            impl From<$name> for Detail {
                fn from(detail: $name) -> Detail {
                    Detail::$name(detail)
                }
            }
        )*

        impl Detail {
            /// Unpacks a detail: a standard type by its type URL (only the
            /// full name after the last `/` counts), anything else as
            /// [`Other`](Detail::Other).
            ///
            /// # Errors
            /// When the type URL names a standard type but the value does
            /// not decode as one.
            pub fn from_any(any: Any) -> Result<Detail, prost::DecodeError> {
                let name = type_name(&any.type_url);
                $(
                    if name == <$name as Name>::full_name() {
                        return $name::decode(any.value.as_slice()).map(Detail::$name);
                    }
                )*
                Ok(Detail::Other(any))
            }

            /// Packs the detail in a `google.protobuf.Any`, with the type URL
            /// `type.googleapis.com/google.rpc.<Type>` for a standard type.
            pub fn into_any(self) -> Any {
                match self {
                    $(Detail::$name(detail) => pack(&detail),)*
                    Detail::Other(any) => any,
                }
            }
        }
    };
}

details! {
    /// [`ErrorInfo`]: why the call failed, in a form for programs.
    ErrorInfo,
    /// [`RetryInfo`]: when to try again.
    RetryInfo,
    /// [`DebugInfo`]: a stack trace and more, for debugging.
    DebugInfo,
    /// [`QuotaFailure`]: the quotas gone beyond.
    QuotaFailure,
    /// [`PreconditionFailure`]: the preconditions not met.
    PreconditionFailure,
    /// [`BadRequest`]: the request's fields that are not valid.
    BadRequest,
    /// [`RequestInfo`]: the request's id, for a bug report.
    RequestInfo,
    /// [`ResourceInfo`]: the resource the call was about.
    ResourceInfo,
    /// [`Help`]: links to documentation.
    Help,
    /// [`LocalizedMessage`]: a message for the end user, in a language.
    LocalizedMessage,
}

impl Detail {
    /// Packs any message as a detail: a standard type becomes its own
    /// variant, anything else [`Other`](Detail::Other). The type URL is the
    /// message's `prost::Name::type_url`, with `type.googleapis.com/` in
    /// front when it has no domain (prost's default `/package.Message`).
    ///
    /// ```
    /// use ferrogrpc::errdetails::{Detail, ErrorInfo};
    ///
    /// // A message of the application's own (prost-build with
    /// // `enable_type_names` generates the `Name` impl).
    /// #[derive(Clone, PartialEq, prost::Message)]
    /// struct Ticket {
    ///     #[prost(string, tag = "1")]
    ///     id: String,
    /// }
    /// impl prost::Name for Ticket {
    ///     const NAME: &'static str = "Ticket";
    ///     const PACKAGE: &'static str = "example.support";
    /// }
    ///
    /// let Detail::Other(any) = Detail::pack(&Ticket { id: "T-1".into() }) else {
    ///     unreachable!()
    /// };
    /// assert_eq!(any.type_url, "type.googleapis.com/example.support.Ticket");
    /// assert!(matches!(Detail::pack(&ErrorInfo::default()), Detail::ErrorInfo(_)));
    /// ```
    pub fn pack<M: Name>(message: &M) -> Detail {
        let any = pack(message);
        // Decoding what was just encoded fails only for a message that takes
        // a standard type's name without its fields: keep it packed.
        Detail::from_any(any.clone()).unwrap_or(Detail::Other(any))
    }
}

/// The full name of a type URL's type: what follows its last `/`.
fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// Packs `message` with its type URL, `type.googleapis.com/` when its
/// `Name` gives no domain.
fn pack<M: Name>(message: &M) -> Any {
    let mut type_url = M::type_url();
    if type_url.starts_with('/') {
        type_url.replace_range(..1, TYPE_URL_PREFIX);
    }
    Any {
        type_url,
        value: message.encode_to_vec(),
    }
}

/// Why a status's details could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DetailsError {
    /// `grpc-status-details-bin` is not an encoded `google.rpc.Status`, or
    /// a standard detail in it does not decode.
    Decode(prost::DecodeError),
    /// The `google.rpc.Status` in `grpc-status-details-bin` has another code
    /// than the status: the details are not this status's (gRPC-Go turns
    /// such a status into INTERNAL and drops them).
    CodeMismatch {
        /// The status's code (`grpc-status`).
        status: Code,
        /// The code in the details.
        details: i32,
    },
}

impl fmt::Display for DetailsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DetailsError::Decode(err) => write!(f, "malformed grpc-status-details-bin: {err}"),
            DetailsError::CodeMismatch { status, details } => {
                write!(f, "grpc-status-details-bin has code {details}")?;
                if Code::from_i32(*details).as_i32() == *details {
                    write!(f, " ({})", Code::from_i32(*details))?;
                }
                write!(f, ", the status has {} ({status})", status.as_i32())
            }
        }
    }
}

impl std::error::Error for DetailsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DetailsError::Decode(err) => Some(err),
            DetailsError::CodeMismatch { .. } => None,
        }
    }
}

impl From<prost::DecodeError> for DetailsError {
    fn from(err: prost::DecodeError) -> DetailsError {
        DetailsError::Decode(err)
    }
}

/// `status`'s details blob with `details` added after those it has (a blob
/// that does not decode is replaced), with the status's code and message.
pub(crate) fn encode_with(status: &Status, details: impl IntoIterator<Item = Detail>) -> Bytes {
    let mut proto = pb::Status::decode(status.details().as_ref()).unwrap_or_default();
    proto.code = status.code().as_i32();
    proto.message = status.message().to_string();
    proto
        .details
        .extend(details.into_iter().map(Detail::into_any));
    Bytes::from(proto.encode_to_vec())
}

/// The `google.rpc.Status` of `status`, if its details hold one with the
/// status's code; `None` when it has no details.
pub(crate) fn decode(status: &Status) -> Result<Option<pb::Status>, DetailsError> {
    if status.details().is_empty() {
        return Ok(None);
    }
    let proto = pb::Status::decode(status.details().as_ref())?;
    // Compared as codes: a number outside 0..=16 is UNKNOWN, as a received
    // `grpc-status` outside them is.
    if Code::from_i32(proto.code) != status.code() {
        return Err(DetailsError::CodeMismatch {
            status: status.code(),
            details: proto.code,
        });
    }
    Ok(Some(proto))
}

/// The first detail of type `M` in `status`, skipping any that does not
/// decode.
pub(crate) fn find<M: Name + Default>(status: &Status) -> Option<M> {
    let proto = decode(status).ok()??;
    let want = M::full_name();
    proto
        .details
        .iter()
        .filter(|any| type_name(&any.type_url) == want)
        .find_map(|any| M::decode(any.value.as_slice()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn duration(seconds: i64, nanos: i32) -> Option<Duration> {
        Some(Duration { seconds, nanos })
    }

    /// One filled-in value of every standard type.
    fn every_standard_detail() -> Vec<Detail> {
        vec![
            ErrorInfo {
                reason: "REASON".into(),
                domain: "example.com".into(),
                metadata: [("k".to_string(), "v".to_string())].into(),
            }
            .into(),
            RetryInfo {
                retry_delay: duration(2, 500),
            }
            .into(),
            DebugInfo {
                stack_entries: vec!["a.rs:1".into(), "b.rs:2".into()],
                detail: "boom".into(),
            }
            .into(),
            QuotaFailure {
                violations: vec![quota_failure::Violation {
                    subject: "project:p".into(),
                    description: "too many".into(),
                    api_service: "api.example.com".into(),
                    quota_metric: "calls".into(),
                    quota_id: "CallsPerMinute".into(),
                    quota_dimensions: [("region".to_string(), "eu".to_string())].into(),
                    quota_value: 10,
                    future_quota_value: Some(20),
                }],
            }
            .into(),
            PreconditionFailure {
                violations: vec![precondition_failure::Violation {
                    r#type: "TOS".into(),
                    subject: "user".into(),
                    description: "terms not accepted".into(),
                }],
            }
            .into(),
            BadRequest {
                field_violations: vec![bad_request::FieldViolation {
                    field: "name".into(),
                    description: "too short".into(),
                    reason: "TOO_SHORT".into(),
                    localized_message: Some(LocalizedMessage {
                        locale: "de-DE".into(),
                        message: "zu kurz".into(),
                    }),
                }],
            }
            .into(),
            RequestInfo {
                request_id: "r-1".into(),
                serving_data: "s".into(),
            }
            .into(),
            ResourceInfo {
                resource_type: "book".into(),
                resource_name: "shelves/1/books/2".into(),
                owner: "me".into(),
                description: "gone".into(),
            }
            .into(),
            Help {
                links: vec![help::Link {
                    description: "docs".into(),
                    url: "https://example.com/docs".into(),
                }],
            }
            .into(),
            LocalizedMessage {
                locale: "fr-CH".into(),
                message: "trop court".into(),
            }
            .into(),
        ]
    }

    #[test]
    fn every_standard_type_round_trips_through_a_status() {
        let sent = every_standard_detail();
        let status = Status::invalid_argument("bad").with_error_details(sent.clone());
        assert!(!status.details().is_empty());
        assert_eq!(status.error_details().unwrap(), sent);
        // Each one with the typed getter too.
        assert_eq!(
            status.error_detail::<RetryInfo>().unwrap().retry_delay,
            duration(2, 500)
        );
        assert_eq!(status.error_detail::<ErrorInfo>().unwrap().reason, "REASON");
        assert_eq!(status.error_detail::<DebugInfo>().unwrap().detail, "boom");
        let quota = status.error_detail::<QuotaFailure>().unwrap();
        assert_eq!(quota.violations[0].future_quota_value, Some(20));
        let pre = status.error_detail::<PreconditionFailure>().unwrap();
        assert_eq!(pre.violations[0].r#type, "TOS");
        let bad = status.error_detail::<BadRequest>().unwrap();
        assert_eq!(
            bad.field_violations[0]
                .localized_message
                .as_ref()
                .unwrap()
                .message,
            "zu kurz"
        );
        assert_eq!(
            status.error_detail::<RequestInfo>().unwrap().request_id,
            "r-1"
        );
        assert_eq!(status.error_detail::<ResourceInfo>().unwrap().owner, "me");
        assert_eq!(status.error_detail::<Help>().unwrap().links.len(), 1);
        assert_eq!(
            status.error_detail::<LocalizedMessage>().unwrap().locale,
            "fr-CH"
        );
    }

    #[test]
    fn the_blob_is_a_google_rpc_status_with_the_status_code_and_message() {
        let status = Status::not_found("no such book: ü 100%").with_error_details([ResourceInfo {
            resource_name: "b".into(),
            ..Default::default()
        }
        .into()]);
        let proto = pb::Status::decode(status.details().as_ref()).unwrap();
        assert_eq!(proto.code, Code::NotFound.as_i32());
        assert_eq!(proto.message, "no such book: ü 100%");
        assert_eq!(proto.details.len(), 1);
        assert_eq!(
            proto.details[0].type_url,
            "type.googleapis.com/google.rpc.ResourceInfo"
        );
        // The status itself is as it was.
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no such book: ü 100%");
    }

    #[test]
    fn every_standard_type_url_is_googleapis() {
        for detail in every_standard_detail() {
            let any = detail.into_any();
            assert!(
                any.type_url.starts_with("type.googleapis.com/google.rpc."),
                "{}",
                any.type_url
            );
        }
    }

    #[test]
    fn details_add_up_over_calls_in_order() {
        let status = Status::unavailable("busy")
            .with_error_details([RetryInfo {
                retry_delay: duration(1, 0),
            }
            .into()])
            .with_error_details([ErrorInfo {
                reason: "BUSY".into(),
                ..Default::default()
            }
            .into()]);
        let details = status.error_details().unwrap();
        assert!(matches!(
            details[..],
            [Detail::RetryInfo(_), Detail::ErrorInfo(_)]
        ));
    }

    #[test]
    fn an_unknown_type_is_kept_as_other() {
        let unknown = Any {
            type_url: "type.googleapis.com/example.Custom".into(),
            value: vec![0x0a, 0x02, b'h', b'i'],
        };
        let status = Status::internal("x").with_error_details([
            Detail::Other(unknown.clone()),
            Detail::from(ErrorInfo::default()),
        ]);
        let details = status.error_details().unwrap();
        assert_eq!(details[0], Detail::Other(unknown));
        assert_eq!(details[1], Detail::ErrorInfo(ErrorInfo::default()));
        // Decodable by its own type with the typed getter: a string in
        // field 1 is what prost's `String` (StringValue) is.
        #[derive(Clone, PartialEq, prost::Message)]
        struct Custom {
            #[prost(string, tag = "1")]
            text: String,
        }
        impl Name for Custom {
            const NAME: &'static str = "Custom";
            const PACKAGE: &'static str = "example";
        }
        assert_eq!(status.error_detail::<Custom>().unwrap().text, "hi");
    }

    #[test]
    fn own_messages_pack_with_the_googleapis_prefix() {
        #[derive(Clone, PartialEq, prost::Message)]
        struct Mine {
            #[prost(int32, tag = "1")]
            n: i32,
        }
        impl Name for Mine {
            const NAME: &'static str = "Mine";
            const PACKAGE: &'static str = "app.v1";
        }
        let Detail::Other(any) = Detail::pack(&Mine { n: 7 }) else {
            panic!("not Other")
        };
        assert_eq!(any.type_url, "type.googleapis.com/app.v1.Mine");
        let status = Status::aborted("x").with_error_details([Detail::Other(any)]);
        assert_eq!(status.error_detail::<Mine>(), Some(Mine { n: 7 }));
        // A standard type packed this way is its own variant.
        assert_eq!(
            Detail::pack(&Help::default()),
            Detail::Help(Help::default())
        );
    }

    #[test]
    fn type_urls_match_by_full_name_whatever_the_domain() {
        let info = ErrorInfo {
            reason: "R".into(),
            ..Default::default()
        };
        for url in [
            "type.googleapis.com/google.rpc.ErrorInfo",
            "example.com/types/google.rpc.ErrorInfo",
            "/google.rpc.ErrorInfo",
            "google.rpc.ErrorInfo",
        ] {
            let any = Any {
                type_url: url.into(),
                value: info.encode_to_vec(),
            };
            assert_eq!(
                Detail::from_any(any).unwrap(),
                Detail::ErrorInfo(info.clone()),
                "{url}"
            );
        }
        // Not a suffix match: another package's ErrorInfo is not ours.
        let other = Any {
            type_url: "type.googleapis.com/other.google.rpc.ErrorInfo".into(),
            value: info.encode_to_vec(),
        };
        assert!(matches!(Detail::from_any(other), Ok(Detail::Other(_))));
    }

    #[test]
    fn a_code_that_disagrees_with_the_status_is_refused() {
        // The blob says NOT_FOUND; the status (grpc-status) says INTERNAL.
        let blob = Status::not_found("x")
            .with_error_details([ErrorInfo::default().into()])
            .details()
            .clone();
        let status = Status::with_details(Code::Internal, "x", blob);
        assert_eq!(
            status.error_details(),
            Err(DetailsError::CodeMismatch {
                status: Code::Internal,
                details: Code::NotFound.as_i32(),
            })
        );
        assert_eq!(status.error_detail::<ErrorInfo>(), None);
        let shown = status.error_details().unwrap_err().to_string();
        assert!(
            shown.contains("NOT_FOUND") && shown.contains("INTERNAL"),
            "{shown}"
        );
        // The status itself is left alone.
        assert_eq!(status.code(), Code::Internal);
    }

    #[test]
    fn codes_compare_as_codes() {
        // A number outside 0..=16 is UNKNOWN, as a received grpc-status
        // outside them is: the same code.
        let proto = pb::Status {
            code: 99,
            message: "x".into(),
            details: vec![Detail::from(ErrorInfo::default()).into_any()],
        };
        let status = Status::with_details(Code::Unknown, "x", proto.encode_to_vec().into());
        assert_eq!(status.error_details().unwrap().len(), 1);
        let status = Status::with_details(Code::Internal, "x", proto.encode_to_vec().into());
        let err = status.error_details().unwrap_err();
        assert_eq!(
            err.to_string(),
            "grpc-status-details-bin has code 99, the status has 13 (INTERNAL)"
        );
    }

    #[test]
    fn a_message_that_disagrees_is_not_checked() {
        let blob = Status::not_found("one message")
            .with_error_details([ErrorInfo::default().into()])
            .details()
            .clone();
        let status = Status::with_details(Code::NotFound, "another", blob);
        assert_eq!(status.error_details().unwrap().len(), 1);
    }

    #[test]
    fn a_malformed_blob_is_an_error_not_a_panic() {
        for blob in [
            &b"\xff"[..],             // a field with number 0x1f and a bad wire type
            &b"\x1a\x05abc"[..],      // details: length past the end
            &b"\x08"[..],             // code: varint cut off
            &b"\x1a\x03\x0a\x01"[..], // an Any whose type_url is cut off
            &b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"[..], // varint too long
        ] {
            let status = Status::with_details(Code::Internal, "x", Bytes::from_static(blob));
            assert!(
                matches!(status.error_details(), Err(DetailsError::Decode(_))),
                "{blob:?}: {:?}",
                status.error_details()
            );
            assert_eq!(status.error_detail::<ErrorInfo>(), None);
            // Adding details over a broken blob replaces it.
            let fixed = status.with_error_details([ErrorInfo::default().into()]);
            assert_eq!(fixed.error_details().unwrap().len(), 1);
        }
    }

    #[test]
    fn a_standard_detail_that_does_not_decode_fails_the_read() {
        let broken = Any {
            type_url: "type.googleapis.com/google.rpc.RetryInfo".into(),
            value: vec![0x0a, 0x05, 0x08], // retry_delay: length past the end
        };
        let status = Status::unavailable("x").with_error_details([
            Detail::Other(broken),
            Detail::from(RetryInfo {
                retry_delay: duration(3, 0),
            }),
        ]);
        assert!(matches!(
            status.error_details(),
            Err(DetailsError::Decode(_))
        ));
        // The typed getter skips the broken one and finds the next.
        assert_eq!(
            status.error_detail::<RetryInfo>().unwrap().retry_delay,
            duration(3, 0)
        );
    }

    #[test]
    fn no_details_read_as_none() {
        let status = Status::internal("plain");
        assert_eq!(status.error_details(), Ok(vec![]));
        assert_eq!(status.error_detail::<ErrorInfo>(), None);
        // A google.rpc.Status with no details reads as none too.
        let empty = Status::internal("plain").with_error_details(Vec::<Detail>::new());
        assert!(!empty.details().is_empty());
        assert_eq!(empty.error_details(), Ok(vec![]));
    }

    #[test]
    fn ok_takes_no_details() {
        let status =
            Status::new(Code::Ok, "fine").with_error_details([ErrorInfo::default().into()]);
        assert!(status.details().is_empty());
        assert_eq!(status.error_details(), Ok(vec![]));
    }

    #[test]
    fn raw_details_from_another_encoder_are_read() {
        // Encoded by hand, as a peer would: code 5, message "m", one Any.
        let info = ErrorInfo {
            reason: "R".into(),
            ..Default::default()
        };
        let proto = pb::Status {
            code: 5,
            message: "m".into(),
            details: vec![Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".into(),
                value: info.encode_to_vec(),
            }],
        };
        let status = Status::with_details(Code::NotFound, "m", proto.encode_to_vec().into());
        assert_eq!(status.error_details(), Ok(vec![Detail::ErrorInfo(info)]));
    }
}
