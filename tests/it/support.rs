//! Test support: the real server on a random port, on SQLite (a temp file) or PostgreSQL (a
//! throwaway cluster started once per test run from the system's binaries).

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use hearth::config::Config;
use reqwest::{Method, RequestBuilder, Response};
use serde_json::Value;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A running server and a client pointed at it.
pub struct Srv {
    pub base: String,
    /// The server's shared state (its engine, its signing keys when authorization is on).
    pub state: Arc<hearth::api::AppState>,
    pub client: reqwest::Client,
    _dir: Option<Arc<tempfile::TempDir>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// An access token from the server's own keys for its base URL (authorization must be on).
pub fn mint(
    srv: &Srv,
    client: &str,
    subject: &str,
    scopes: &str,
    patient: Option<&str>,
    fhir_user: Option<&str>,
) -> String {
    let keys = srv.state.keys.as_ref().expect("auth is on");
    let issuer = hearth::auth::token::issuer_for(&srv.base);
    let request = hearth::auth::token::Request {
        issuer: &issuer,
        audience: &srv.base,
        client_id: client,
        subject,
        scope: scopes,
        patient,
        fhir_user,
        lifetime_seconds: 300,
    };
    hearth::auth::token::mint(keys, &request).expect("mint a token").0
}

/// A fresh database that outlives the servers started on it.
pub struct Db {
    pub url: String,
    dir: Option<Arc<tempfile::TempDir>>,
}

impl Db {
    pub async fn new(backend: Backend) -> Db {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("hearth.db").display());
                Db { url, dir: Some(Arc::new(dir)) }
            }
            Backend::Postgres => Db { url: postgres_database().await, dir: None },
        }
    }
}

impl Srv {
    pub async fn start(backend: Backend) -> Srv {
        Srv::start_with(backend, |_| {}).await
    }

    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut Config)) -> Srv {
        Srv::start_on(&Db::new(backend).await, tweak).await
    }

    /// A server on an existing database (e.g. the one a stopped server used).
    pub async fn start_on(db: &Db, tweak: impl FnOnce(&mut Config)) -> Srv {
        // Most tests are about FHIR behaviour, not authorization: they opt out of the default
        // (`auth = "smart"`); the authorization tests turn it back on in `tweak`.
        let mut config =
            Config { database: db.url.clone(), auth: hearth::config::AuthMode::None, ..Config::default() };
        tweak(&mut config);
        // A server stopped just before may still be letting go of the database (its last
        // tasks drop their handles a moment after `stop` returns): wait for its lock file.
        let mut tries = 0;
        let state = loop {
            match hearth::server::state(&config).await {
                Err(e) if tries < 100 && e.to_string().contains("in use by another Hearth process") => {
                    tries += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => break other.expect("server state"),
            }
        };
        let shared = state.clone();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            hearth::server::serve(state, listener, async {
                let _ = rx.await;
            })
            .await
            .expect("serve");
        });
        Srv {
            state: shared,
            base: format!("http://{addr}/fhir"),
            client: reqwest::Client::new(),
            _dir: db.dir.clone(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        match path.trim_start_matches('/') {
            "" => self.base.clone(),
            p if p.starts_with("http") => p.to_string(),
            p => format!("{}/{p}", self.base),
        }
    }

    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub async fn get(&self, path: &str) -> Response {
        self.req(Method::GET, path).send().await.expect("GET")
    }

    pub async fn send_json(&self, method: Method, path: &str, body: &Value) -> Response {
        self.req(method, path)
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .expect("request")
    }

    pub async fn post(&self, path: &str, body: &Value) -> Response {
        self.send_json(Method::POST, path, body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Response {
        self.send_json(Method::PUT, path, body).await
    }

    pub async fn delete(&self, path: &str) -> Response {
        self.req(Method::DELETE, path).send().await.expect("DELETE")
    }

    /// Creates a resource and returns the server's copy.
    pub async fn create(&self, body: &Value) -> Value {
        let rtype = body["resourceType"].as_str().expect("resourceType");
        let resp = self.post(rtype, body).await;
        assert_eq!(resp.status(), 201, "create {rtype}");
        json(resp).await
    }
}

pub async fn json(resp: Response) -> Value {
    let status = resp.status();
    let text = resp.text().await.expect("body");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("status {status}: not JSON ({e}): {text}"))
}

/// Asserts an OperationOutcome with the given HTTP status and returns it.
pub async fn outcome(resp: Response, status: u16) -> Value {
    assert_eq!(resp.status(), status, "expected {status}");
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    let body = json(resp).await;
    assert!(ct.starts_with("application/fhir+json"), "content-type {ct}");
    assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
    assert!(body["issue"][0]["diagnostics"].as_str().is_some_and(|d| !d.is_empty()), "{body}");
    body
}

/// Declares tests that run `async fn name(backend: Backend)` once on SQLite and once on
/// PostgreSQL (when its binaries are there), as `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::support::Backend::Sqlite).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::support::postgres_available() {
                    super::$name($crate::support::Backend::Postgres).await;
                }
            }
        }
    )*};
}

/// Declares a test that runs once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! both {
    ($name:ident, |$srv:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let server = $crate::support::Srv::start($crate::support::Backend::Sqlite).await;
                {
                    let $srv = &server;
                    $body
                }
                server.stop().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if !$crate::support::postgres_available() {
                    return;
                }
                let server = $crate::support::Srv::start($crate::support::Backend::Postgres).await;
                {
                    let $srv = &server;
                    $body
                }
                server.stop().await;
            }
        }
    };
}

// ---- PostgreSQL ------------------------------------------------------------------------------

struct Cluster {
    port: u16,
}

static CLUSTER: OnceLock<Option<Arc<Cluster>>> = OnceLock::new();
static DB_SEQ: AtomicU32 = AtomicU32::new(0);

/// Whether PostgreSQL tests run. Missing binaries skip them, unless HEARTH_REQUIRE_POSTGRES=1.
pub fn postgres_available() -> bool {
    let available = cluster().is_some();
    if !available {
        assert!(
            std::env::var("HEARTH_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "HEARTH_REQUIRE_POSTGRES=1 but no PostgreSQL server binaries were found (install postgresql)"
        );
        eprintln!("PostgreSQL binaries not found: skipping the PostgreSQL variant");
    }
    available
}

fn cluster() -> Option<Arc<Cluster>> {
    CLUSTER.get_or_init(|| start_cluster().map(Arc::new)).clone()
}

fn pg_bindir() -> Option<String> {
    let out = Command::new("pg_config").arg("--bindir").output().ok()?;
    let dir = String::from_utf8(out.stdout).ok()?.trim().to_string();
    if std::path::Path::new(&dir).join("initdb").exists() {
        return Some(dir);
    }
    // Debian's pg_config may come from libpq-dev while the server lives in a versioned dir.
    let mut versions: Vec<_> =
        std::fs::read_dir("/usr/lib/postgresql").ok()?.flatten().map(|e| e.path()).collect();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .map(|v| v.join("bin"))
        .find(|b| b.join("initdb").exists())
        .map(|b| b.display().to_string())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs a PostgreSQL binary, as the `postgres` user when we are root (initdb refuses root).
fn pg_command(bindir: &str, tool: &str) -> Command {
    let path = format!("{bindir}/{tool}");
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", &path]);
        c
    } else {
        Command::new(path)
    }
}

fn start_cluster() -> Option<Cluster> {
    let bindir = pg_bindir()?;
    let dir = tempfile::Builder::new().prefix("hearth-pg-").tempdir().ok()?.keep();
    let dir_s = dir.display().to_string();
    if is_root() {
        Command::new("chown").args(["-R", "postgres", &dir_s]).status().ok()?;
    }
    let data = format!("{dir_s}/data");
    let ok = pg_command(&bindir, "initdb")
        .args(["-D", &data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8"])
        .stdout(Stdio::null())
        .status()
        .ok()?
        .success();
    assert!(ok, "initdb failed in {data}");
    let port = std::net::TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let opts = format!(
        "-p {port} -k {dir_s} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
         -c full_page_writes=off -c max_connections=300"
    );
    let ok = pg_command(&bindir, "pg_ctl")
        .args(["-D", &data, "-o", &opts, "-l", &format!("{dir_s}/log"), "-w", "start"])
        .stdout(Stdio::null())
        .status()
        .ok()?
        .success();
    assert!(ok, "pg_ctl start failed; see {dir_s}/log");
    // Stop the cluster when this test process goes away, however it ends.
    let watchdog = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} -D {data} -m immediate stop >/dev/null 2>&1; rm -rf {dir_s}",
        pid = std::process::id(),
        stop = if is_root() {
            format!("runuser -u postgres -- {bindir}/pg_ctl")
        } else {
            format!("{bindir}/pg_ctl")
        },
    );
    Command::new("sh").args(["-c", &watchdog]).stdin(Stdio::null()).stdout(Stdio::null()).spawn().ok()?;
    Some(Cluster { port })
}

/// A fresh database in the shared cluster, for one test.
pub async fn postgres_database() -> String {
    let c = cluster().expect("PostgreSQL cluster");
    let name = format!("t{}_{}", std::process::id(), DB_SEQ.fetch_add(1, Ordering::SeqCst));
    let admin = format!("postgres://postgres@127.0.0.1:{}/postgres", c.port);
    let pool = sqlx::PgPool::connect(&admin).await.expect("connect to the test cluster");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&pool)
        .await
        .expect("create database");
    pool.close().await;
    format!("postgres://postgres@127.0.0.1:{}/{name}", c.port)
}
