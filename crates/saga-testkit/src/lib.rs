//! Test support for the workspace's integration tests. Never a dependency of a service.
//!
//! - [`RegistryStandIn`]: an HTTP proxy in front of the real schema registry that answers with a
//!   chosen error a chosen number of times, then passes everything through: how a registry
//!   that was briefly wrong (a 500 while its database was away, a 404 while it was restored)
//!   looks to a client.
//! - [`make_fatal`]: puts a real producer into librdkafka's fatal state through librdkafka's own
//!   test hook, so that recovery from fatal producer errors can be tested against the real
//!   broker.
//! - [`isolated`]: a Postgres schema and topics of a test's own on the shared stack.
//! - [`Recorder`]: the consumer tests' reactions, one `effects` row per applied event, failing
//!   on purpose when told to.

pub mod isolated;
mod recorder;

pub use recorder::{Recorder, effects_migrator, record_effect};

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// One scripted failure: requests whose path contains `path` get `status`, `times` times.
#[derive(Debug, Clone)]
struct Failure {
    path: String,
    status: u16,
    times: usize,
}

#[derive(Debug, Default)]
struct Script {
    failures: Vec<Failure>,
    /// Paths of every request seen, in order.
    seen: Vec<String>,
}

#[derive(Debug, Clone)]
struct Proxy {
    upstream: String,
    script: Arc<Mutex<Script>>,
    http: reqwest::Client,
}

/// A schema registry that fails on cue in front of the real one.
#[derive(Debug)]
pub struct RegistryStandIn {
    base: String,
    script: Arc<Mutex<Script>>,
    server: tokio::task::JoinHandle<()>,
}

impl RegistryStandIn {
    /// Starts a stand-in on a free loopback port for `upstream`, the real registry's API base
    /// (e.g. `http://127.0.0.1:8081/apis/ccompat/v7`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let script = Arc::new(Mutex::new(Script::default()));
        let proxy = Proxy {
            upstream: upstream.trim_end_matches('/').to_owned(),
            script: script.clone(),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .map_err(std::io::Error::other)?,
        };
        let app = axum::Router::new().fallback(forward).with_state(proxy);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self {
            base: format!("http://{address}"),
            script,
            server,
        })
    }

    /// The API base to give a client in place of the real registry's.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The next `times` requests whose path contains `path` are answered with `status`.
    pub fn fail(&self, path: &str, status: u16, times: usize) {
        lock(&self.script).failures.push(Failure {
            path: path.to_owned(),
            status,
            times,
        });
    }

    /// How many requests whose path contains `path` arrived so far.
    pub fn requests(&self, path: &str) -> usize {
        lock(&self.script)
            .seen
            .iter()
            .filter(|p| p.contains(path))
            .count()
    }
}

impl Drop for RegistryStandIn {
    fn drop(&mut self) {
        self.server.abort();
    }
}

fn lock(script: &Mutex<Script>) -> std::sync::MutexGuard<'_, Script> {
    script
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_default();
    let scripted = {
        let mut script = lock(&proxy.script);
        script.seen.push(path_and_query.clone());
        script
            .failures
            .iter_mut()
            .find(|f| f.times > 0 && path_and_query.contains(&f.path))
            .map(|failure| {
                failure.times -= 1;
                failure.status
            })
    };
    if let Some(status) = scripted {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = format!(
            r#"{{"error_code":{}01,"message":"scripted failure"}}"#,
            status.as_u16()
        );
        return (
            status,
            [(
                header::CONTENT_TYPE,
                "application/vnd.schemaregistry.v1+json",
            )],
            body,
        )
            .into_response();
    }
    let method = request.method().clone();
    let headers = request.headers().clone();
    let body = match axum::body::to_bytes(request.into_body(), 1 << 20).await {
        Ok(body) => body,
        Err(error) => return (StatusCode::BAD_REQUEST, error.to_string()).into_response(),
    };
    match relay(&proxy, method, &path_and_query, headers, body).await {
        Ok(response) => response,
        Err(error) => (StatusCode::BAD_GATEWAY, error.to_string()).into_response(),
    }
}

async fn relay(
    proxy: &Proxy,
    method: Method,
    path_and_query: &str,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, reqwest::Error> {
    let mut upstream = proxy
        .http
        .request(method, format!("{}{path_and_query}", proxy.upstream))
        .body(body);
    for name in [header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(value) = headers.get(&name) {
            upstream = upstream.header(name, value);
        }
    }
    let answer = upstream.send().await?;
    let status = answer.status();
    let content_type = answer.headers().get(header::CONTENT_TYPE).cloned();
    let bytes = answer.bytes().await?;
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    Ok(response)
}

/// Puts the producer that owns `client` into librdkafka's fatal state, as a broker fencing its
/// producer id would: every later send fails, and `fatal_error()` reports it.
pub fn make_fatal<C: rdkafka::ClientContext>(client: &rdkafka::client::Client<C>) {
    // SAFETY: the pointer is the live handle `client` owns, and the reason is a static
    // NUL-terminated string; librdkafka copies it.
    unsafe {
        rdkafka_sys::rd_kafka_test_fatal_error(
            client.native_ptr(),
            rdkafka_sys::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
            c"fatal error injected by a test".as_ptr(),
        );
    }
}
