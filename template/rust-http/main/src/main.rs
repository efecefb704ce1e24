//! The process of-watchdog starts (`fprocess`): serves the function crate's `#[handler]` on the
//! address of `upstream_url` (default 127.0.0.1:3000) until SIGTERM, then drains in-flight requests.
//!
//! This file is part of the template and is the same for every function; write your code in
//! `function/src/lib.rs`.

fn main() -> std::process::ExitCode {
    openfaas_runtime::__private::main::<handler::__OpenfaasHandler>()
}
