//! Serving a set of services on 127.0.0.1:0 for a test.

use ferrogrpc::{
    client::Channel,
    server::{Server, ServerBuilder},
};
use tokio::net::TcpListener;

/// A server on an ephemeral loopback port; stops when dropped.
pub struct Running {
    pub server: Server,
    pub channel: Channel,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.server.stop();
    }
}

/// Serves what `builder` holds on 127.0.0.1:0 and returns a channel to it.
pub async fn serve(builder: ServerBuilder) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let server = builder.build();
    let serving = server.clone();
    tokio::spawn(async move { serving.serve_listener(listener).await });
    let channel = Channel::from_target(&addr.to_string()).expect("channel");
    Running { server, channel }
}
