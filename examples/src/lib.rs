//! Generated code shared by the example binaries.

/// The `helloworld` package.
pub mod helloworld {
    ferrogrpc::include_proto!("helloworld");
}

/// The `routeguide` package.
pub mod routeguide {
    ferrogrpc::include_proto!("routeguide");
}

/// What the example servers share: binding their address, and stopping on
/// a signal.
pub mod serving {
    use std::{future::Future, io};

    use tokio::net::TcpListener;

    /// Binds `addr` (`host:port`) for a server to listen on. Bind before
    /// printing that the server listens: then the message is true, and a
    /// port in use is an error message rather than a failure later on.
    ///
    /// # Errors
    /// What to tell the user, naming the address: `cannot listen on
    /// 127.0.0.1:50051: address already in use`.
    pub async fn bind(addr: &str) -> Result<TcpListener, String> {
        TcpListener::bind(addr).await.map_err(|err| {
            let why = match err.kind() {
                io::ErrorKind::AddrInUse => "address already in use".to_string(),
                _ => err.to_string(),
            };
            format!("cannot listen on {addr}: {why}")
        })
    }

    /// Resolves on SIGINT (Ctrl-C) or SIGTERM (what `kill`, systemd and
    /// Kubernetes send); elsewhere than Unix, on Ctrl-C. The handlers are
    /// installed when this is called, not when the future is first polled,
    /// so a signal that arrives before then is not lost.
    ///
    /// # Errors
    /// When a signal handler cannot be installed.
    pub fn stop_signal() -> io::Result<impl Future<Output = ()>> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let mut interrupt = signal(SignalKind::interrupt())?;
            let mut terminate = signal(SignalKind::terminate())?;
            Ok(async move {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
            })
        }
        #[cfg(not(unix))]
        {
            Ok(async {
                let _ = tokio::signal::ctrl_c().await;
            })
        }
    }
}

/// Numbered greeter servers, for the examples that show calls spreading
/// over several servers (`load_balancing`, `custom_resolver`).
pub mod numbered {
    use std::{net::SocketAddr, time::Duration};

    use ferrogrpc::{server::Server, Request, Response, Status};

    use crate::helloworld::{
        greeter_client::GreeterClient,
        greeter_server::{Greeter, GreeterServer},
        HelloReply, HelloRequest,
    };

    /// A greeter that says which server it is.
    struct NumberedGreeter(usize);

    impl Greeter for NumberedGreeter {
        async fn say_hello(
            &self,
            request: Request<HelloRequest>,
        ) -> Result<Response<HelloReply>, Status> {
            let name = request.into_inner().name;
            Ok(Response::new(HelloReply {
                message: format!("Hello {name} from server {}", self.0),
            }))
        }
    }

    /// Starts greeter server number `n` on a free loopback port.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start_server(n: usize) -> std::io::Result<(Server, SocketAddr)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = Server::builder()
            .add_service(GreeterServer::new(NumberedGreeter(n)))
            .build();
        let serving = server.clone();
        tokio::spawn(async move { serving.serve_listener(listener).await });
        Ok((server, addr))
    }

    /// Makes one call and returns the greeting and the number of the server
    /// that sent it.
    ///
    /// # Errors
    /// The call's status, or `INTERNAL` for a reply that names no server.
    pub async fn greet(client: &GreeterClient, name: &str) -> Result<(String, usize), Status> {
        let request =
            Request::new(HelloRequest { name: name.into() }).with_timeout(Duration::from_secs(5));
        let message = client.say_hello(request).await?.into_inner().message;
        let server = message
            .rsplit(' ')
            .next()
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Status::internal(format!("unexpected reply {message:?}")))?;
        Ok((message, server))
    }
}
