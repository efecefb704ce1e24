//! Support for code that `#[handler]` and the template's `main` generate. Not a public API.

use std::future::Future;
use std::process::ExitCode;

pub use crate::{BoxError, Handler, Init};

/// A handler crate's entry point, implemented by `#[handler]`.
pub trait Entry: Handler + Sized {
    /// Builds the handler and its one-time state.
    fn build() -> impl Future<Output = Result<Self, BoxError>> + Send;
}

/// The template's `main`: read the config, build the handler, serve until SIGTERM.
pub fn main<E: Entry>() -> ExitCode {
    crate::server::init_tracing();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the tokio runtime");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        let config = crate::Config::from_env()?;
        let handler = E::build()
            .await
            .map_err(|err| format!("init failed: {err}"))?;
        crate::server::serve_config(config, handler).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = %err, "function stopped");
            ExitCode::FAILURE
        }
    }
}
