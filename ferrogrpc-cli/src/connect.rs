//! Connection flags (grpcurl's names) and the channel they make.

use std::{path::PathBuf, time::Duration};

use clap::Args;
use ferrogrpc::{
    client::Channel,
    credentials::{tls::ClientTlsConfig, ChannelCredentials},
    metadata::MetadataMap,
    Request,
};

use crate::error::Error;

/// Where the server is and how to reach it.
#[derive(Args, Debug, Clone)]
pub struct ConnectArgs {
    /// The server: `host:port`, or any target the channel accepts
    /// (`dns:///host:port`, `unix:/path`, `ipv4:1.2.3.4:50051`, ...).
    #[arg(value_name = "ADDR")]
    pub target: String,
    /// Plaintext HTTP/2 (h2c) instead of TLS.
    #[arg(long)]
    pub plaintext: bool,
    /// A PEM file of the CA to verify the server with, instead of the
    /// platform's roots.
    #[arg(long, value_name = "FILE")]
    pub cacert: Option<PathBuf>,
    /// A PEM certificate chain to present to the server (mutual TLS), with
    /// --key.
    #[arg(long, value_name = "FILE", requires = "key")]
    pub cert: Option<PathBuf>,
    /// The PEM private key of --cert.
    #[arg(long, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
    /// Skip verifying the server's certificate (for tests and debugging
    /// only: the connection is encrypted but anyone could be the server).
    #[arg(long, conflicts_with_all = ["plaintext", "cacert"])]
    pub insecure: bool,
    /// The name to verify the server's certificate against (and send in
    /// SNI), instead of the host in ADDR.
    #[arg(long, value_name = "NAME")]
    pub servername: Option<String>,
    /// The `:authority` of the calls, instead of ADDR's host.
    #[arg(long, value_name = "AUTHORITY")]
    pub authority: Option<String>,
    /// Metadata for every call, as `name: value` (repeatable; `-bin` names
    /// take base64 values).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,
    /// How long to wait for the connection, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub connect_timeout: f64,
}

impl ConnectArgs {
    /// The channel these flags describe. Lazy, like every channel: a
    /// server that cannot be reached shows in the first call's status.
    pub fn channel(&self) -> Result<Channel, Error> {
        if self.plaintext && (self.cacert.is_some() || self.cert.is_some()) {
            return Err(Error::new(
                "--plaintext cannot be combined with --cacert, --cert or --key",
            ));
        }
        let credentials = if self.plaintext {
            ChannelCredentials::insecure()
        } else {
            let mut tls = ClientTlsConfig::new();
            if self.insecure {
                eprintln!(
                    "ferrogrpc: warning: --insecure: the server's certificate is not verified"
                );
                tls = tls.insecure_skip_verify();
            }
            if let Some(ca) = &self.cacert {
                tls = tls.ca_certificate_pem(read(ca, "--cacert")?);
            }
            if let (Some(cert), Some(key)) = (&self.cert, &self.key) {
                tls = tls.identity_pem(read(cert, "--cert")?, read(key, "--key")?);
            }
            if let Some(name) = &self.servername {
                tls = tls.server_name(name.clone());
            }
            ChannelCredentials::tls(tls)
        };
        let timeout = seconds(self.connect_timeout, "--connect-timeout")?;
        let mut builder = Channel::builder(self.target.clone())
            .credentials(credentials)
            .connect_timeout(timeout)
            .user_agent(concat!("ferrogrpc-cli/", env!("CARGO_PKG_VERSION")));
        if let Some(authority) = &self.authority {
            builder = builder.authority(authority.clone());
        }
        builder
            .build()
            .map_err(|err| Error::new(format!("cannot use target {:?}: {err}", self.target)))
    }

    /// The `-H` metadata, parsed.
    pub fn metadata(&self) -> Result<MetadataMap, Error> {
        let mut map = MetadataMap::new();
        for header in &self.headers {
            let Some((name, value)) = header.split_once(':') else {
                return Err(Error::new(format!(
                    "header {header:?} is not of the form 'name: value'"
                )));
            };
            let name = name.trim().to_ascii_lowercase();
            let value = value.trim();
            let added = if name.ends_with("-bin") {
                let bytes = base64_decode(value).ok_or_else(|| {
                    Error::new(format!("the value of header {name:?} is not valid base64"))
                })?;
                map.append_bin(&name, bytes)
            } else {
                map.append(&name, value)
            };
            added.map_err(|err| Error::new(format!("header {header:?}: {err}")))?;
        }
        Ok(map)
    }

    /// A request of `message` carrying the `-H` metadata.
    pub fn request<T>(&self, message: T) -> Result<Request<T>, Error> {
        let mut request = Request::new(message);
        *request.metadata_mut() = self.metadata()?;
        Ok(request)
    }
}

/// A duration flag given in (fractional) seconds.
pub fn seconds(value: f64, flag: &str) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| Error::new(format!("{flag} must be a positive number of seconds")))
}

fn read(path: &PathBuf, flag: &str) -> Result<Vec<u8>, Error> {
    std::fs::read(path)
        .map_err(|err| Error::new(format!("{flag}: cannot read {}: {err}", path.display())))
}

/// Standard or URL-safe base64, padded or not, as gRPC accepts in `-bin`
/// metadata.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let trimmed = text.trim_end_matches('=');
    base64::engine::general_purpose::STANDARD_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(trimmed))
        .ok()
}
