//! Generated code for the protos in `proto/`, nested by package as the generated paths expect.
#![allow(clippy::all, clippy::pedantic, unreachable_pub, missing_docs)]

pub(crate) mod moby {
    pub(crate) mod buildkit {
        pub(crate) mod v1 {
            tonic::include_proto!("moby.buildkit.v1");
        }
        pub(crate) mod secrets {
            pub(crate) mod v1 {
                tonic::include_proto!("moby.buildkit.secrets.v1");
            }
        }
    }
    pub(crate) mod filesync {
        pub(crate) mod v1 {
            tonic::include_proto!("moby.filesync.v1");
        }
    }
}

pub(crate) mod fsutil {
    pub(crate) mod types {
        tonic::include_proto!("fsutil.types");
    }
}

pub(crate) mod grpc {
    pub(crate) mod health {
        pub(crate) mod v1 {
            tonic::include_proto!("grpc.health.v1");
        }
    }
}

pub(crate) use fsutil::types as fs;
pub(crate) use grpc::health::v1 as health;
pub(crate) use moby::buildkit::secrets::v1 as secrets;
pub(crate) use moby::buildkit::v1 as control;
pub(crate) use moby::filesync::v1 as filesync;
