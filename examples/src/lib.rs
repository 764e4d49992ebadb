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

/// Starts a server on a free loopback port, for the examples that run
/// their servers and clients in one process.
pub mod local {
    use std::{io, net::SocketAddr};

    use ferrogrpc::server::{Server, ServerBuilder};

    /// Builds the server, serves it on `127.0.0.1:0` in a background task
    /// and returns it (to stop it later) with the address it listens on.
    ///
    /// # Errors
    /// When no loopback port can be bound.
    pub async fn start(builder: ServerBuilder) -> io::Result<(Server, SocketAddr)> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = builder.build();
        let serving = server.clone();
        tokio::spawn(async move { serving.serve_listener(listener).await });
        Ok((server, addr))
    }
}

/// Certificates made at start-up, for the TLS examples (`encryption`,
/// `authentication`), so they need no files. A real deployment loads its
/// own (`ServerTlsConfig::from_pem_files`, `ClientTlsConfig::ca_certificate_file`).
pub mod certs {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

    /// A certificate authority that signs certificates.
    pub struct Ca {
        cert: rcgen::Certificate,
        key: KeyPair,
    }

    /// A certificate and its private key, PEM-encoded.
    pub struct Identity {
        /// The certificate.
        pub cert_pem: String,
        /// Its private key.
        pub key_pem: String,
    }

    impl Ca {
        /// A new self-signed CA called `name`.
        ///
        /// # Errors
        /// When the key or certificate cannot be made.
        pub fn new(name: &str) -> Result<Ca, rcgen::Error> {
            let key = KeyPair::generate()?;
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let cert = params.self_signed(&key)?;
            Ok(Ca { cert, key })
        }

        /// The CA's certificate, for those who trust it.
        pub fn pem(&self) -> String {
            self.cert.pem()
        }

        /// A certificate signed by this CA for `names` (its subject
        /// alternative names: DNS names, or IP addresses).
        ///
        /// # Errors
        /// When a name is invalid or the certificate cannot be made.
        pub fn issue(&self, names: &[&str]) -> Result<Identity, rcgen::Error> {
            let key = KeyPair::generate()?;
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let mut params = CertificateParams::new(names.clone())?;
            if let Some(first) = names.first() {
                params.distinguished_name.push(DnType::CommonName, first);
            }
            let cert = params.signed_by(&key, &self.cert, &self.key)?;
            Ok(Identity {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
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
