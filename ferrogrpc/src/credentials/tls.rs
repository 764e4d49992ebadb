//! TLS with rustls: client and server configuration, mutual TLS, certificate
//! reload without restart, and what a handler learns about its peer.
//!
//! Both sides offer ALPN `h2` and require it: gRPC runs on HTTP/2, and a peer
//! that does not negotiate it is refused with an error that says so.
//!
//! ```no_run
//! use ferrogrpc::credentials::{tls::{ClientAuth, ServerTlsConfig}, ServerCredentials};
//! let tls = ServerTlsConfig::from_pem_files("server.pem", "server.key")
//!     .client_ca_file("clients-ca.pem")          // mTLS
//!     .client_auth(ClientAuth::Required);
//! let creds = ServerCredentials::tls(tls);
//! ```

use std::{
    fmt, fs, io,
    net::IpAddr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use arc_swap::ArcSwap;
pub use rustls::pki_types::CertificateDer;
use rustls::pki_types::{pem::PemObject, PrivateKeyDer};

/// The ALPN protocol gRPC needs.
pub(crate) const ALPN_H2: &[u8] = b"h2";

/// The *ring* provider. rustls 0.23.48 deprecates it because *ring* has no
/// post-quantum key exchange; aws-lc-rs does, but needs cmake to build, a
/// prerequisite we do not impose on every user. Kept knowingly; a feature
/// for aws-lc-rs is the way to post-quantum key exchange.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// PEM bytes, from memory or from a file read when the config is loaded.
#[derive(Clone)]
enum Pem {
    Memory(Arc<[u8]>),
    File(PathBuf),
}

impl Pem {
    fn read(&self) -> Result<Vec<u8>, String> {
        match self {
            Pem::Memory(bytes) => Ok(bytes.to_vec()),
            Pem::File(path) => {
                fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
            }
        }
    }

    fn stamp(&self) -> Option<(PathBuf, Option<SystemTime>)> {
        match self {
            Pem::Memory(_) => None,
            Pem::File(path) => Some((
                path.clone(),
                fs::metadata(path).and_then(|m| m.modified()).ok(),
            )),
        }
    }

    fn describe(&self) -> String {
        match self {
            Pem::Memory(_) => "PEM in memory".into(),
            Pem::File(path) => path.display().to_string(),
        }
    }
}

fn certs(pem: &Pem) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = pem.read()?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("bad certificate PEM in {}: {e}", pem.describe()))?;
    if certs.is_empty() {
        return Err(format!("no certificate found in {}", pem.describe()));
    }
    Ok(certs)
}

fn key(pem: &Pem) -> Result<PrivateKeyDer<'static>, String> {
    let bytes = pem.read()?;
    PrivateKeyDer::from_pem_slice(&bytes)
        .map_err(|e| format!("bad or missing private key in {}: {e}", pem.describe()))
}

fn root_store(pem: &Pem) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certs(pem)? {
        roots
            .add(cert)
            .map_err(|e| format!("bad CA certificate in {}: {e}", pem.describe()))?;
    }
    Ok(roots)
}

/// Whether and how a server asks clients for certificates.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAuth {
    /// Clients are not asked for a certificate.
    #[default]
    None,
    /// A client may present a certificate; if it does, it must verify.
    Optional,
    /// A client must present a certificate that verifies.
    Required,
}

/// TLS settings of a server.
#[derive(Clone)]
pub struct ServerTlsConfig {
    cert_chain: Pem,
    key: Pem,
    client_ca: Option<Pem>,
    client_auth: ClientAuth,
    reload_interval: Duration,
}

impl fmt::Debug for ServerTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTlsConfig")
            .field("cert_chain", &self.cert_chain.describe())
            .field("client_auth", &self.client_auth)
            .finish_non_exhaustive()
    }
}

impl ServerTlsConfig {
    /// A certificate chain (leaf first) and its private key, PEM-encoded.
    pub fn from_pem(cert_chain: impl AsRef<[u8]>, key: impl AsRef<[u8]>) -> ServerTlsConfig {
        ServerTlsConfig::new(
            Pem::Memory(cert_chain.as_ref().into()),
            Pem::Memory(key.as_ref().into()),
        )
    }

    /// A certificate chain and key from PEM files. The files are read when the
    /// server is built and again whenever they change (checked every
    /// [`reload_interval`](Self::reload_interval)), so certificates can be
    /// rotated without a restart: new connections get the new certificate,
    /// live ones go on.
    pub fn from_pem_files(cert_chain: impl AsRef<Path>, key: impl AsRef<Path>) -> ServerTlsConfig {
        ServerTlsConfig::new(
            Pem::File(cert_chain.as_ref().to_path_buf()),
            Pem::File(key.as_ref().to_path_buf()),
        )
    }

    fn new(cert_chain: Pem, key: Pem) -> ServerTlsConfig {
        ServerTlsConfig {
            cert_chain,
            key,
            client_ca: None,
            client_auth: ClientAuth::None,
            reload_interval: Duration::from_secs(60),
        }
    }

    /// The CA that client certificates must chain to (mTLS), PEM-encoded.
    /// Sets [`ClientAuth::Required`] unless another mode is chosen after.
    pub fn client_ca_pem(mut self, pem: impl AsRef<[u8]>) -> ServerTlsConfig {
        self.client_ca = Some(Pem::Memory(pem.as_ref().into()));
        self.client_auth = ClientAuth::Required;
        self
    }

    /// The client CA from a PEM file, reloaded like the certificate.
    /// Sets [`ClientAuth::Required`] unless another mode is chosen after.
    pub fn client_ca_file(mut self, path: impl AsRef<Path>) -> ServerTlsConfig {
        self.client_ca = Some(Pem::File(path.as_ref().to_path_buf()));
        self.client_auth = ClientAuth::Required;
        self
    }

    /// Whether client certificates are asked for. Needs a client CA unless
    /// [`ClientAuth::None`].
    pub fn client_auth(mut self, mode: ClientAuth) -> ServerTlsConfig {
        self.client_auth = mode;
        self
    }

    /// How often certificate files are checked for changes. Default 60 s.
    pub fn reload_interval(mut self, interval: Duration) -> ServerTlsConfig {
        self.reload_interval = interval;
        self
    }

    fn stamps(&self) -> Vec<(PathBuf, Option<SystemTime>)> {
        [
            Some(&self.cert_chain),
            Some(&self.key),
            self.client_ca.as_ref(),
        ]
        .into_iter()
        .flatten()
        .filter_map(Pem::stamp)
        .collect()
    }

    /// The rustls config, and the leaf certificate it serves.
    fn load(&self) -> Result<Loaded, String> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let builder = match (self.client_auth, &self.client_ca) {
            (ClientAuth::None, _) => builder.with_no_client_auth(),
            (mode, Some(ca)) => {
                let roots = Arc::new(root_store(ca)?);
                let verifier =
                    rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider());
                let verifier = if mode == ClientAuth::Optional {
                    verifier.allow_unauthenticated()
                } else {
                    verifier
                };
                builder.with_client_cert_verifier(verifier.build().map_err(|e| e.to_string())?)
            }
            (_, None) => return Err("client authentication needs a client CA".into()),
        };
        let chain = certs(&self.cert_chain)?;
        let leaf = chain.first().cloned();
        let mut config = builder
            .with_single_cert(chain, key(&self.key)?)
            .map_err(|e| format!("certificate and key do not match: {e}"))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Loaded {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            leaf,
        })
    }
}

/// A loaded server TLS config: swapped whole on reload, so a connection
/// gets the certificate of the config that accepted it.
pub(crate) struct Loaded {
    acceptor: tokio_rustls::TlsAcceptor,
    /// The leaf of the certificate chain it serves (rustls does not tell
    /// which certificate a connection sent; a single-certificate config
    /// always sends this one).
    leaf: Option<CertificateDer<'static>>,
}

impl Loaded {
    pub(crate) fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    /// The TLS data of a connection this config accepted.
    pub(crate) fn info(&self, conn: &rustls::ServerConnection) -> TlsInfo {
        let mut info = TlsInfo::from_server(conn);
        info.local_certificate = self.leaf.clone();
        info
    }
}

/// A server's live TLS state: the current rustls config, swapped on reload.
pub(crate) struct ServerTls {
    config: ServerTlsConfig,
    current: ArcSwap<Loaded>,
    stamps: Mutex<Vec<(PathBuf, Option<SystemTime>)>>,
}

impl ServerTls {
    pub(crate) fn new(config: ServerTlsConfig) -> Result<ServerTls, String> {
        let stamps = config.stamps();
        let loaded = config.load()?;
        Ok(ServerTls {
            config,
            current: ArcSwap::from_pointee(loaded),
            stamps: Mutex::new(stamps),
        })
    }

    /// The current config, for one connection's handshake.
    pub(crate) fn current(&self) -> Arc<Loaded> {
        self.current.load_full()
    }

    pub(crate) fn reload_interval(&self) -> Duration {
        self.config.reload_interval
    }

    /// Whether the configuration reads any files (and so can change).
    pub(crate) fn has_files(&self) -> bool {
        !self.config.stamps().is_empty()
    }

    /// Re-reads the files and swaps the config in. On error the old config
    /// stays in use.
    pub(crate) fn reload(&self) -> Result<(), String> {
        let stamps = self.config.stamps();
        let loaded = self.config.load()?;
        self.current.store(Arc::new(loaded));
        *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) = stamps;
        Ok(())
    }

    /// Reloads if any file changed since the last load.
    pub(crate) fn reload_if_changed(&self) {
        let now = self.config.stamps();
        let changed = *self.stamps.lock().unwrap_or_else(|e| e.into_inner()) != now;
        if changed {
            match self.reload() {
                Ok(()) => tracing::info!("TLS certificates reloaded"),
                Err(e) => {
                    tracing::warn!("TLS certificate reload failed, keeping the old ones: {e}")
                }
            }
        }
    }
}

#[derive(Clone)]
enum Roots {
    Platform,
    Pem(Pem),
    /// No verification of the server's certificate at all.
    AnyCertificate,
}

/// TLS settings of a channel.
#[derive(Clone)]
pub struct ClientTlsConfig {
    roots: Roots,
    server_name: Option<String>,
    identity: Option<(Pem, Pem)>,
}

impl fmt::Debug for ClientTlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTlsConfig")
            .field("server_name", &self.server_name)
            .field("identity", &self.identity.is_some())
            .finish_non_exhaustive()
    }
}

impl Default for ClientTlsConfig {
    fn default() -> ClientTlsConfig {
        ClientTlsConfig::new()
    }
}

impl ClientTlsConfig {
    /// Verifies servers against the platform's trusted roots.
    pub fn new() -> ClientTlsConfig {
        ClientTlsConfig {
            roots: Roots::Platform,
            server_name: None,
            identity: None,
        }
    }

    /// Verifies servers against this CA (PEM) instead of the platform roots.
    pub fn ca_certificate_pem(mut self, pem: impl AsRef<[u8]>) -> ClientTlsConfig {
        self.roots = Roots::Pem(Pem::Memory(pem.as_ref().into()));
        self
    }

    /// Verifies servers against the CA in this PEM file instead of the
    /// platform roots. The file is read when the channel is built.
    pub fn ca_certificate_file(mut self, path: impl AsRef<Path>) -> ClientTlsConfig {
        self.roots = Roots::Pem(Pem::File(path.as_ref().to_path_buf()));
        self
    }

    /// The name to send in SNI and to verify the server's certificate
    /// against, instead of the target's host (as `--server_host_override`).
    pub fn server_name(mut self, name: impl Into<String>) -> ClientTlsConfig {
        self.server_name = Some(name.into());
        self
    }

    /// Accepts any certificate from the server, unverified: for tests and
    /// debugging tools only (gRPC-Go's `InsecureSkipVerify`, grpcurl's
    /// `-insecure`). The connection is encrypted but not authenticated, so
    /// anyone on the path can impersonate the server; the handshake's
    /// signatures are still checked. Replaces any CA set before.
    pub fn insecure_skip_verify(mut self) -> ClientTlsConfig {
        self.roots = Roots::AnyCertificate;
        self
    }

    /// A client certificate chain and key (PEM) for mutual TLS.
    pub fn identity_pem(
        mut self,
        cert_chain: impl AsRef<[u8]>,
        key: impl AsRef<[u8]>,
    ) -> ClientTlsConfig {
        self.identity = Some((
            Pem::Memory(cert_chain.as_ref().into()),
            Pem::Memory(key.as_ref().into()),
        ));
        self
    }

    /// A client certificate chain and key from PEM files, read when the
    /// channel is built.
    pub fn identity_files(
        mut self,
        cert_chain: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> ClientTlsConfig {
        self.identity = Some((
            Pem::File(cert_chain.as_ref().to_path_buf()),
            Pem::File(key.as_ref().to_path_buf()),
        ));
        self
    }

    pub(crate) fn server_name_override(&self) -> Option<&str> {
        self.server_name.as_deref()
    }

    pub(crate) fn load(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let versions = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?;
        let roots = match &self.roots {
            Roots::AnyCertificate => {
                let builder = versions
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())));
                return self.finish(builder);
            }
            Roots::Pem(pem) => root_store(pem)?,
            Roots::Platform => {
                let found = rustls_native_certs::load_native_certs();
                let mut roots = rustls::RootCertStore::empty();
                for cert in found.certs {
                    let _ = roots.add(cert);
                }
                if roots.is_empty() {
                    return Err(format!(
                        "no trusted root certificates found on this platform ({} errors)",
                        found.errors.len()
                    ));
                }
                roots
            }
        };
        self.finish(versions.with_root_certificates(roots))
    }

    /// Adds the client certificate, if any, and ALPN.
    fn finish(
        &self,
        builder: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>,
    ) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut config = match &self.identity {
            Some((chain, k)) => builder
                .with_client_auth_cert(certs(chain)?, key(k)?)
                .map_err(|e| format!("client certificate and key do not match: {e}"))?,
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }
}

/// A subject alternative name of a certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubjectAltName {
    /// A DNS name.
    Dns(String),
    /// An IP address.
    Ip(IpAddr),
    /// A URI, such as a SPIFFE ID.
    Uri(String),
    /// An e-mail address.
    Email(String),
}

/// What a TLS connection negotiated, and the peer's certificates.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct TlsInfo {
    /// The protocol version, e.g. `"TLSv1.3"`.
    pub protocol_version: String,
    /// The cipher suite, e.g. `"TLS13_AES_128_GCM_SHA256"`.
    pub cipher_suite: String,
    /// The peer's certificate chain, leaf first (empty when the peer sent
    /// none, e.g. a client without mTLS).
    pub peer_certificates: Vec<CertificateDer<'static>>,
    /// The server name the client asked for (SNI), seen by a server.
    pub server_name: Option<String>,
    /// The certificate this side sent (a server's, from its config), for
    /// channelz.
    pub(crate) local_certificate: Option<CertificateDer<'static>>,
}

impl TlsInfo {
    pub(crate) fn from_server(conn: &rustls::ServerConnection) -> TlsInfo {
        TlsInfo::from_common(conn, conn.server_name().map(str::to_string))
    }

    pub(crate) fn from_client(conn: &rustls::ClientConnection) -> TlsInfo {
        TlsInfo::from_common(conn, None)
    }

    fn from_common(conn: &rustls::CommonState, server_name: Option<String>) -> TlsInfo {
        TlsInfo {
            protocol_version: conn
                .protocol_version()
                .map_or_else(String::new, version_name),
            cipher_suite: conn
                .negotiated_cipher_suite()
                .map_or_else(String::new, |s| format!("{:?}", s.suite())),
            peer_certificates: conn
                .peer_certificates()
                .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
                .unwrap_or_default(),
            server_name,
            local_certificate: None,
        }
    }

    /// The subject alternative names of the peer's leaf certificate.
    pub fn peer_sans(&self) -> Vec<SubjectAltName> {
        let Some(leaf) = self.peer_certificates.first() else {
            return Vec::new();
        };
        let Ok((_, cert)) = x509_parser::parse_x509_certificate(leaf.as_ref()) else {
            return Vec::new();
        };
        let Ok(Some(ext)) = cert.subject_alternative_name() else {
            return Vec::new();
        };
        use x509_parser::extensions::GeneralName;
        ext.value
            .general_names
            .iter()
            .filter_map(|name| match name {
                GeneralName::DNSName(d) => Some(SubjectAltName::Dns((*d).to_string())),
                GeneralName::URI(u) => Some(SubjectAltName::Uri((*u).to_string())),
                GeneralName::RFC822Name(e) => Some(SubjectAltName::Email((*e).to_string())),
                GeneralName::IPAddress(bytes) => match bytes.len() {
                    4 => <[u8; 4]>::try_from(*bytes)
                        .ok()
                        .map(|b| SubjectAltName::Ip(IpAddr::from(b))),
                    16 => <[u8; 16]>::try_from(*bytes)
                        .ok()
                        .map(|b| SubjectAltName::Ip(IpAddr::from(b))),
                    _ => None,
                },
                _ => None,
            })
            .collect()
    }
}

fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        other => format!("{other:?}"),
    }
}

/// Turns a handshake failure into words a user can act on: what failed,
/// and for the usual mistakes what to do about it.
pub(crate) fn describe_handshake_error(err: &io::Error) -> String {
    match err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(reason)) => describe_certificate_error(reason),
        Some(rustls::Error::NoApplicationProtocol) => {
            "the peer does not speak HTTP/2 over TLS (no ALPN h2)".into()
        }
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)) => {
            "the peer did not answer with TLS: it probably speaks plaintext (HTTP/2 without \
             TLS); use plaintext on this side too (insecure credentials, an http:// target) \
             or turn TLS on at the peer"
                .into()
        }
        Some(other) => other.to_string(),
        None => err.to_string(),
    }
}

/// A certificate the peer presented was refused; says why in plain words.
fn describe_certificate_error(reason: &rustls::CertificateError) -> String {
    use rustls::CertificateError as E;
    let hint = match reason {
        E::UnknownIssuer => {
            "the certificate is not signed by a CA this side trusts: give this side the CA \
             certificate that signed it (ClientTlsConfig::ca_certificate_pem, or \
             ServerTlsConfig::client_ca_pem for client certificates)"
        }
        E::NotValidForName | E::NotValidForNameContext { .. } => {
            "the certificate does not name the server as it was dialled: the target's host \
             must be one of its subjectAltName entries (DNS name or IP address), or set the \
             name to check with ClientTlsConfig::server_name"
        }
        E::Expired | E::ExpiredContext { .. } => {
            "the certificate has expired: renew it (and check both machines' clocks)"
        }
        E::NotValidYet | E::NotValidYetContext { .. } => {
            "the certificate is not valid yet: check both machines' clocks"
        }
        E::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => {
            "the peer presented a CA certificate (basicConstraints CA:TRUE) as its own, as \
             a plain `openssl req -x509` makes: create a CA, and a server certificate \
             signed by it with basicConstraints CA:FALSE (interop/certs/generate.sh shows how)"
        }
        _ => return format!("certificate verification failed: {reason:?}"),
    };
    format!("certificate verification failed ({reason:?}): {hint}")
}

/// The verifier of [`ClientTlsConfig::insecure_skip_verify`]: any
/// certificate chain and name pass; the handshake's signatures are checked
/// with the provider's algorithms, so the peer must still hold the key of
/// the certificate it sent.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
