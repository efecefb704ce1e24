//! The daemons behind a Kubernetes headless Service: its SRV records, one per ready pod, each
//! target the pod's stable name (`buildkitd-0.buildkitd.openfaas-system.svc.cluster.local`),
//! resolved by the same resolver.

use std::net::SocketAddr;

use buildkit::Address;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use hickory_resolver::TokioResolver;

/// A daemon an SRV record names.
pub(super) struct Found {
    /// The target's first label: the pod's stable name, `buildkitd-0`.
    pub(super) name: String,
    /// The target, for TLS: `buildkitd-0.buildkitd.openfaas-system.svc.cluster.local`.
    pub(super) target: String,
    /// Where the target resolves to now.
    pub(super) address: Address,
}

/// The daemons `name`'s SRV records name, sorted by name. Asked of `server`, or of the system's
/// resolver.
pub(super) async fn srv(name: &str, server: Option<SocketAddr>) -> Result<Vec<Found>, String> {
    let resolver = match server {
        Some(server) => {
            let mut ns = NameServerConfig::udp_and_tcp(server.ip());
            for connection in &mut ns.connections {
                connection.port = server.port();
            }
            let config = ResolverConfig::from_parts(None, Vec::new(), vec![ns]);
            TokioResolver::builder_with_config(config, TokioRuntimeProvider::default()).build()
        }
        None => TokioResolver::builder_tokio().and_then(|b| b.build()),
    }
    .map_err(|e| e.to_string())?;
    let lookup = resolver.srv_lookup(name).await.map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    for record in lookup.answers() {
        let RData::SRV(srv) = &record.data else {
            continue;
        };
        let target = srv.target.to_utf8().trim_end_matches('.').to_owned();
        let label = target.split('.').next().unwrap_or_default().to_owned();
        if label.is_empty() || found.iter().any(|f: &Found| f.name == label) {
            continue;
        }
        let ips = resolver
            .lookup_ip(format!("{target}."))
            .await
            .map_err(|e| format!("{target}: {e}"))?;
        let Some(ip) = ips.iter().next() else {
            continue;
        };
        found.push(Found {
            name: label,
            target,
            address: Address::Tcp {
                host: ip.to_string(),
                port: srv.port,
            },
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}
