//! The builder's Prometheus metrics: one registry and its families, and their server. The
//! pipeline records what each build did; the pool's own state (each daemon up or down, its
//! builds in flight) is read when Prometheus scrapes, never copied. Served as text on a port of
//! their own (`metrics_port`; of-watchdog's metrics hold 8081).
//!
//! A leaf module: it knows durations, codes, byte counts and daemon names, not the stages.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openfaas_runtime::http::{header, HeaderValue, Method, StatusCode};
use openfaas_runtime::{handler_fn, json_error, Body, Request, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// Every family's prefix.
const PREFIX: &str = "function_builder";
/// Upper bounds of the stage histograms, in seconds: an intake of a small context takes well
/// under a second, a cold build minutes, and `build_timeout` ends one at 9 minutes by default.
const BUCKETS: [f64; 12] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0,
];
/// A scrape is a few kilobytes, read at once: a client slower than this is stalling.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// The answer's type for a scraper that asks for OpenMetrics (Prometheus does).
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// A stage of a build, as the `stage` label names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Signature, spooling, index, config and policy: everything before a daemon is asked.
    Intake,
    /// The BuildKit build, less the push where the push was timed.
    Solve,
    /// Pushing the image.
    Push,
}

impl Stage {
    fn label(self) -> &'static str {
        match self {
            Self::Intake => "intake",
            Self::Solve => "solve",
            Self::Push => "push",
        }
    }
}

/// A daemon as the pool knows it at scrape time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DaemonState {
    /// Its stable name.
    pub(crate) name: String,
    /// Whether it took builds at the last probe.
    pub(crate) up: bool,
    /// This builder's builds on it now.
    pub(crate) in_flight: usize,
}

/// What a build on a daemon came to.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Finished {
    /// The status its answer carries.
    pub(crate) code: StatusCode,
    /// How long the BuildKit build took, its push included.
    pub(crate) took: Duration,
    /// How long the push took, where it was timed.
    pub(crate) push: Option<Duration>,
    /// Its Dockerfile steps and how many came from the cache.
    pub(crate) steps: buildkit::Steps,
    /// Context bytes the daemon read.
    pub(crate) context_bytes: u64,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    daemon: String,
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DaemonLabels {
    daemon: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

type Stages = Family<StageLabels, Histogram, fn() -> Histogram>;

/// The registry and the families the pipeline records into.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    builds: Family<BuildLabels, Counter>,
    refused: Family<CodeLabels, Counter>,
    stages: Stages,
    request_bytes: Counter,
    context_bytes: Family<DaemonLabels, Counter>,
    steps: Family<DaemonLabels, Counter>,
    steps_cached: Family<DaemonLabels, Counter>,
}

impl Metrics {
    /// The families, and the daemons' gauges read from `daemons` at each scrape.
    pub(crate) fn new(daemons: impl Fn() -> Vec<DaemonState> + Send + Sync + 'static) -> Self {
        let mut registry = Registry::with_prefix(PREFIX);
        let builds = Family::default();
        registry.register(
            "builds",
            "Builds a daemon ran, by daemon and the HTTP status of the answer (499: the client went away)",
            Family::clone(&builds),
        );
        let refused = Family::default();
        registry.register(
            "requests_refused",
            "Requests answered before any daemon ran a build, by HTTP status",
            Family::clone(&refused),
        );
        let stages: Stages = Family::new_with_constructor(|| Histogram::new(BUCKETS));
        registry.register_with_unit(
            "stage_duration",
            "Time spent in each stage of a build: intake, solve (less the push where it was timed), push",
            Unit::Seconds,
            Family::clone(&stages),
        );
        let request_bytes = Counter::default();
        registry.register_with_unit(
            "request_body",
            "Request body bytes received by requests that passed intake",
            Unit::Bytes,
            Counter::clone(&request_bytes),
        );
        let context_bytes = Family::default();
        registry.register_with_unit(
            "context_sent",
            "Build context bytes the daemons read, by daemon",
            Unit::Bytes,
            Family::clone(&context_bytes),
        );
        let steps = Family::default();
        registry.register(
            "steps",
            "Dockerfile steps of finished builds, by daemon",
            Family::clone(&steps),
        );
        let steps_cached = Family::default();
        registry.register(
            "steps_cached",
            "Dockerfile steps whose result came from the daemon's cache, by daemon",
            Family::clone(&steps_cached),
        );
        registry.register_collector(Box::new(Daemons(Box::new(daemons))));
        Self {
            registry,
            builds,
            refused,
            stages,
            request_bytes,
            context_bytes,
            steps,
            steps_cached,
        }
    }

    /// A stage took `took`.
    pub(crate) fn stage(&self, stage: Stage, took: Duration) {
        let labels = StageLabels {
            stage: stage.label(),
        };
        self.stages
            .get_or_create(&labels)
            .observe(took.as_secs_f64());
    }

    /// A request passed intake with a body of `bytes`.
    pub(crate) fn received(&self, bytes: u64) {
        self.request_bytes.inc_by(bytes);
    }

    /// A request was answered `code` before any daemon ran its build.
    pub(crate) fn refused(&self, code: StatusCode) {
        let labels = CodeLabels {
            code: code.as_u16().to_string(),
        };
        self.refused.get_or_create(&labels).inc();
    }

    /// A build starts on `daemon`; what it came to is counted when the tally is finished, or as
    /// 499 when it is dropped unfinished (the client went away, which cancelled it).
    pub(crate) fn tally(self: &Arc<Self>, daemon: &str) -> Tally {
        Tally {
            metrics: Arc::clone(self),
            daemon: daemon.to_owned(),
            finished: false,
        }
    }

    fn finish(&self, daemon: &str, done: &Finished) {
        self.count(daemon, done.code);
        let push = done.push.unwrap_or_default();
        self.stage(Stage::Solve, done.took.saturating_sub(push));
        if let Some(push) = done.push {
            self.stage(Stage::Push, push);
        }
        let labels = DaemonLabels {
            daemon: daemon.to_owned(),
        };
        self.context_bytes
            .get_or_create(&labels)
            .inc_by(done.context_bytes);
        self.steps
            .get_or_create(&labels)
            .inc_by(u64::from(done.steps.total));
        self.steps_cached
            .get_or_create(&labels)
            .inc_by(u64::from(done.steps.cached));
    }

    fn count(&self, daemon: &str, code: StatusCode) {
        let labels = BuildLabels {
            daemon: daemon.to_owned(),
            code: code.as_u16().to_string(),
        };
        self.builds.get_or_create(&labels).inc();
    }

    /// The registry as text: OpenMetrics, or Prometheus' text format 0.0.4.
    fn encode(&self, openmetrics: bool) -> String {
        let mut text = String::new();
        // Writing to a String cannot fail, nor can our collector.
        let _ = if openmetrics {
            prometheus_client::encoding::text::encode(&mut text, &self.registry)
        } else {
            prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)
        };
        text
    }

    /// `GET /metrics`: OpenMetrics to a scraper that asks for it (Prometheus does), else the
    /// older text format, which any scraper reads.
    fn answer(&self, req: &Request) -> Response {
        match (req.method(), req.uri().path()) {
            (&Method::GET | &Method::HEAD, "/metrics") => {}
            (_, "/metrics") => {
                return json_error(StatusCode::METHOD_NOT_ALLOWED, "use GET /metrics")
            }
            (method, path) => {
                return json_error(
                    StatusCode::NOT_FOUND,
                    &format!("no route for {method} {path}"),
                )
            }
        }
        let openmetrics = req
            .headers()
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|accept| accept.contains("application/openmetrics-text"));
        let kind = if openmetrics {
            OPENMETRICS
        } else {
            prometheus_client::encoding::prometheus_text::CONTENT_TYPE
        };
        let mut resp = Response::new(Body::from(self.encode(openmetrics)));
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
        resp
    }
}

/// Serves `metrics` on `addr` (port 0: one the system picks) until the process ends; returns
/// where it listens.
///
/// # Errors
/// When `addr` cannot be bound.
pub(crate) async fn serve(metrics: Arc<Metrics>, addr: SocketAddr) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let handler = handler_fn(move |req: Request| {
        let metrics = Arc::clone(&metrics);
        async move { metrics.answer(&req) }
    });
    let config = openfaas_runtime::Config {
        addr: bound,
        read_timeout: Some(SCRAPE_TIMEOUT),
        write_timeout: Some(SCRAPE_TIMEOUT),
        ..openfaas_runtime::Config::default()
    };
    tokio::spawn(async move {
        let served =
            openfaas_runtime::serve_with(listener, config, handler, std::future::pending()).await;
        if let Err(err) = served {
            tracing::error!(error = %err, "the metrics server stopped");
        }
    });
    Ok(bound)
}

/// A build on a daemon, counted once: as it finished, or as 499 if it never did.
pub(crate) struct Tally {
    metrics: Arc<Metrics>,
    daemon: String,
    finished: bool,
}

impl Tally {
    /// Counts the build as `done`.
    pub(crate) fn finish(mut self, done: &Finished) {
        self.finished = true;
        self.metrics.finish(&self.daemon, done);
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if !self.finished {
            // nginx's "client closed request": no answer went out.
            let gone = StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST);
            self.metrics.count(&self.daemon, gone);
        }
    }
}

/// The daemons' gauges, read from the pool at each scrape.
struct Daemons(Box<dyn Fn() -> Vec<DaemonState> + Send + Sync>);

impl std::fmt::Debug for Daemons {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Daemons")
    }
}

impl Collector for Daemons {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let daemons = (self.0)();
        let mut gauge = |name, help, value: fn(&DaemonState) -> i64| {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
            for daemon in &daemons {
                let labels = DaemonLabels {
                    daemon: daemon.name.clone(),
                };
                ConstGauge::new(value(daemon)).encode(family.encode_family(&labels)?)?;
            }
            Ok(())
        };
        gauge(
            "daemon_up",
            "Whether the daemon took builds at the last probe (1) or was down (0)",
            |d| i64::from(d.up),
        )?;
        gauge(
            "builds_in_flight",
            "This builder's builds running on the daemon now",
            |d| i64::try_from(d.in_flight).unwrap_or(i64::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_daemons() -> Vec<DaemonState> {
        vec![
            DaemonState {
                name: "buildkitd-0".into(),
                up: true,
                in_flight: 1,
            },
            DaemonState {
                name: "buildkitd-1".into(),
                up: false,
                in_flight: 0,
            },
        ]
    }

    fn series(text: &str) -> Vec<&str> {
        text.lines().filter(|l| !l.starts_with('#')).collect()
    }

    #[test]
    fn builds_are_counted_by_daemon_and_code_and_refusals_apart() {
        let metrics = Arc::new(Metrics::new(two_daemons));
        let ok = Finished {
            code: StatusCode::OK,
            took: Duration::from_millis(3500),
            push: Some(Duration::from_millis(1500)),
            steps: buildkit::Steps {
                total: 3,
                cached: 2,
            },
            context_bytes: 541,
        };
        metrics.tally("buildkitd-0").finish(&ok);
        metrics.tally("buildkitd-0").finish(&Finished {
            code: StatusCode::UNPROCESSABLE_ENTITY,
            push: None,
            ..ok
        });
        drop(metrics.tally("buildkitd-1"));
        metrics.refused(StatusCode::UNAUTHORIZED);
        metrics.stage(Stage::Intake, Duration::from_millis(50));
        metrics.received(1024);
        let text = metrics.encode(true);
        let mut lines = series(&text);
        lines.sort_unstable();
        let mut want = vec![
            r#"function_builder_builds_total{daemon="buildkitd-0",code="200"} 1"#,
            r#"function_builder_builds_total{daemon="buildkitd-0",code="422"} 1"#,
            r#"function_builder_builds_total{daemon="buildkitd-1",code="499"} 1"#,
            r#"function_builder_requests_refused_total{code="401"} 1"#,
            "function_builder_request_body_bytes_total 1024",
            r#"function_builder_context_sent_bytes_total{daemon="buildkitd-0"} 1082"#,
            r#"function_builder_steps_total{daemon="buildkitd-0"} 6"#,
            r#"function_builder_steps_cached_total{daemon="buildkitd-0"} 4"#,
            r#"function_builder_daemon_up{daemon="buildkitd-0"} 1"#,
            r#"function_builder_daemon_up{daemon="buildkitd-1"} 0"#,
            r#"function_builder_builds_in_flight{daemon="buildkitd-0"} 1"#,
            r#"function_builder_builds_in_flight{daemon="buildkitd-1"} 0"#,
        ];
        want.sort_unstable();
        let stages: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("function_builder_stage_duration_seconds"))
            .collect();
        lines.retain(|l| !l.starts_with("function_builder_stage_duration_seconds"));
        assert_eq!(lines, want, "{text}");
        // Solve less the push: 2 s for the pushed build, 3.5 s for the other.
        for line in [
            r#"function_builder_stage_duration_seconds_count{stage="solve"} 2"#,
            r#"function_builder_stage_duration_seconds_sum{stage="solve"} 5.5"#,
            r#"function_builder_stage_duration_seconds_bucket{le="2.5",stage="solve"} 1"#,
            r#"function_builder_stage_duration_seconds_bucket{le="5.0",stage="solve"} 2"#,
            r#"function_builder_stage_duration_seconds_count{stage="push"} 1"#,
            r#"function_builder_stage_duration_seconds_sum{stage="push"} 1.5"#,
            r#"function_builder_stage_duration_seconds_count{stage="intake"} 1"#,
            r#"function_builder_stage_duration_seconds_bucket{le="0.1",stage="intake"} 1"#,
            r#"function_builder_stage_duration_seconds_bucket{le="600.0",stage="intake"} 1"#,
            r#"function_builder_stage_duration_seconds_bucket{le="+Inf",stage="intake"} 1"#,
        ] {
            assert!(
                stages.contains(&line),
                "{line} not in\n{}",
                stages.join("\n")
            );
        }
        assert!(
            text.contains("# TYPE function_builder_builds counter\n"),
            "{text}"
        );
        assert!(text.contains("# TYPE function_builder_stage_duration_seconds histogram\n"));
        assert!(text.contains("# UNIT function_builder_stage_duration_seconds seconds\n"));
        assert!(text.ends_with("# EOF\n"), "{text}");
    }

    #[test]
    fn the_daemons_are_read_at_each_scrape() {
        let state = Arc::new(std::sync::Mutex::new(two_daemons()));
        let seen = Arc::clone(&state);
        let metrics = Metrics::new(move || seen.lock().unwrap().clone());
        assert!(metrics
            .encode(false)
            .contains("function_builder_daemon_up{daemon=\"buildkitd-1\"} 0\n"));
        state.lock().unwrap()[1].up = true;
        state.lock().unwrap().push(DaemonState {
            name: "buildkitd-2".into(),
            up: true,
            in_flight: 2,
        });
        let text = metrics.encode(false);
        for line in [
            "function_builder_daemon_up{daemon=\"buildkitd-1\"} 1\n",
            "function_builder_builds_in_flight{daemon=\"buildkitd-2\"} 2\n",
            "# TYPE function_builder_daemon_up gauge\n",
        ] {
            assert!(text.contains(line), "{line} not in {text}");
        }
        // Nothing recorded yet: the families are declared, with no series.
        assert!(!text.contains("function_builder_builds_total{"), "{text}");
        assert!(!text.contains("# EOF"), "{text}");
    }

    async fn scrape(
        metrics: &Metrics,
        method: Method,
        path: &str,
        accept: &str,
    ) -> (StatusCode, String, String) {
        let req = openfaas_runtime::http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::ACCEPT, accept)
            .body(Body::empty())
            .unwrap();
        let resp = metrics.answer(&req);
        let status = resp.status();
        let kind = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let body = resp.into_body().collect_bytes(1 << 20).await.unwrap();
        (status, kind, String::from_utf8(body.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn prometheus_gets_openmetrics_and_anyone_else_the_text_format() {
        let metrics = Metrics::new(two_daemons);
        let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
        let (status, kind, body) = scrape(&metrics, Method::GET, "/metrics", prometheus).await;
        assert_eq!((status, kind.as_str()), (StatusCode::OK, OPENMETRICS));
        assert!(body.ends_with("# EOF\n"), "{body}");
        let (status, kind, body) = scrape(&metrics, Method::GET, "/metrics", "*/*").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(kind, "text/plain; version=0.0.4; charset=utf-8");
        assert!(
            body.contains("# TYPE function_builder_daemon_up gauge\n"),
            "{body}"
        );
        let (status, _, _) = scrape(&metrics, Method::POST, "/metrics", "*/*").await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        let (status, _, body) = scrape(&metrics, Method::GET, "/build", "*/*").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap(),
            serde_json::json!({"status": "failed", "error": "no route for GET /build"})
        );
    }
}
