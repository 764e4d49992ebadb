//! The admin services, as gRPC-Go's `admin` package: one call adds every
//! service an operator uses to look into a running process. Today that is
//! channelz (`grpc.channelz.v1.Channelz`, see [`channelz`](crate::channelz));
//! CSDS joins it with the xDS client.
//!
//! ```no_run
//! use ferrogrpc::{admin, server::Server};
//!
//! # async fn run() -> std::io::Result<()> {
//! // Often on a port of its own, apart from the application's services.
//! let server = admin::register(Server::builder()).build();
//! # server.serve("127.0.0.1:50052").await }
//! ```

use crate::server::ServerBuilder;

/// Adds the admin services to `builder` (gRPC-Go's `admin.Register`).
pub fn register(builder: ServerBuilder) -> ServerBuilder {
    builder.add_service(crate::channelz::service())
}
