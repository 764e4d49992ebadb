//! The resolvers whose answer is written in the target itself: `passthrough`,
//! `ipv4`, `ipv6`, `unix` and `unix-abstract`. Each reports one state when
//! built and has nothing to re-resolve.

use std::sync::Arc;

use super::{target, Address, BuildOptions, Builder, Controller, Resolver, State, Target};

/// All built-in builders, `dns` included, for the registry.
pub(super) fn builders() -> Vec<Arc<dyn Builder>> {
    vec![
        Arc::new(super::dns::DnsBuilder::default()),
        Arc::new(Static("passthrough")),
        Arc::new(Static("ipv4")),
        Arc::new(Static("ipv6")),
        Arc::new(Static("unix")),
        Arc::new(Static("unix-abstract")),
    ]
}

/// A resolver that reports the addresses its target spells out.
struct Static(&'static str);

/// Resolves nothing more after the first report.
struct Done;

impl Resolver for Done {}

/// The addresses a target of a static scheme names.
fn addresses(target: &Target) -> Result<Vec<Address>, String> {
    match target.scheme() {
        "passthrough" => {
            if target.endpoint().is_empty() {
                return Err("passthrough target has an empty endpoint".into());
            }
            Ok(vec![Address::HostPort(target.endpoint().to_string())])
        }
        scheme @ ("ipv4" | "ipv6") => {
            target::parse_ip_list(scheme, target.endpoint(), target::DEFAULT_PORT)
                .map(|addrs| addrs.into_iter().map(Address::Tcp).collect())
                .map_err(|e| e.to_string())
        }
        "unix" | "unix-abstract" => target::unix_path(target)
            .map(|unix| vec![Address::Unix(unix.socket_path())])
            .map_err(|e| e.to_string()),
        other => Err(format!("no static resolver for scheme {other:?}")),
    }
}

impl Builder for Static {
    fn scheme(&self) -> &str {
        self.0
    }

    fn check_target(&self, target: &Target) -> Result<(), String> {
        addresses(target).map(drop)
    }

    fn build(
        &self,
        target: &Target,
        controller: Controller,
        _options: BuildOptions,
    ) -> Result<Box<dyn Resolver>, String> {
        controller.update_state(State::new(addresses(target)?));
        Ok(Box::new(Done))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resolver::testing::{recorder, Report};

    fn resolve(text: &str) -> Result<Vec<Address>, String> {
        let target =
            target::parse(text, |s| super::super::get(s).is_some()).map_err(|e| e.to_string())?;
        let builder = super::super::get(target.scheme()).ok_or("no builder")?;
        let (controller, mut rx) = recorder();
        let _resolver = builder.build(&target, controller, BuildOptions::default())?;
        match rx.try_recv() {
            Ok(Report::Update(state)) => Ok(state.addresses),
            other => Err(format!("unexpected report {other:?}")),
        }
    }

    #[test]
    fn static_schemes_report_their_addresses() {
        assert_eq!(
            resolve("ipv4:127.0.0.1:1,127.0.0.2").unwrap(),
            vec![
                Address::Tcp("127.0.0.1:1".parse().unwrap()),
                Address::Tcp("127.0.0.2:443".parse().unwrap())
            ]
        );
        assert_eq!(
            resolve("ipv6:[::1]:80").unwrap(),
            vec![Address::Tcp("[::1]:80".parse().unwrap())]
        );
        assert_eq!(
            resolve("passthrough:///example.com:8080").unwrap(),
            vec![Address::HostPort("example.com:8080".into())]
        );
        assert_eq!(
            resolve("unix:///tmp/x.sock").unwrap(),
            vec![Address::Unix("/tmp/x.sock".into())]
        );
        assert_eq!(
            resolve("unix-abstract:name").unwrap(),
            vec![Address::Unix("\0name".into())]
        );
        assert_eq!(
            Address::Unix("\0name".into()).to_string(),
            "unix-abstract:name"
        );
    }

    #[test]
    fn empty_passthrough_is_refused() {
        let target = target::parse("passthrough:///", |s| s == "passthrough").unwrap();
        assert!(Static("passthrough").check_target(&target).is_err());
    }
}
