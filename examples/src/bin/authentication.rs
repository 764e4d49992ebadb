//! Authentication, in one process, two ways:
//!
//! 1. A bearer token per call: the client's channel attaches it with
//!    `credentials::BearerToken` (per-RPC credentials), and a server
//!    interceptor lets only calls with the right token through; the others
//!    end with UNAUTHENTICATED. Tokens travel over TLS only (per-RPC
//!    credentials refuse a plaintext channel unless told otherwise).
//! 2. Mutual TLS: the server asks every client for a certificate signed by
//!    a CA it trusts, and the handler reads who the client is from the
//!    certificate in the peer's auth info.
//!
//! Run: `cargo run -p ferrogrpc-examples --bin authentication`

use ferrogrpc::{
    client::Channel,
    credentials::{
        tls::{ClientTlsConfig, ServerTlsConfig, SubjectAltName},
        BearerToken, ChannelCredentials, ServerCredentials,
    },
    interceptor::CallInfo,
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

/// Greets the caller by the names in its client certificate, if it sent one.
struct MyGreeter;

impl Greeter for MyGreeter {
    async fn say_hello(
        &self,
        request: Request<HelloRequest>,
    ) -> Result<Response<HelloReply>, Status> {
        let tls = request
            .peer()
            .and_then(|peer| peer.auth_info.as_ref())
            .and_then(|auth| auth.tls());
        let who = match tls.map(|tls| tls.peer_sans()) {
            Some(sans) if !sans.is_empty() => {
                let names: Vec<String> = sans
                    .iter()
                    .map(|san| match san {
                        SubjectAltName::Dns(name) => name.clone(),
                        other => format!("{other:?}"),
                    })
                    .collect();
                format!("certificate for {}", names.join(", "))
            }
            _ => "no client certificate".to_string(),
        };
        println!("server: call from {who}");
        let name = request.into_inner().name;
        Ok(Response::new(HelloReply {
            message: format!("Hello {name} ({who})"),
        }))
    }
}

/// Lets a call (unary or streaming) through only with
/// `authorization: Bearer <token>`: one closure registered with
/// `interceptor_fn` covers every kind of call.
fn require_token(
    token: &'static str,
) -> impl Fn(&mut ferrogrpc::metadata::MetadataMap, CallInfo<'_>) -> Result<(), Status>
       + Send
       + Sync
       + 'static {
    move |metadata, _info| match metadata
        .get("authorization")
        .and_then(|value| value.strip_prefix("Bearer "))
    {
        Some(given) if given == token => Ok(()),
        Some(_) => Err(Status::unauthenticated("invalid token")),
        None => Err(Status::unauthenticated("missing token")),
    }
}

async fn greet(client: &GreeterClient, name: &str) -> String {
    match client.say_hello(HelloRequest { name: name.into() }).await {
        Ok(reply) => reply.into_inner().message,
        Err(status) => format!("{}: {}", status.code(), status.message()),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let ca = Ca::new("example CA")?;
    let server_cert = ca.issue(&["localhost"])?;
    let tls = || ServerTlsConfig::from_pem(&server_cert.cert_pem, &server_cert.key_pem);
    // The client trusts the CA and checks the server's name against it.
    let trust = ClientTlsConfig::new()
        .ca_certificate_pem(ca.pem())
        .server_name("localhost");

    println!("== bearer token ==");
    let (token_server, addr) = local::start(
        Server::builder()
            .credentials(ServerCredentials::tls(tls()))
            .interceptor_fn(require_token("open-sesame"))
            .add_service(GreeterServer::new(MyGreeter)),
    )
    .await?;
    for (label, token) in [
        ("good", Some("open-sesame")),
        ("bad", Some("guess")),
        ("no", None),
    ] {
        let mut channel =
            Channel::builder(addr.to_string()).credentials(ChannelCredentials::tls(trust.clone()));
        if let Some(token) = token {
            channel = channel.per_rpc_credentials(BearerToken::new(token));
        }
        let client = GreeterClient::new(channel.build()?);
        println!(
            "client with {label} token: {}",
            greet(&client, "token").await
        );
    }

    println!("== mutual TLS ==");
    let clients_ca = Ca::new("clients CA")?;
    let (mtls_server, addr) = local::start(
        Server::builder()
            .credentials(ServerCredentials::tls(
                tls().client_ca_pem(clients_ca.pem()),
            ))
            .add_service(GreeterServer::new(MyGreeter)),
    )
    .await?;
    let client_cert = clients_ca.issue(&["billing.example.com"])?;
    let with_cert = trust
        .clone()
        .identity_pem(&client_cert.cert_pem, &client_cert.key_pem);
    for (label, tls) in [("a", with_cert), ("no", trust)] {
        let channel = Channel::builder(addr.to_string())
            .credentials(ChannelCredentials::tls(tls))
            .build()?;
        let client = GreeterClient::new(channel);
        println!(
            "client with {label} certificate: {}",
            greet(&client, "mtls").await
        );
    }

    token_server.graceful_stop().await;
    mtls_server.graceful_stop().await;
    Ok(())
}
