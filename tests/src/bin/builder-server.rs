//! The builder in a process of its own, exactly as the template's `server` binary runs it
//! (settings and `upstream_url` from the environment), for process-level measurements such as
//! the benchmark's peak RSS.
//! Run: `upstream_url=http://127.0.0.1:0 payload_secret_path=F buildkit_url=docker:// cargo run -p function-builder-tests --bin builder-server`

fn main() -> std::process::ExitCode {
    openfaas_runtime::__private::main::<handler::__OpenfaasHandler>()
}
