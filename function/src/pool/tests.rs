use super::*;

#[test]
fn buildkit_url_takes_one_address_a_list_or_srv_records() {
    let one: Daemons = "unix:///run/buildkit/buildkitd.sock".parse().unwrap();
    assert_eq!(
        one,
        Daemons::Listed(vec!["unix:///run/buildkit/buildkitd.sock".parse().unwrap()])
    );
    let list: Daemons = "tcp://buildkitd-0.b:1234, tcp://buildkitd-1.b:1234"
        .parse()
        .unwrap();
    assert_eq!(
        list.to_string(),
        "tcp://buildkitd-0.b:1234,tcp://buildkitd-1.b:1234"
    );
    let srv: Daemons = "dns+srv://_buildkit._tcp.buildkitd.openfaas-system.svc.cluster.local"
        .parse()
        .unwrap();
    assert_eq!(
        srv,
        Daemons::Srv {
            name: "_buildkit._tcp.buildkitd.openfaas-system.svc.cluster.local".into(),
            server: None
        }
    );
    let srv: Daemons = "dns+srv://_b._tcp.x?server=127.0.0.1:5353".parse().unwrap();
    assert_eq!(srv.to_string(), "dns+srv://_b._tcp.x?server=127.0.0.1:5353");
    for (bad, why) in [
        ("", "no address"),
        ("dns+srv://", "not an SRV name"),
        ("dns+srv://x?server=host", "the server is not an ip:port"),
        ("dns+srv://x?port=1", "the only query is server=<ip:port>"),
    ] {
        assert_eq!(
            bad.parse::<Daemons>().unwrap_err().to_string(),
            format!("{bad:?}: {why}")
        );
    }
    assert!("tcp://a:1,ftp://b".parse::<Daemons>().is_err());
}

#[test]
fn listed_daemons_are_named_by_host_or_place() {
    let all: Vec<Address> = [
        "tcp://buildkitd-0.buildkitd:1234",
        "unix:///run/buildkit/buildkitd.sock",
        "tcp://same:1",
        "tcp://same:2",
        "tcp://10.0.0.5:1234",
    ]
    .iter()
    .map(|a| a.parse().unwrap())
    .collect();
    let names: Vec<String> = all
        .iter()
        .enumerate()
        .map(|(i, a)| listed_name(a, i, &all))
        .collect();
    assert_eq!(
        names,
        [
            "buildkitd-0.buildkitd",
            "buildkit-1",
            "buildkit-2",
            "buildkit-3",
            "buildkit-4"
        ]
    );
}

#[tokio::test]
async fn a_daemon_that_cannot_be_dialled_passes_the_build_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    let dead = format!("unix://{}/none.sock", dir.path().display());
    let pool = Pool::new(
        format!("{dead},{dead}2").parse().unwrap(),
        None,
        1.25,
        Duration::from_secs(5),
    );
    let err = pool.route("t\nr").await.err().unwrap();
    assert!(matches!(err, BuildkitError::Unavailable { .. }), "{err:?}");
    assert!(pool.members().iter().all(|m| !m.is_up()));
    assert!(pool
        .members()
        .iter()
        .all(|m| m.in_flight.load(Ordering::SeqCst) == 0));
}
