//! The real test bed `tests/run` starts: dockerd (with its embedded BuildKit), a loopback registry
//! and a busybox base image in it.

use std::path::PathBuf;

/// What a test needs to know of the bed.
#[derive(Debug, Clone)]
pub struct Bed {
    /// The Docker Engine's socket.
    pub docker_socket: PathBuf,
    /// `127.0.0.1:<port>` of the plain-HTTP registry.
    pub registry: String,
    /// A busybox image in that registry (`<registry>/bed/busybox:1`).
    pub base_image: String,
}

const HOW_TO_START: &str =
    "this test needs the real test bed (dockerd with its BuildKit, a loopback \
registry, a base image). Start it with the test command, as root: `tests/run` runs every test, \
`tests/run cargo test -p function-builder-tests` just these";

impl Bed {
    /// The running bed.
    ///
    /// # Panics
    /// When the bed's variables are not set, with a message saying how to start it. Tests that
    /// need the bed fail without it; they are never skipped.
    pub fn get() -> Self {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: {HOW_TO_START}"))
        };
        Self {
            docker_socket: PathBuf::from(var("FB_DOCKER_SOCKET")),
            registry: var("FB_REGISTRY"),
            base_image: var("FB_BASE_IMAGE"),
        }
    }
}
