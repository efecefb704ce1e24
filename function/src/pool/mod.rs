//! The BuildKit daemons the builder spreads its builds over (`buildkit_url`): one address, a
//! comma-separated list, or the SRV records of a Kubernetes headless Service, re-resolved. Each
//! daemon is known by a stable name; a build goes where its function's cache is warm (see
//! [`route`]), daemons are probed on an interval and skipped while down.

mod discover;
mod route;

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use buildkit::{Address, AddressError, BuildkitError, Client, TlsFiles};

use route::Candidate;

/// How long a probe may take before its daemon counts as down.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);
/// The SRV form's scheme.
const SRV_SCHEME: &str = "dns+srv://";

/// Where the builder's daemons are (`buildkit_url`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Daemons {
    /// Addresses as listed; each named by its host (`tcp://`) or else `buildkit-<n>`, its place
    /// in the list.
    Listed(Vec<Address>),
    /// `dns+srv://<name>[?server=<ip:port>]`: the SRV records of `name` (a headless Service's,
    /// `_buildkit._tcp.buildkitd.openfaas-system.svc.cluster.local`), each target a `tcp://`
    /// daemon named by the target's first label (the pod's stable name, `buildkitd-0`). Asked of
    /// the system's resolver, or of `server`.
    Srv {
        /// The SRV name.
        name: String,
        /// A DNS server to ask instead of the system's.
        server: Option<SocketAddr>,
    },
}

impl From<Address> for Daemons {
    fn from(address: Address) -> Self {
        Self::Listed(vec![address])
    }
}

/// A `buildkit_url` that names no daemon.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{value:?}: {why}")]
pub struct DaemonsError {
    value: String,
    why: String,
}

impl DaemonsError {
    fn new(value: &str, why: impl Into<String>) -> Self {
        Self {
            value: value.to_owned(),
            why: why.into(),
        }
    }
}

impl FromStr for Daemons {
    type Err = DaemonsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(rest) = s.strip_prefix(SRV_SCHEME) {
            let (name, query) = rest.split_once('?').unwrap_or((rest, ""));
            let server = match query.strip_prefix("server=") {
                Some(server) => Some(
                    server
                        .parse()
                        .map_err(|_| DaemonsError::new(s, "the server is not an ip:port"))?,
                ),
                None if query.is_empty() => None,
                None => return Err(DaemonsError::new(s, "the only query is server=<ip:port>")),
            };
            if name.is_empty() || name.contains(['/', ' ', ',']) {
                return Err(DaemonsError::new(s, "not an SRV name"));
            }
            return Ok(Self::Srv {
                name: name.to_owned(),
                server,
            });
        }
        let addresses = s
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(str::parse)
            .collect::<Result<Vec<Address>, AddressError>>()
            .map_err(|e| DaemonsError::new(s, e.to_string()))?;
        if addresses.is_empty() {
            return Err(DaemonsError::new(s, "no address"));
        }
        Ok(Self::Listed(addresses))
    }
}

impl fmt::Display for Daemons {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Listed(addresses) => {
                let texts: Vec<String> = addresses.iter().map(ToString::to_string).collect();
                f.write_str(&texts.join(","))
            }
            Self::Srv { name, server: None } => write!(f, "{SRV_SCHEME}{name}"),
            Self::Srv {
                name,
                server: Some(server),
            } => write!(f, "{SRV_SCHEME}{name}?server={server}"),
        }
    }
}

/// One daemon of the pool.
pub(crate) struct Member {
    /// Its stable name, as answers and logs give it.
    pub(crate) name: String,
    /// Where it is now: a daemon found by its SRV record is dialled at the address its name
    /// resolved to, which a restart may change.
    address: Mutex<Address>,
    /// TLS as the settings give it; for a found daemon, verified against its own name unless
    /// `buildkit_tls_server_name` names one for all.
    tls: Option<TlsFiles>,
    /// Dialled on first use, dropped when the daemon is found down.
    client: Mutex<Option<Client>>,
    up: AtomicBool,
    in_flight: AtomicUsize,
}

impl Member {
    fn new(name: String, address: Address, tls: Option<TlsFiles>) -> Arc<Self> {
        Arc::new(Self {
            name,
            address: Mutex::new(address),
            tls,
            client: Mutex::new(None),
            // Until a probe says otherwise: a new member takes builds at once.
            up: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Where it is now.
    pub(crate) fn address(&self) -> Address {
        self.address
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Moves it to `address` (its name resolved elsewhere after a restart): dialled anew.
    fn relocate(&self, address: Address) {
        let mut now = self.address.lock().unwrap_or_else(PoisonError::into_inner);
        if *now != address {
            tracing::info!(daemon = %self.name, "buildkit daemon moved");
            *now = address;
            *self.client.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    async fn client(&self) -> Result<Client, BuildkitError> {
        let cached = self
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(client) = cached {
            return Ok(client);
        }
        let connected = Client::connect(&self.address(), self.tls.as_ref()).await?;
        Ok(self
            .client
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(connected)
            .clone())
    }

    /// Marks the daemon down (a build on it failed at the transport, or a probe did): it is
    /// skipped until a probe succeeds, and dialled afresh then.
    pub(crate) fn mark_down(&self) {
        if self.up.swap(false, Ordering::SeqCst) {
            tracing::warn!(daemon = %self.name, "buildkit daemon down");
        }
        *self.client.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    fn mark_up(&self) {
        if !self.up.swap(true, Ordering::SeqCst) {
            tracing::info!(daemon = %self.name, "buildkit daemon up");
        }
    }

    /// Whether it takes builds: up until a probe, a dial or a build's transport says not.
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// This builder's builds on it now (leases not yet dropped).
    pub(crate) fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::SeqCst)
    }

    /// Asks the daemon whether it answers; marks it up or down by the answer.
    async fn probe(&self) -> Result<(), BuildkitError> {
        let answered = tokio::time::timeout(PROBE_TIMEOUT, async {
            self.client().await?.list_workers().await
        })
        .await
        .unwrap_or_else(|_| {
            Err(BuildkitError::Unavailable {
                address: self.address().to_string(),
                message: format!("no answer within {}s", PROBE_TIMEOUT.as_secs()),
            })
        });
        match answered {
            Ok(_) => {
                self.mark_up();
                Ok(())
            }
            Err(err) => {
                self.mark_down();
                Err(err)
            }
        }
    }
}

/// A build's place on a daemon: counted in flight there until dropped.
pub(crate) struct Lease {
    pub(crate) member: Arc<Member>,
    pub(crate) client: Client,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.member.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The daemons, their health and their loads.
pub(crate) struct Pool {
    daemons: Daemons,
    tls: Option<TlsFiles>,
    /// `c` of the bounded loads (`buildkit_load_factor`).
    load_factor: f64,
    /// How often the SRV records are resolved and every daemon probed.
    interval: Duration,
    members: RwLock<Vec<Arc<Member>>>,
    started: std::sync::Once,
}

impl Pool {
    pub(crate) fn new(
        daemons: Daemons,
        tls: Option<TlsFiles>,
        load_factor: f64,
        interval: Duration,
    ) -> Arc<Self> {
        let members = match &daemons {
            Daemons::Listed(addresses) => addresses
                .iter()
                .enumerate()
                .map(|(i, address)| {
                    let name = listed_name(address, i, addresses);
                    Member::new(name, address.clone(), tls.clone())
                })
                .collect(),
            Daemons::Srv { .. } => Vec::new(),
        };
        Arc::new(Self {
            daemons,
            tls,
            load_factor,
            interval,
            members: RwLock::new(members),
            started: std::sync::Once::new(),
        })
    }

    /// The daemons known now.
    pub(crate) fn members(&self) -> Vec<Arc<Member>> {
        self.members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Starts the probes (and the SRV resolution) on the current runtime, once; they stop when
    /// the pool is dropped.
    pub(crate) fn start(self: &Arc<Self>) {
        self.started.call_once(|| {
            let pool = Arc::downgrade(self);
            tokio::spawn(async move {
                let Some(every) = pool.upgrade().map(|p| p.interval) else {
                    return;
                };
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tick.tick().await;
                    let Some(pool) = pool.upgrade() else { return };
                    pool.refresh().await;
                    drop(pool);
                }
            });
        });
    }

    /// Resolves the SRV records again (where the pool has them), then probes every daemon.
    async fn refresh(&self) {
        if let Daemons::Srv { name, server } = &self.daemons {
            self.resolve(name, *server).await;
        }
        let _ = self.probe_all().await;
    }

    /// Asks every daemon at once whether it answers; true when one does.
    ///
    /// # Errors
    /// The first daemon's error, when none answers.
    pub(crate) async fn probe_all(&self) -> Result<(), BuildkitError> {
        if let Daemons::Srv { name, server } = &self.daemons {
            if self.members().is_empty() {
                self.resolve(name, *server).await;
            }
        }
        let members = self.members();
        let probes = members.iter().map(|m| m.probe());
        let answers = futures_util::future::join_all(probes).await;
        if answers.iter().any(Result::is_ok) {
            return Ok(());
        }
        Err(answers
            .into_iter()
            .find_map(Result::err)
            .unwrap_or_else(|| BuildkitError::Unavailable {
                address: self.daemons.to_string(),
                message: "no daemon found".to_owned(),
            }))
    }

    async fn resolve(&self, name: &str, server: Option<SocketAddr>) {
        let found = match discover::srv(name, server).await {
            Ok(found) => found,
            Err(err) => {
                tracing::warn!(srv = name, error = %err, "SRV records not resolved: keeping the daemons known");
                return;
            }
        };
        let mut members = self.members.write().unwrap_or_else(PoisonError::into_inner);
        let kept: Vec<Arc<Member>> = found
            .into_iter()
            .map(
                |daemon| match members.iter().find(|m| m.name == daemon.name) {
                    Some(known) => {
                        known.relocate(daemon.address);
                        Arc::clone(known)
                    }
                    None => {
                        tracing::info!(daemon = %daemon.name, "buildkit daemon found");
                        let tls = self.tls.clone().map(|files| TlsFiles {
                            server_name: files.server_name.or(Some(daemon.target)),
                            ..files
                        });
                        Member::new(daemon.name, daemon.address, tls)
                    }
                },
            )
            .collect();
        for gone in members
            .iter()
            .filter(|m| !kept.iter().any(|k| Arc::ptr_eq(k, m)))
        {
            tracing::info!(daemon = %gone.name, "buildkit daemon gone from the SRV records");
        }
        *members = kept;
    }

    /// A daemon for a build of `key` (its tenant and image repository), dialled: the first of
    /// the daemons that are up in `key`'s order that is not above its bounded load. A daemon
    /// that cannot be dialled is marked down and the next one tried; with none up, every
    /// daemon is tried in `key`'s order, as a builder with one daemon always tries it.
    ///
    /// # Errors
    /// When no daemon can be dialled: the last one's error.
    pub(crate) async fn route(self: &Arc<Self>, key: &str) -> Result<Lease, BuildkitError> {
        self.start();
        if self.members().is_empty() {
            let _ = self.probe_all().await;
        }
        let mut tried: Vec<String> = Vec::new();
        let mut last_err = None;
        loop {
            let members = self.members();
            let untried: Vec<&Arc<Member>> = members
                .iter()
                .filter(|m| !tried.contains(&m.name))
                .collect();
            let up: Vec<&Arc<Member>> = untried.iter().copied().filter(|m| m.is_up()).collect();
            let pool = if up.is_empty() { untried } else { up };
            let candidates: Vec<Candidate<'_>> = pool
                .iter()
                .map(|m| Candidate {
                    name: &m.name,
                    load: m.in_flight.load(Ordering::SeqCst),
                })
                .collect();
            let Some(chosen) = route::pick(key, &candidates, self.load_factor) else {
                return Err(last_err.unwrap_or_else(|| BuildkitError::Unavailable {
                    address: self.daemons.to_string(),
                    message: "no daemon found".to_owned(),
                }));
            };
            let member = Arc::clone(
                pool.iter()
                    .find(|m| m.name == chosen.name)
                    .expect("a candidate"),
            );
            member.in_flight.fetch_add(1, Ordering::SeqCst);
            match member.client().await {
                Ok(client) => {
                    // Dialled: it answers again, whatever the last probe said.
                    member.mark_up();
                    return Ok(Lease { member, client });
                }
                Err(err) => {
                    member.in_flight.fetch_sub(1, Ordering::SeqCst);
                    member.mark_down();
                    tried.push(member.name.clone());
                    last_err = Some(err);
                }
            }
        }
    }
}

/// A listed daemon's name: its host name for `tcp://` (unless two share it), else (an IP, a
/// socket path) `buildkit-<n>`, its place in the list.
fn listed_name(address: &Address, index: usize, all: &[Address]) -> String {
    let host_of = |a: &Address| match a {
        Address::Tcp { host, .. } if host.parse::<std::net::IpAddr>().is_err() => {
            Some(host.clone())
        }
        _ => None,
    };
    match host_of(address) {
        Some(host)
            if all
                .iter()
                .filter(|a| host_of(a) == Some(host.clone()))
                .count()
                == 1 =>
        {
            host
        }
        _ => format!("buildkit-{index}"),
    }
}

#[cfg(test)]
mod tests;
