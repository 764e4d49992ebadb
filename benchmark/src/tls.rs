//! TLS for `bench --tls`: a test CA and server certificate made at start-up.
//!
//! In `inproc` mode both sides use the same in-memory certificate. In
//! `server`/`client` modes the server writes the files to
//! `$TMPDIR/ferrogrpc-bench-tls/` and the client reads the CA from there,
//! so the two processes agree without flags. These are test credentials
//! for loopback benchmarks only.

use std::{path::PathBuf, sync::OnceLock};

use ferrogrpc::credentials::{
    tls::{ClientTlsConfig, ServerTlsConfig},
    ChannelCredentials, ServerCredentials,
};

use crate::flags::Security;

static SECURITY: OnceLock<Security> = OnceLock::new();

/// Records the run's security mode (once, at start-up).
pub fn set_security(security: Security) {
    let _ = SECURITY.set(security);
}

fn tls_on() -> bool {
    SECURITY.get() == Some(&Security::Tls)
}

/// A CA certificate and a server certificate and key, PEM-encoded.
struct Certs {
    ca: String,
    cert: String,
    key: String,
}

fn dir() -> PathBuf {
    std::env::temp_dir().join("ferrogrpc-bench-tls")
}

fn generate() -> Result<Certs, String> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let err = |e: rcgen::Error| format!("making the test certificate: {e}");
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "ferrogrpc bench test CA");
    let ca_cert = ca.self_signed(&ca_key).map_err(err)?;
    let key = KeyPair::generate().map_err(err)?;
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
        .map_err(err)?
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(err)?;
    Ok(Certs {
        ca: ca_cert.pem(),
        cert: leaf.pem(),
        key: key.serialize_pem(),
    })
}

/// The process's certificates: made once; written for (server) or read by
/// (client) another process.
fn certs(write: bool) -> Result<&'static Certs, String> {
    static CERTS: OnceLock<Result<Certs, String>> = OnceLock::new();
    CERTS
        .get_or_init(|| {
            let d = dir();
            if !write {
                if let Ok(ca) = std::fs::read_to_string(d.join("ca.pem")) {
                    return Ok(Certs {
                        ca,
                        cert: String::new(),
                        key: String::new(),
                    });
                }
            }
            let certs = generate()?;
            let io = |e: std::io::Error| format!("writing {}: {e}", d.display());
            std::fs::create_dir_all(&d).map_err(io)?;
            std::fs::write(d.join("ca.pem"), &certs.ca).map_err(io)?;
            Ok(certs)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The server's credentials for this run (`None` for plaintext).
///
/// # Errors
/// When the certificate cannot be made or written.
pub fn server_credentials() -> Result<Option<ServerCredentials>, String> {
    if !tls_on() {
        return Ok(None);
    }
    let c = certs(true)?;
    Ok(Some(ServerCredentials::tls(ServerTlsConfig::from_pem(
        &c.cert, &c.key,
    ))))
}

/// The channel's credentials for this run (`None` for plaintext).
///
/// # Errors
/// When the CA cannot be read or made.
pub fn channel_credentials() -> Result<Option<ChannelCredentials>, String> {
    if !tls_on() {
        return Ok(None);
    }
    let c = certs(false)?;
    Ok(Some(ChannelCredentials::tls(
        ClientTlsConfig::new()
            .ca_certificate_pem(&c.ca)
            .server_name("localhost"),
    )))
}
