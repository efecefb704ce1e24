//! `build` to an `https://` URL: a TLS front (as an ingress would be) before the real builder.

use std::sync::Arc;

use function_builder_tests::api::SECRET;
use function_builder_tests::bed::Bed;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls;

mod common;
use common::{build_args, cli, strings, write, Serve};

/// Terminates TLS for 127.0.0.1 with a fresh self-signed certificate and relays each connection
/// to `backend`; returns the front's address and the certificate's PEM.
async fn tls_front(backend: std::net::SocketAddr) -> (std::net::SocketAddr, String) {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    let cert_pem = certified.cert.pem();
    let key =
        PrivateKeyDer::from_pem_slice(certified.signing_key.serialize_pem().as_bytes()).unwrap();
    let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to relay.
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut plain = tokio::net::TcpStream::connect(backend).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    (addr, cert_pem)
}

#[tokio::test]
async fn build_over_https_verifies_the_builder_certificate() {
    let bed = Bed::get();
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("payload.txt");
    std::fs::write(&secret, SECRET).unwrap();
    let serve = Serve::on_bed(&bed, &secret);
    let (front, cert_pem) = tls_front(serve.addr()).await;
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, cert_pem).unwrap();
    write(
        dir.path(),
        "ctx/Dockerfile",
        &format!("FROM {}\nRUN echo over-tls > /tls\n", bed.base_image),
    );
    let image = format!("{}/cli/tls:1", bed.registry);
    let url = format!("https://{front}/build");
    let ctx = dir.path().join("ctx");
    let args = build_args(&ctx, &image, &url, &secret);

    // The system roots (if the machine has any) do not know a fresh self-signed certificate.
    let (ok, stdout, stderr) = cli(args.clone()).await;
    assert!(!ok, "{stdout}");
    let unknown = format!("error: TLS with {front}: invalid peer certificate: UnknownIssuer");
    let no_roots = "error: no CA certificates found on this system; pass --cacert";
    assert!(
        stderr.starts_with(&unknown) || stderr.starts_with(no_roots),
        "{stderr}"
    );

    let with_ca = [args, strings(&["--cacert", ca.to_str().unwrap()])].concat();
    let (ok, stdout, stderr) = cli(with_ca).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(stdout.contains(&format!("image: {image}")), "{stdout}");
    assert_eq!(bed.run_in_image(&image, "cat /tls"), "over-tls\n");
}
