//! Encryption with TLS, in one process.
//!
//! At start-up the example makes a certificate authority and a server
//! certificate for `localhost` signed by it (a real server loads its
//! certificate and key from files, `ServerTlsConfig::from_pem_files`). The
//! server serves TLS; the client trusts that CA alone and checks the
//! server's certificate against the name `localhost`. Both sides can see
//! what the handshake settled on in the peer's auth info. A client that does
//! not trust the CA cannot connect.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin encryption`

use ferrogrpc::{
    client::Channel,
    credentials::{
        tls::{ClientTlsConfig, ServerTlsConfig, TlsInfo},
        ChannelCredentials, ServerCredentials,
    },
    server::Server,
    Request, Response, Status,
};
use ferrogrpc_examples::{
    certs::Ca,
    helloworld::{
        greeter_client::GreeterClient,
        greeter_server::{Greeter, GreeterServer},
        HelloReply, HelloRequest,
    },
    local,
};

struct MyGreeter;

impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        match request
            .peer()
            .and_then(|p| p.auth_info.as_ref())
            .and_then(|a| a.tls())
        {
            Some(tls) => println!(
                "server: call over {} with {}, for server name {:?}",
                tls.protocol_version,
                tls.cipher_suite,
                tls.server_name.as_deref().unwrap_or("(none)")
            ),
            None => println!("server: call without TLS"),
        }
        let name = request.into_inner().name;
        Ok(Response::new(HelloReply {
            message: format!("Hello {name}"),
        }))
    }
}

fn client(addr: &str, tls: ClientTlsConfig) -> Result<GreeterClient, Box<dyn std::error::Error>> {
    let channel = Channel::builder(addr)
        .credentials(ChannelCredentials::tls(tls))
        .build()?;
    Ok(GreeterClient::new(channel))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ca = Ca::new("example CA")?;
    let server_cert = ca.issue(&["localhost"])?;
    let (server, addr) = local::start(
        Server::builder()
            .credentials(ServerCredentials::tls(ServerTlsConfig::from_pem(
                &server_cert.cert_pem,
                &server_cert.key_pem,
            )))
            .add_service(GreeterServer::new(MyGreeter)),
    )
    .await?;
    let addr = addr.to_string();
    println!("server: TLS on {addr}, certificate for localhost");

    // The target is an IP address; `server_name` says which name the
    // certificate must carry (and is sent as SNI).
    let trusting = client(
        &addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(ca.pem())
            .server_name("localhost"),
    )?;
    let reply = trusting
        .say_hello(HelloRequest { name: "TLS".into() })
        .await?;
    let tls: Option<&TlsInfo> = reply
        .peer()
        .and_then(|p| p.auth_info.as_ref())
        .and_then(|a| a.tls());
    if let Some(tls) = tls {
        println!(
            "client: connected with {} and {}",
            tls.protocol_version, tls.cipher_suite
        );
        println!("client: server certificate names: {:?}", tls.peer_sans());
    }
    println!("client: {}", reply.into_inner().message);

    // A CA the server's certificate does not chain to.
    let other_ca = Ca::new("some other CA")?;
    let doubtful = client(
        &addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(other_ca.pem())
            .server_name("localhost"),
    )?;
    match doubtful
        .say_hello(HelloRequest { name: "TLS".into() })
        .await
    {
        Ok(_) => println!("client trusting another CA: connected (unexpected)"),
        Err(status) => println!("client trusting another CA: {status}"),
    }

    server.graceful_stop().await;
    Ok(())
}
