//! What went wrong, and the exit code that says so.

use std::fmt;

use ferrogrpc::{Code, Status};

/// An error that ends the command: printed on stderr, then the process
/// exits with [`Error::exit_code`].
#[derive(Debug)]
pub struct Error {
    message: String,
    exit: u8,
}

impl Error {
    /// A usage or input error (exit code 1).
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            message: message.into(),
            exit: 1,
        }
    }

    /// The same error with another exit code.
    pub fn with_exit(mut self, exit: u8) -> Error {
        self.exit = exit;
        self
    }

    /// The process's exit code for this error.
    pub fn exit_code(&self) -> u8 {
        self.exit
    }

    /// A call to `target` that failed with `status`, before the command
    /// could do its work (reflection, health): the status is explained,
    /// with a hint when it looks like a plaintext/TLS mismatch or an
    /// unreachable server.
    pub fn rpc(target: &str, what: &str, status: &Status) -> Error {
        let mut message = format!(
            "{what} on {target} failed: {}: {}",
            status.code(),
            status.message()
        );
        if let Some(hint) = hint(status) {
            message.push_str("\n  ");
            message.push_str(hint);
        }
        Error::new(message).with_exit(status_exit(status.code()))
    }
}

/// The exit code for a call that ended with `code`, as grpcurl's: 64 plus
/// the code.
pub fn status_exit(code: Code) -> u8 {
    64 + code as u8
}

/// A hint at the likely cause of a status the transport made up.
pub fn hint(status: &Status) -> Option<&'static str> {
    if status.code() != Code::Unavailable {
        return None;
    }
    let message = status.message().to_ascii_lowercase();
    let has = |needle: &str| message.contains(needle);
    if has("did not answer with tls")
        || has("corrupt message")
        || has("invalidcontenttype")
        || has("invalid content type")
    {
        Some("the server answered TLS with plaintext: is it a plaintext server? (try --plaintext)")
    } else if has("did not answer with http/2")
        || has("frame size")
        || has("frame_size")
        || has("invalid preface")
        || has("protocol error")
    {
        Some(
            "the server did not answer as HTTP/2 over plaintext: is it a TLS server? \
             (drop --plaintext)",
        )
    } else if has("fatal alert") {
        Some(
            "the server refused the TLS handshake: does it want a client certificate \
             (--cert and --key) signed by a CA it trusts?",
        )
    } else if has("connection refused") {
        Some("nothing listens at that address")
    } else if has("certificate") || has("unknownissuer") || has("unknown issuer") {
        Some("the server's certificate was not trusted: pass its CA with --cacert")
    } else {
        None
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}
