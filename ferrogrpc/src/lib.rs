//! # ferrogrpc
//!
//! gRPC for Rust with the capability set of gRPC-Go: a server, a client
//! channel, protoc-free code generation (`ferrogrpc-build`), and modules
//! named after gRPC-Go's packages so each concept is where a gRPC user looks
//! for it.
//!
//! ```text
//!   generated stubs / services          (ferrogrpc-build)
//!        │                    │
//!   client::Channel      server::Server  ── codec (prost by default)
//!        │                    │
//!   request / response / streaming / status / metadata
//!        │                    │
//!   transport (internal: the only module that knows HTTP/2; h2 underneath)
//! ```
//!
//! What it does today: the gRPC wire protocol over HTTP/2 (PROTOCOL-HTTP2.md),
//! all four RPC kinds, deadlines, cancellation, status with details,
//! metadata (ASCII and binary), message size limits, graceful and hard
//! server stop, TCP and Unix sockets.
//!
//! The client channel resolves its target ([`resolver`]), balances calls over
//! subchannels ([`balancer`]: `pick_first`, `round_robin`), reconnects with
//! [`backoff`], reports its [`connectivity`] state and goes idle when unused.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// Lets code generated for the standard services (`::ferrogrpc::...` paths)
// compile inside this crate.
extern crate self as ferrogrpc;

#[cfg(feature = "channelz")]
pub mod admin;
pub mod attributes;
pub mod backoff;
pub mod balancer;
#[cfg(feature = "binarylog")]
pub mod binarylog;
pub mod bufconn;
mod call_context;
#[cfg(feature = "channelz")]
pub mod channelz;
pub mod client;
pub mod codec;
pub mod codes;
pub mod connectivity;
pub mod credentials;
pub mod encoding;
#[cfg(feature = "errdetails")]
pub mod errdetails;
#[cfg(feature = "health")]
pub mod health;
pub mod interceptor;
pub mod keepalive;
pub mod logging;
pub mod metadata;
pub mod peer;
#[cfg(feature = "reflection")]
pub mod reflection;
pub mod resolver;
pub mod server;
pub mod serviceconfig;
pub mod stats;
pub mod status;
pub mod tap;

mod observe;
mod prepared;
mod request;
mod response;
mod streaming;
mod transport;

pub use codes::Code;
pub use prepared::PreparedMsg;
pub use request::{CallOptions, IntoRequest, Request};
pub use response::Response;
pub use status::{RetryPushback, Status};
pub use streaming::Streaming;

/// Includes the code `ferrogrpc-build` generated for a proto package, e.g.
/// `ferrogrpc::include_proto!("helloworld");`.
#[macro_export]
macro_rules! include_proto {
    ($package:literal) => {
        include!(concat!(env!("OUT_DIR"), concat!("/", $package, ".rs")));
    };
}

/// Re-exports used by generated code. Not part of the stable API.
#[doc(hidden)]
pub mod __codegen {
    pub use http::uri::PathAndQuery;
}

// Wrappers for the fuzz targets in `fuzz/`; built only by `cargo fuzz`.
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod __fuzz;
