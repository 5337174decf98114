//! The `hearth` command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use hearth::config::{AuthMode, Config};
use tracing_subscriber::EnvFilter;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod auth_cli;

#[derive(Parser)]
#[command(name = "hearth", version, about = "Hearth: a FHIR R4 server")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the FHIR REST API (the default command).
    Serve(ServeArgs),
    /// Serve with the demo data set loaded (same as `serve --demo`).
    Demo(ServeArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate(ServeArgs),
    /// Load NDJSON files, Bundles or resources (.json, .ndjson, .gz of either; files or directories).
    Import(ImportArgs),
    /// Recompute the search index of stored resources (after adding SearchParameters), then exit.
    Reindex(ReindexArgs),
    /// Measure create/read/update throughput against same-run baselines (see benches/README.md).
    Bench(BenchArgs),
    /// Register or list OAuth clients of the embedded authorization server.
    Client(auth_cli::ClientArgs),
    /// Add users of the embedded authorization server.
    User(auth_cli::UserArgs),
    /// Mint an access token for a registered client straight from the database (scripts, tests).
    Token(auth_cli::TokenArgs),
    /// Create an EHR launch id (SMART EHR launch) for a patient, valid five minutes.
    Launch(auth_cli::LaunchArgs),
    /// HL7 v2 messages received: process a stored message again.
    #[command(subcommand)]
    Hl7(Hl7Command),
}

#[derive(Subcommand)]
enum Hl7Command {
    /// Process the stored messages with this control id (MSH-10) again, e.g. after fixing
    /// the `[hl7_authorities]` table; prints each new ACK. With SQLite, stop the server first.
    Replay(ReplayArgs),
}

#[derive(Args)]
struct ReplayArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// The message's control id (MSH-10).
    #[arg(long)]
    id: String,
    /// Only the message from this sender (`MSH-3^MSH-4`, as recorded).
    #[arg(long)]
    sender: Option<String>,
}

#[derive(Args)]
struct BenchArgs {
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Seconds per measured series.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Databases to measure (repeatable). Default: a fresh SQLite file in a temp directory.
    #[arg(long)]
    database: Vec<String>,
    /// Measure search instead: load a generated data set and run the query families.
    #[arg(long)]
    search: bool,
    /// Measure bulk import and $export instead (eleven resources per patient).
    #[arg(long, conflicts_with = "search")]
    bulk: bool,
    /// Measure HL7 v2 VXU ingest over MLLP instead (1 and 8 connections).
    #[arg(long, conflicts_with_all = ["search", "bulk"])]
    hl7: bool,
    /// Patients in the search data set (ten resources each) or the bulk data set (eleven).
    #[arg(long, default_value_t = 100_000)]
    patients: usize,
}

#[derive(Args)]
struct ImportArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Where rejected resources are written, one JSON line each with the reason.
    #[arg(long, default_value = "hearth-import-rejected.ndjson")]
    errors: PathBuf,
    /// Files or directories to import.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

#[derive(Args)]
struct ReindexArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// Only resources of this type.
    #[arg(long = "type")]
    rtype: Option<String>,
}

#[derive(Args, Default)]
pub(crate) struct ServeArgs {
    /// Configuration file (TOML); `hearth.toml` in the working directory is read if present.
    #[arg(long, env = "HEARTH_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on, HOST:PORT.
    #[arg(long, env = "HEARTH_LISTEN")]
    listen: Option<String>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long, env = "HEARTH_DATABASE")]
    database: Option<String>,
    /// Public base URL of the FHIR endpoint, for absolute links behind a proxy.
    #[arg(long, env = "HEARTH_BASE_URL")]
    base_url: Option<String>,
    /// Authorization mode.
    #[arg(long, env = "HEARTH_AUTH", value_enum)]
    auth: Option<AuthMode>,
    /// Largest request body accepted, in bytes (default 16 MiB).
    #[arg(long, env = "HEARTH_MAX_BODY_BYTES")]
    max_body_bytes: Option<usize>,
    /// Largest _count honoured (default 1000).
    #[arg(long, env = "HEARTH_MAX_COUNT")]
    max_count: Option<usize>,
    /// Accept access tokens of this external issuer (with auth = smart) instead of our own.
    #[arg(long, env = "HEARTH_AUTH_ISSUER")]
    auth_issuer: Option<String>,
    /// The external issuer's JWKS: a file path or an http:// URL.
    #[arg(long, env = "HEARTH_AUTH_JWKS")]
    auth_jwks: Option<String>,
    /// The audience external tokens must name (default: the FHIR base URL).
    #[arg(long, env = "HEARTH_AUTH_AUDIENCE")]
    auth_audience: Option<String>,
    /// Listen for HL7 v2 over MLLP (`--mllp` alone: 127.0.0.1:2575).
    #[arg(long, env = "HEARTH_MLLP", num_args = 0..=1, default_missing_value = "127.0.0.1:2575")]
    mllp: Option<String>,
    /// MLLP over TLS: the server's certificate chain (PEM).
    #[arg(long, env = "HEARTH_MLLP_TLS_CERT", requires = "mllp_tls_key")]
    mllp_tls_cert: Option<String>,
    /// MLLP over TLS: the certificate's private key (PEM).
    #[arg(long, env = "HEARTH_MLLP_TLS_KEY", requires = "mllp_tls_cert")]
    mllp_tls_key: Option<String>,
    /// Load the demo data set when the database has no patients.
    #[arg(long)]
    demo: bool,
}

impl ServeArgs {
    pub(crate) fn config(&self) -> anyhow::Result<Config> {
        let (path, required) = match &self.config {
            Some(p) => (p.clone(), true),
            None => (PathBuf::from("hearth.toml"), false),
        };
        let mut c = Config::load(&path, required)?;
        if let Some(v) = &self.listen {
            c.listen = v.clone();
        }
        if let Some(v) = &self.database {
            c.database = v.clone();
        }
        if let Some(v) = &self.base_url {
            c.base_url = Some(v.clone());
        }
        if let Some(v) = self.auth {
            c.auth = v;
        }
        if let Some(v) = self.max_body_bytes {
            c.max_body_bytes = v;
        }
        if let Some(v) = self.max_count {
            c.max_count = v;
        }
        for (flag, setting) in [
            (&self.auth_issuer, &mut c.auth_issuer),
            (&self.auth_jwks, &mut c.auth_jwks),
            (&self.auth_audience, &mut c.auth_audience),
            (&self.mllp, &mut c.mllp),
            (&self.mllp_tls_cert, &mut c.mllp_tls_cert),
            (&self.mllp_tls_key, &mut c.mllp_tls_key),
        ] {
            if let Some(v) = flag {
                *setting = Some(v.clone());
            }
        }
        Ok(c)
    }
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_env("HEARTH_LOG").unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
            Command::Serve(args) => serve(args).await,
            Command::Demo(mut args) => {
                args.demo = true;
                serve(args).await
            }
            Command::Bench(args) => bench(args).await,
            Command::Client(args) => auth_cli::client(args).await,
            Command::User(args) => auth_cli::user(args).await,
            Command::Token(args) => auth_cli::token(args).await,
            Command::Launch(args) => auth_cli::launch(args).await,
            Command::Import(args) => {
                let config = args.serve.config()?;
                let state = hearth::server::state(&config)
                    .await
                    .with_context(|| format!("opening {}", config.database))?;
                let errors = std::fs::File::create(&args.errors)
                    .with_context(|| format!("creating {}", args.errors.display()))?;
                let importer = hearth::import::Importer::new(
                    &state.engine,
                    Box::new(std::io::BufWriter::new(errors)),
                    true,
                );
                let s = importer.run(&args.paths, Some(&args.errors)).await.context("importing")?;
                println!(
                    "imported {} resources ({} unchanged) from {} files; rejected {} (see {})",
                    s.imported,
                    s.unchanged,
                    s.files,
                    s.rejected,
                    args.errors.display()
                );
                Ok(())
            }
            Command::Reindex(args) => {
                let config = args.serve.config()?;
                let state = hearth::server::state(&config)
                    .await
                    .with_context(|| format!("opening {}", config.database))?;
                let n = state.engine.reindex(args.rtype.as_deref()).await.context("re-indexing")?;
                println!("re-indexed {n} resources");
                Ok(())
            }
            Command::Hl7(Hl7Command::Replay(args)) => replay(args).await,
            Command::Migrate(args) => {
                let config = args.config()?;
                hearth::store::Store::open(&config.database).await.context("migrating the database")?;
                tracing::info!("database {} is up to date", config.database);
                Ok(())
            }
        }
    })
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let config = args.serve.config()?;
    let state =
        hearth::server::state(&config).await.with_context(|| format!("opening {}", config.database))?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let writer = hearth::server::start_hl7_writer(&state, stopped).context("the HL7 writer")?;
    let replayed =
        hearth::hl7v2::process::replay(&state.engine, &state.hl7, &args.id, args.sender.as_deref()).await;
    let _ = stop.send(true);
    let _ = writer.await;
    let replayed = replayed.context("replaying")?;
    if replayed.is_empty() {
        anyhow::bail!("no stored HL7 message has the control id '{}'", args.id);
    }
    for (sender, before, ack) in replayed {
        let code =
            ack.split('\r').find(|l| l.starts_with("MSA")).and_then(|l| l.split('|').nth(1)).unwrap_or("?");
        println!("{sender} {}: {before} before, {code} now", args.id);
        for line in ack.split('\r').filter(|l| !l.is_empty()) {
            println!("  {line}");
        }
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let state =
        hearth::server::state(&config).await.with_context(|| format!("opening {}", config.database))?;
    let mut demo_accounts = None;
    if args.demo {
        let n = hearth::demo::load_if_empty(&state.engine).await.context("loading the demo data")?;
        tracing::info!("demo data: {n} resources loaded");
        if state.keys.is_some() && state.external.is_none() {
            demo_accounts = Some(
                hearth::demo::ensure_accounts(&state.engine).await.context("creating the demo accounts")?,
            );
        }
    }
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listener.local_addr()?;
    // Tests and scripts read this line to find a random port.
    println!("hearth listening on http://{addr}/fhir");
    if let Some(m) = state.mllp_addr {
        println!("hearth MLLP on {m}");
    }
    if let Some(d) = demo_accounts {
        // After the listening line, which scripts read first; a closed stdout is no error.
        use std::io::Write;
        let _ = writeln!(
            std::io::stdout(),
            "demo client: {} (public, PKCE) redirect_uri {} scopes \"{}\"\ndemo user: {} password: {}{}",
            d.client_id,
            d.redirect_uri,
            d.scopes,
            d.username,
            d.password,
            d.fhir_user.as_ref().map(|f| format!(" fhirUser: {f}")).unwrap_or_default(),
        );
        if let Some(keys) = &state.keys {
            // A token for curl, for the base URL of the listening address.
            let base = config.base_url.clone().unwrap_or_else(|| format!("http://{addr}/fhir"));
            let issuer = hearth::auth::token::issuer_for(&base);
            let (token, _) = hearth::auth::accounts::token_for_client(
                &state.engine.store,
                keys,
                &issuer,
                &base,
                d.service_id,
                d.service_scopes,
                None,
            )
            .await
            .context("minting the demo token")?;
            let _ = writeln!(
                std::io::stdout(),
                "demo token ({}, {}, 1 h, for {base}):\n{token}",
                d.service_id,
                d.service_scopes
            );
        }
    }
    tracing::info!("serving FHIR R4 at http://{addr}/fhir on {}", config.database);
    hearth::server::serve(state, listener, hearth::server::shutdown_signal()).await?;
    Ok(())
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("hearth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let databases = if args.database.is_empty() {
        vec![format!("sqlite://{}", dir.join("bench.db").display())]
    } else {
        args.database
    };
    println!(
        "hearth bench: {} clients, {:.1} s per series, {} cores",
        args.clients,
        args.seconds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    if args.bulk {
        let opts = hearth::bench::bulk::BulkOptions { patients: args.patients, databases, dir: dir.clone() };
        let result = hearth::bench::bulk::run(&opts).await;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(result?);
    }
    if args.hl7 {
        let opts = hearth::bench::hl7::Hl7Options {
            duration: std::time::Duration::from_secs_f64(args.seconds),
            databases,
        };
        let result = hearth::bench::hl7::run(&opts).await;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(result?);
    }
    if args.search {
        let opts = hearth::bench::search::SearchOptions {
            patients: args.patients,
            clients: args.clients,
            duration: std::time::Duration::from_secs_f64(args.seconds),
            databases,
        };
        let result = hearth::bench::search::run(&opts).await;
        let _ = std::fs::remove_dir_all(&dir);
        return Ok(result?);
    }
    let opts = hearth::bench::Options {
        clients: args.clients,
        duration: std::time::Duration::from_secs_f64(args.seconds),
        databases,
    };
    let report = hearth::bench::run(&opts).await;
    let _ = std::fs::remove_dir_all(&dir);
    report?.print();
    Ok(())
}
