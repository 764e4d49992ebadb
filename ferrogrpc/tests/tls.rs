//! TLS and credentials over loopback, with certificates generated at test
//! time: round trips, mTLS, verification failures, ALPN, per-RPC
//! credentials, local credentials and certificate reload while serving.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use ferrogrpc::{
    client::Channel,
    codec::BytesCodec,
    credentials::{
        tls::{ClientAuth, ClientTlsConfig, ServerTlsConfig, SubjectAltName},
        AuthInfo, BearerToken, ChannelCredentials, SecurityLevel, ServerCredentials,
    },
    server::{self, BoxFuture, Server, ServerCall, Service},
    Code, Request, Response, Status,
};
use http::uri::PathAndQuery;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, SanType};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

struct Leaf {
    cert_pem: String,
    key_pem: String,
}

fn ca(name: &str) -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, key }
}

fn leaf(ca: &Ca, dns: &[&str], extra: impl FnOnce(&mut CertificateParams)) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, dns.first().copied().unwrap_or("client"));
    extra(&mut params);
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    Leaf {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// Answers with what it learnt about the peer, in response metadata.
struct Whoami;

impl Service for Whoami {
    fn name(&self) -> &'static str {
        "t.Whoami"
    }

    fn call(&self, _method: &str, call: ServerCall) -> BoxFuture {
        Box::pin(server::unary(
            call,
            BytesCodec,
            |req: Request<Bytes>| async move {
                let mut resp = Response::new(req.get_ref().clone());
                let md = resp.metadata_mut();
                if let Some(auth) = req.metadata().get("authorization") {
                    md.insert("x-authorization", auth).unwrap();
                }
                match req.peer().and_then(|p| p.auth_info.as_ref()) {
                    Some(AuthInfo::Tls(tls)) => {
                        md.insert("x-tls-version", &tls.protocol_version).unwrap();
                        md.insert("x-cipher", &tls.cipher_suite).unwrap();
                        md.insert("x-peer-certs", &tls.peer_certificates.len().to_string())
                            .unwrap();
                        let sans: Vec<String> =
                            tls.peer_sans().iter().map(|s| format!("{s:?}")).collect();
                        md.insert("x-peer-sans", &sans.join(";")).unwrap();
                    }
                    Some(AuthInfo::Local { security_level }) => {
                        md.insert("x-local", &format!("{security_level:?}"))
                            .unwrap();
                    }
                    Some(_) => {}
                    None => md.insert("x-insecure", "yes").unwrap(),
                }
                Ok::<_, Status>(resp)
            },
        ))
    }
}

async fn serve(creds: ServerCredentials) -> (std::net::SocketAddr, Server) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(Whoami)
        .credentials(creds)
        .build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    (addr, server)
}

async fn call(ch: &Channel) -> Result<Response<Bytes>, Status> {
    let req = Request::new(Bytes::from_static(b"hi")).with_timeout(Duration::from_secs(10));
    ch.unary(PathAndQuery::from_static("/t.Whoami/Call"), req, BytesCodec)
        .await
}

fn tls_channel(addr: std::net::SocketAddr, tls: ClientTlsConfig) -> Channel {
    Channel::builder(addr.to_string())
        .credentials(ChannelCredentials::tls(tls))
        .build()
        .unwrap()
}

#[tokio::test]
async fn tls_round_trip_with_auth_info() {
    let ca = ca("root");
    let server_cert = leaf(&ca, &["localhost"], |_| {});
    let (addr, _s) = serve(ServerCredentials::tls(ServerTlsConfig::from_pem(
        &server_cert.cert_pem,
        &server_cert.key_pem,
    )))
    .await;
    let ch = tls_channel(
        addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(ca.cert.pem())
            .server_name("localhost"),
    );
    let resp = call(&ch).await.unwrap();
    // The client sees the server's side too.
    let peer = resp.peer().expect("client responses carry the peer");
    assert_eq!(peer.remote_addr, ferrogrpc::peer::Addr::Tcp(addr));
    let tls = peer
        .auth_info
        .as_ref()
        .and_then(AuthInfo::tls)
        .expect("TLS auth info");
    assert_eq!(tls.peer_certificates.len(), 1, "the server's chain");
    assert!(tls
        .peer_sans()
        .contains(&SubjectAltName::Dns("localhost".into())));
    assert_eq!(resp.metadata().get("x-tls-version"), Some("TLSv1.3"));
    assert!(resp
        .metadata()
        .get("x-cipher")
        .unwrap()
        .starts_with("TLS13_"));
    assert_eq!(
        resp.metadata().get("x-peer-certs"),
        Some("0"),
        "no client certificate"
    );
    assert_eq!(resp.into_inner(), "hi");
}

#[tokio::test]
async fn mtls_accepted_shows_peer_certificate_and_sans() {
    let ca = ca("root");
    let server_cert = leaf(&ca, &["localhost"], |_| {});
    let client_ca = ca_named("clients");
    let client_cert = leaf(&client_ca, &["client.example"], |p| {
        p.subject_alt_names.push(SanType::URI(
            "spiffe://example.org/svc/a".try_into().unwrap(),
        ));
        p.subject_alt_names
            .push(SanType::IpAddress("10.1.2.3".parse().unwrap()));
    });
    let (addr, _s) = serve(ServerCredentials::tls(
        ServerTlsConfig::from_pem(&server_cert.cert_pem, &server_cert.key_pem)
            .client_ca_pem(client_ca.cert.pem()),
    ))
    .await;
    let ch = tls_channel(
        addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(ca.cert.pem())
            .server_name("localhost")
            .identity_pem(&client_cert.cert_pem, &client_cert.key_pem),
    );
    let resp = call(&ch).await.unwrap();
    assert_eq!(resp.metadata().get("x-peer-certs"), Some("1"));
    let sans = resp.metadata().get("x-peer-sans").unwrap();
    assert!(
        sans.contains(&format!(
            "{:?}",
            SubjectAltName::Dns("client.example".into())
        )),
        "{sans}"
    );
    assert!(sans.contains("spiffe://example.org/svc/a"), "{sans}");
    assert!(sans.contains("10.1.2.3"), "{sans}");
}

fn ca_named(name: &str) -> Ca {
    ca(name)
}

#[tokio::test]
async fn mtls_required_rejects_clients_without_a_valid_certificate() {
    let ca = ca("root");
    let server_cert = leaf(&ca, &["localhost"], |_| {});
    let client_ca = ca_named("clients");
    let (addr, _s) = serve(ServerCredentials::tls(
        ServerTlsConfig::from_pem(&server_cert.cert_pem, &server_cert.key_pem)
            .client_ca_pem(client_ca.cert.pem()),
    ))
    .await;
    let base = ClientTlsConfig::new()
        .ca_certificate_pem(ca.cert.pem())
        .server_name("localhost");
    // No certificate at all.
    let err = call(&tls_channel(addr, base.clone())).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
    assert!(err.message().contains("CertificateRequired"), "{err}");
    // A certificate from a CA the server does not trust.
    let stranger = leaf(&ca_named("stranger"), &["client.example"], |_| {});
    let err = call(&tls_channel(
        addr,
        base.identity_pem(&stranger.cert_pem, &stranger.key_pem),
    ))
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err}");
}

#[tokio::test]
async fn mtls_optional_accepts_both() {
    let ca = ca("root");
    let server_cert = leaf(&ca, &["localhost"], |_| {});
    let client_ca = ca_named("clients");
    let client_cert = leaf(&client_ca, &["client.example"], |_| {});
    let (addr, _s) = serve(ServerCredentials::tls(
        ServerTlsConfig::from_pem(&server_cert.cert_pem, &server_cert.key_pem)
            .client_ca_pem(client_ca.cert.pem())
            .client_auth(ClientAuth::Optional),
    ))
    .await;
    let base = ClientTlsConfig::new()
        .ca_certificate_pem(ca.cert.pem())
        .server_name("localhost");
    let resp = call(&tls_channel(addr, base.clone())).await.unwrap();
    assert_eq!(resp.metadata().get("x-peer-certs"), Some("0"));
    let resp = call(&tls_channel(
        addr,
        base.identity_pem(&client_cert.cert_pem, &client_cert.key_pem),
    ))
    .await
    .unwrap();
    assert_eq!(resp.metadata().get("x-peer-certs"), Some("1"));
}

#[tokio::test]
async fn wrong_host_name_is_unavailable_with_the_reason() {
    let ca = ca("root");
    let server_cert = leaf(&ca, &["right.example"], |_| {});
    let (addr, _s) = serve(ServerCredentials::tls(ServerTlsConfig::from_pem(
        &server_cert.cert_pem,
        &server_cert.key_pem,
    )))
    .await;
    let ch = tls_channel(
        addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(ca.cert.pem())
            .server_name("wrong.example"),
    );
    let err = call(&ch).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("NotValidForName"), "{err}");
    assert!(
        err.message().contains("certificate verification failed"),
        "{err}"
    );
    assert!(err.message().contains("subjectAltName"), "the hint: {err}");
}

#[tokio::test]
async fn expired_certificate_is_refused() {
    let ca = ca("root");
    let server_cert = leaf(&ca, &["localhost"], |p| {
        p.not_before = rcgen::date_time_ymd(2001, 1, 1);
        p.not_after = rcgen::date_time_ymd(2002, 1, 1);
    });
    let (addr, _s) = serve(ServerCredentials::tls(ServerTlsConfig::from_pem(
        &server_cert.cert_pem,
        &server_cert.key_pem,
    )))
    .await;
    let ch = tls_channel(
        addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(ca.cert.pem())
            .server_name("localhost"),
    );
    let err = call(&ch).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("Expired"), "{err}");
    assert!(err.message().contains("renew it"), "the hint: {err}");
}

/// The server's certificate comes from a CA the client was not given.
#[tokio::test]
async fn unknown_issuer_says_which_ca_to_give() {
    let server_cert = leaf(&ca("theirs"), &["localhost"], |_| {});
    let (addr, _s) = serve(ServerCredentials::tls(ServerTlsConfig::from_pem(
        &server_cert.cert_pem,
        &server_cert.key_pem,
    )))
    .await;
    let ch = tls_channel(
        addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(ca("ours").cert.pem())
            .server_name("localhost"),
    );
    let err = call(&ch).await.unwrap_err();
    assert!(err.message().contains("UnknownIssuer"), "{err}");
    assert!(
        err.message().contains("ca_certificate_pem"),
        "the hint: {err}"
    );
}

/// What `openssl req -x509` makes: a self-signed CA certificate, served as
/// the server's own and trusted as the root.
#[tokio::test]
async fn a_ca_certificate_served_as_the_server_s_own_is_explained() {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).unwrap();
    let (addr, _s) = serve(ServerCredentials::tls(ServerTlsConfig::from_pem(
        cert.pem(),
        key.serialize_pem(),
    )))
    .await;
    let ch = tls_channel(
        addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(cert.pem())
            .server_name("localhost"),
    );
    let err = call(&ch).await.unwrap_err();
    assert!(err.message().contains("CaUsedAsEndEntity"), "{err}");
    assert!(err.message().contains("CA:FALSE"), "the hint: {err}");
}

/// A TLS client against a plaintext server, and the other way round.
#[tokio::test]
async fn tls_against_plaintext_says_so_both_ways() {
    let (plain, _s) = serve(ServerCredentials::insecure()).await;
    let ch = tls_channel(plain, ClientTlsConfig::new().server_name("localhost"));
    let err = call(&ch).await.unwrap_err();
    assert!(err.message().contains("plaintext"), "{err}");

    let server_cert = leaf(&ca("root"), &["localhost"], |_| {});
    let (tls, _s2) = serve(ServerCredentials::tls(ServerTlsConfig::from_pem(
        &server_cert.cert_pem,
        &server_cert.key_pem,
    )))
    .await;
    let ch = Channel::from_target(&tls.to_string()).unwrap();
    let err = call(&ch).await.unwrap_err();
    assert!(err.message().contains("TLS"), "{err}");
}

/// A TLS server (tokio-rustls, no HTTP/2) that negotiates no ALPN.
async fn tls_server_without_alpn(leaf: &Leaf) -> std::net::SocketAddr {
    use rustls::pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    use tokio::io::AsyncReadExt;
                    let mut buf = [0u8; 1024];
                    while matches!(tls.read(&mut buf).await, Ok(n) if n > 0) {}
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn server_without_alpn_h2_is_refused_by_the_client() {
    let ca = ca("root");
    let server_cert = leaf(&ca, &["localhost"], |_| {});
    let addr = tls_server_without_alpn(&server_cert).await;
    let ch = tls_channel(
        addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(ca.cert.pem())
            .server_name("localhost"),
    );
    let err = call(&ch).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable);
    assert!(err.message().contains("ALPN h2"), "{err}");
}

#[tokio::test]
async fn client_without_alpn_h2_is_refused_by_the_server() {
    use tokio::io::AsyncReadExt;
    let ca = ca("root");
    let server_cert = leaf(&ca, &["localhost"], |_| {});
    let (addr, _s) = serve(ServerCredentials::tls(ServerTlsConfig::from_pem(
        &server_cert.cert_pem,
        &server_cert.key_pem,
    )))
    .await;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            ca.cert.der().to_vec(),
        ))
        .unwrap();
    // A client offering no ALPN at all: the handshake completes, then the
    // server closes without speaking HTTP/2.
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("server closed in time");
    assert!(matches!(read, Ok(0) | Err(_)), "server sent data: {read:?}");
}

#[tokio::test]
async fn bearer_token_over_tls_and_refused_over_plaintext() {
    let ca = ca("root");
    let server_cert = leaf(&ca, &["localhost"], |_| {});
    let (addr, _s) = serve(ServerCredentials::tls(ServerTlsConfig::from_pem(
        &server_cert.cert_pem,
        &server_cert.key_pem,
    )))
    .await;
    let ch = Channel::builder(addr.to_string())
        .credentials(ChannelCredentials::tls(
            ClientTlsConfig::new()
                .ca_certificate_pem(ca.cert.pem())
                .server_name("localhost"),
        ))
        .per_rpc_credentials(BearerToken::new("s3cret"))
        .build()
        .unwrap();
    let resp = call(&ch).await.unwrap();
    assert_eq!(
        resp.metadata().get("x-authorization"),
        Some("Bearer s3cret")
    );

    // Plaintext: refused when the channel is built...
    let (plain, _s2) = serve(ServerCredentials::insecure()).await;
    let err = Channel::builder(plain.to_string())
        .per_rpc_credentials(BearerToken::new("s3cret"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("transport security"), "{err}");
    // ...and per call on a local TCP connection, which is not protected.
    let (local, _s3) = serve(ServerCredentials::local()).await;
    let ch = Channel::builder(local.to_string())
        .credentials(ChannelCredentials::local())
        .per_rpc_credentials(BearerToken::new("s3cret"))
        .build()
        .unwrap();
    let err = call(&ch).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // Unless explicitly allowed.
    let ch = Channel::builder(plain.to_string())
        .per_rpc_credentials(BearerToken::new("s3cret"))
        .allow_insecure_per_rpc_credentials(true)
        .build()
        .unwrap();
    let resp = call(&ch).await.unwrap();
    assert_eq!(
        resp.metadata().get("x-authorization"),
        Some("Bearer s3cret")
    );
}

#[cfg(unix)]
#[tokio::test]
async fn local_credentials_over_unix_socket_carry_tokens() {
    let dir = std::env::temp_dir().join(format!("ferrogrpc-tls-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("local.sock");
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).unwrap();
    let server = Server::builder()
        .add_service(Whoami)
        .credentials(ServerCredentials::local())
        .build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    let ch = Channel::builder(format!("unix:{}", path.display()))
        .credentials(ChannelCredentials::local())
        .per_rpc_credentials(BearerToken::new("uds"))
        .build()
        .unwrap();
    let resp = call(&ch).await.unwrap();
    assert_eq!(
        resp.metadata().get("x-local"),
        Some(format!("{:?}", SecurityLevel::PrivacyAndIntegrity).as_str())
    );
    assert_eq!(resp.metadata().get("x-authorization"), Some("Bearer uds"));
    server.stop();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn certificate_reload_while_serving() {
    let dir = std::env::temp_dir().join(format!("ferrogrpc-reload-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert_path, key_path) = (dir.join("server.pem"), dir.join("server.key"));
    let old_ca = ca("old root");
    let old = leaf(&old_ca, &["localhost"], |_| {});
    std::fs::write(&cert_path, &old.cert_pem).unwrap();
    std::fs::write(&key_path, &old.key_pem).unwrap();
    let (addr, server) = serve(ServerCredentials::tls(
        ServerTlsConfig::from_pem_files(&cert_path, &key_path)
            .reload_interval(Duration::from_millis(50)),
    ))
    .await;
    let trusting_old = tls_channel(
        addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(old_ca.cert.pem())
            .server_name("localhost"),
    );
    call(&trusting_old).await.unwrap();

    // Rotate to a certificate from a new CA.
    let new_ca = ca("new root");
    let new = leaf(&new_ca, &["localhost"], |_| {});
    std::fs::write(&cert_path, &new.cert_pem).unwrap();
    std::fs::write(&key_path, &new.key_pem).unwrap();
    server.reload_credentials().unwrap();
    let trusting_new = tls_channel(
        addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(new_ca.cert.pem())
            .server_name("localhost"),
    );
    call(&trusting_new).await.unwrap();
    // The live connection made before the rotation goes on.
    call(&trusting_old).await.unwrap();
    // A new connection trusting only the old CA is refused.
    let fresh_old = tls_channel(
        addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(old_ca.cert.pem())
            .server_name("localhost"),
    );
    assert_eq!(
        call(&fresh_old).await.unwrap_err().code(),
        Code::Unavailable
    );

    // Rotation is also picked up without an explicit reload.
    let third_ca = ca("third root");
    let third = leaf(&third_ca, &["localhost"], |_| {});
    std::fs::write(&key_path, &third.key_pem).unwrap();
    std::fs::write(&cert_path, &third.cert_pem).unwrap();
    let trusting_third = ClientTlsConfig::new()
        .ca_certificate_pem(third_ca.cert.pem())
        .server_name("localhost");
    let mut ok = false;
    for _ in 0..100 {
        if call(&tls_channel(addr, trusting_third.clone()))
            .await
            .is_ok()
        {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(ok, "the server picked up the new files by itself");
    // Broken files are refused and the current certificate stays.
    std::fs::write(&cert_path, "not a certificate").unwrap();
    assert!(server.reload_credentials().is_err());
    call(&tls_channel(addr, trusting_third)).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_tls_configuration_fails_clearly() {
    let server = Server::builder()
        .add_service(Whoami)
        .credentials(ServerCredentials::tls(ServerTlsConfig::from_pem(
            "nope", "nope",
        )))
        .build();
    let err = server.serve("127.0.0.1:0").await.unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("TLS"), "{err}");
    let err = Channel::builder("127.0.0.1:1")
        .credentials(ChannelCredentials::tls(
            ClientTlsConfig::new().ca_certificate_pem("garbage"),
        ))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("TLS"), "{err}");
}

#[tokio::test]
async fn tls_1_2_clients_are_served() {
    let ca = ca("root");
    let server_cert = leaf(&ca, &["localhost"], |_| {});
    let (addr, _s) = serve(ServerCredentials::tls(ServerTlsConfig::from_pem(
        &server_cert.cert_pem,
        &server_cert.key_pem,
    )))
    .await;
    // A client that speaks only TLS 1.2 (and offers h2), with a hand-made
    // gRPC request over h2.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from(
            ca.cert.der().to_vec(),
        ))
        .unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let (client, conn) = h2::client::handshake(tls).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("POST")
        .uri(format!("https://localhost:{}/t.Whoami/Call", addr.port()))
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    let mut client = client.ready().await.unwrap();
    let (resp, mut send) = client.send_request(req, false).unwrap();
    send.send_data(Bytes::from_static(&[0, 0, 0, 0, 1, b'x']), true)
        .unwrap();
    let resp = resp.await.unwrap();
    assert_eq!(resp.headers()["x-tls-version"], "TLSv1.2");
    assert!(
        resp.headers()["x-cipher"]
            .to_str()
            .unwrap()
            .starts_with("TLS_ECDHE_"),
        "{:?}",
        resp.headers()["x-cipher"]
    );
}

/// When every address of a target fails, the call says why the one that
/// got as far as a server failed (here its certificate), not that the
/// address tried last refused the connection.
#[tokio::test]
async fn the_most_informative_failure_of_all_addresses_is_reported() {
    let server_cert = leaf(&ca("theirs"), &["localhost"], |_| {});
    let (tls, _s) = serve(ServerCredentials::tls(ServerTlsConfig::from_pem(
        &server_cert.cert_pem,
        &server_cert.key_pem,
    )))
    .await;
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let ch = Channel::builder(format!("ipv4:{tls},{refused}"))
        .credentials(ChannelCredentials::tls(
            ClientTlsConfig::new()
                .ca_certificate_pem(ca("ours").cert.pem())
                .server_name("localhost"),
        ))
        .build()
        .unwrap();
    let err = call(&ch).await.unwrap_err();
    assert!(err.message().contains("UnknownIssuer"), "{err}");
}

/// A client that connected and never began TLS has no call to finish: a
/// graceful stop closes its connection, still in the TLS handshake, at once
/// instead of waiting out the handshake timeout (an hour here).
#[tokio::test]
async fn graceful_stop_does_not_wait_for_a_connection_in_its_tls_handshake() {
    let ca = ca("root");
    let server_cert = leaf(&ca, &["localhost"], |_| {});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = Server::builder()
        .add_service(Whoami)
        .credentials(ServerCredentials::tls(ServerTlsConfig::from_pem(
            &server_cert.cert_pem,
            &server_cert.key_pem,
        )))
        .handshake_timeout(Duration::from_secs(3600))
        .build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });

    let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
    // Connections are accepted in order: once this channel is ready, the
    // silent one was taken up before it.
    let ch = tls_channel(
        addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(ca.cert.pem())
            .server_name("localhost"),
    );
    ch.connect().await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), server.graceful_stop())
        .await
        .expect("the stop waited for a connection that had no call");
    let mut seen = Vec::new();
    let read = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::io::AsyncReadExt::read_to_end(&mut silent, &mut seen),
    )
    .await;
    assert!(read.is_ok(), "the connection was left open");
}

/// Channelz shows a TLS connection's cipher suite under its standard name,
/// and the server's certificate as the local one.
#[cfg(feature = "channelz")]
#[tokio::test]
async fn channelz_shows_the_tls_of_a_connection() {
    use ferrogrpc::channelz::pb::{self, channelz_client::ChannelzClient};
    let ca = ca("root");
    let server_cert = leaf(&ca, &["localhost"], |_| {});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = ferrogrpc::admin::register(Server::builder())
        .credentials(ServerCredentials::tls(ServerTlsConfig::from_pem(
            &server_cert.cert_pem,
            &server_cert.key_pem,
        )))
        .build();
    let s = server.clone();
    tokio::spawn(async move { s.serve_listener(listener).await });
    let cz = ChannelzClient::new(tls_channel(
        addr,
        ClientTlsConfig::new()
            .ca_certificate_pem(ca.cert.pem())
            .server_name("localhost"),
    ));
    let servers = cz
        .get_servers(Request::new(pb::GetServersRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .server;
    let mut seen = None;
    for s in servers {
        let id = s.r#ref.unwrap().server_id;
        let refs = cz
            .get_server_sockets(Request::new(pb::GetServerSocketsRequest {
                server_id: id,
                start_socket_id: 0,
                max_results: 0,
            }))
            .await
            .unwrap()
            .into_inner()
            .socket_ref;
        for r in refs {
            let sock = cz
                .get_socket(Request::new(pb::GetSocketRequest {
                    socket_id: r.socket_id,
                    summary: false,
                }))
                .await
                .unwrap()
                .into_inner()
                .socket
                .unwrap();
            let local_port = match sock.local.as_ref().and_then(|a| a.address.as_ref()) {
                Some(pb::address::Address::TcpipAddress(t)) => t.port,
                _ => -1,
            };
            if local_port == i32::from(addr.port()) {
                seen = Some(sock);
            }
        }
    }
    let sock = seen.expect("the TLS connection is listed");
    let Some(pb::security::Model::Tls(tls)) = sock.security.and_then(|s| s.model) else {
        panic!("no TLS data on a TLS connection");
    };
    match tls.cipher_suite {
        Some(pb::security::tls::CipherSuite::StandardName(name)) => {
            assert!(name.starts_with("TLS_"), "{name}")
        }
        other => panic!("cipher suite: {other:?}"),
    }
    assert!(tls.remote_certificate.is_empty(), "the client sent none");
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let served = CertificateDer::from_pem_slice(server_cert.cert_pem.as_bytes()).unwrap();
    assert_eq!(
        tls.local_certificate,
        served.as_ref(),
        "the server's own certificate, from its config"
    );
}

#[tokio::test]
async fn insecure_skip_verify_accepts_any_server_certificate() {
    // A certificate from a CA the client does not know, for another name.
    let unknown = ca("unknown root");
    let server_cert = leaf(&unknown, &["elsewhere.example"], |_| {});
    let (addr, _s) = serve(ServerCredentials::tls(ServerTlsConfig::from_pem(
        &server_cert.cert_pem,
        &server_cert.key_pem,
    )))
    .await;
    let verified = tls_channel(
        addr,
        ClientTlsConfig::new().ca_certificate_pem(ca("other").cert.pem()),
    );
    let err = call(&verified).await.unwrap_err();
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    let unverified = tls_channel(addr, ClientTlsConfig::new().insecure_skip_verify());
    let resp = call(&unverified).await.unwrap();
    // Still TLS, with the server's certificate seen.
    assert!(resp.metadata().get("x-tls-version").is_some());
    let peer = resp.peer().expect("client responses carry the peer");
    let tls = peer
        .auth_info
        .as_ref()
        .and_then(|a| a.tls())
        .expect("a TLS connection");
    assert_eq!(tls.peer_certificates.len(), 1);
}
