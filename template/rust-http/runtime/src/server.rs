//! The HTTP/1.1 server of-watchdog forwards to: accept, serve, and drain on SIGTERM.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, SignalKind};

use crate::service::dispatch;
use crate::{BoxError, Config, Handler};

/// How long to back off when `accept` fails (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `handler` with settings from the environment ([`Config::from_env`]) until SIGTERM or
/// SIGINT, then stops accepting and lets in-flight requests finish (at most `write_timeout`).
///
/// # Errors
/// When the environment holds a bad setting or the address cannot be bound.
pub async fn serve<H: Handler>(handler: H) -> Result<(), BoxError> {
    init_tracing();
    let config = Config::from_env()?;
    serve_config(config, handler).await
}

pub(crate) async fn serve_config<H: Handler>(config: Config, handler: H) -> Result<(), BoxError> {
    // Registered before binding: a SIGTERM that comes early must drain, not kill.
    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind(config.addr)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.addr))?;
    serve_with(listener, config, handler, shutdown).await?;
    Ok(())
}

/// Serves `handler` on `listener` until `shutdown` completes, then closes the listener (new
/// connections are refused) and waits for in-flight requests, at most `config.write_timeout`.
///
/// # Errors
/// Never at present; accept errors are logged and retried.
pub async fn serve_with<H: Handler>(
    listener: TcpListener,
    config: Config,
    handler: H,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let handler = Arc::new(handler);
    let config = Arc::new(config);
    let graceful = GracefulShutdown::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new()).keep_alive(true);
    http.header_read_timeout(config.effective_header_timeout());
    tracing::info!(addr = %listener.local_addr()?, "listening");

    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let handler = Arc::clone(&handler);
        let config = Arc::clone(&config);
        let service = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let handler = Arc::clone(&handler);
            let config = Arc::clone(&config);
            async move { Ok::<_, Infallible>(dispatch(&*handler, &config, req).await) }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }

    drop(listener);
    tracing::info!("shutting down: new connections are refused, in-flight requests finish");
    let drained = graceful.shutdown();
    match config.write_timeout {
        Some(budget) => {
            if tokio::time::timeout(budget, drained).await.is_err() {
                tracing::warn!(
                    ?budget,
                    "in-flight requests did not finish within write_timeout"
                );
            }
        }
        None => drained.await,
    }
    tracing::info!("stopped");
    Ok(())
}

/// Completes on SIGTERM (of-watchdog forwards it at once) or SIGINT.
fn shutdown_signal() -> io::Result<impl Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// Plain-text log lines on stderr, which of-watchdog passes on to `faas-cli logs`.
pub(crate) fn init_tracing() {
    let _already_set = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_target(false)
        .with_writer(io::stderr)
        .try_init();
}
