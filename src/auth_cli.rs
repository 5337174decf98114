//! `hearth client …`, `hearth user …` and `hearth token`: the embedded authorization server's
//! accounts, managed from the command line.

use std::io::BufRead;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use hearth::auth::accounts::{self, Credential};
use hearth::auth::keys::Keys;
use hearth::config::Config;
use hearth::store::Store;

use crate::ServeArgs;

#[derive(Args)]
pub struct ClientArgs {
    #[command(subcommand)]
    command: ClientCommand,
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register a client: a public app (PKCE), one with a secret, or a backend service with a JWKS.
    Add(ClientAdd),
    /// List the registered clients.
    List(Db),
}

#[derive(Args)]
struct Db {
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Args)]
struct ClientAdd {
    #[command(flatten)]
    serve: ServeArgs,
    #[arg(long)]
    client_id: String,
    /// A client secret (client_secret_basic), at least 16 characters.
    #[arg(long, conflicts_with_all = ["jwks_file", "public"])]
    secret: Option<String>,
    /// The client's public keys (private_key_jwt), a JWKS file.
    #[arg(long, conflicts_with = "public")]
    jwks_file: Option<std::path::PathBuf>,
    /// A public client: no secret, PKCE required.
    #[arg(long)]
    public: bool,
    /// Redirect URIs, matched exactly (repeatable).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// The scopes the client may be granted, space-separated.
    #[arg(long)]
    scopes: String,
}

#[derive(Args)]
pub struct UserArgs {
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user who can log in at /auth/authorize.
    Add(UserAdd),
}

#[derive(Args)]
struct UserAdd {
    #[command(flatten)]
    serve: ServeArgs,
    #[arg(long)]
    username: String,
    /// Read the password from the first line of standard input (never from the command line).
    #[arg(long, required = true)]
    password_stdin: bool,
    /// The user's FHIR resource, e.g. Practitioner/123.
    #[arg(long)]
    fhir_user: Option<String>,
    /// coordinator, provider, admin, patient or staff.
    #[arg(long, default_value = "provider")]
    role: String,
    /// Require a TOTP second factor: prints the secret and an otpauth:// URI for an
    /// authenticator app.
    #[arg(long)]
    totp: bool,
}

#[derive(Args)]
pub struct LaunchArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// The patient the app is launched for.
    #[arg(long)]
    patient: String,
    /// The encounter, if any.
    #[arg(long)]
    encounter: Option<String>,
}

#[derive(Args)]
pub struct TokenArgs {
    #[command(flatten)]
    serve: ServeArgs,
    #[arg(long)]
    client_id: String,
    /// The scopes, space-separated; within the client's.
    #[arg(long)]
    scopes: String,
    /// The launch patient, for patient/ scopes.
    #[arg(long)]
    patient: Option<String>,
}

async fn open(serve: &ServeArgs) -> anyhow::Result<(Config, Store)> {
    let config = serve.config()?;
    let store =
        Store::open(&config.database).await.with_context(|| format!("opening {}", config.database))?;
    Ok((config, store))
}

/// The FHIR base tokens are for, and the issuer that names this server.
fn issuer_and_audience(config: &Config) -> (String, String) {
    let base = config.base_url.clone().unwrap_or_else(|| format!("http://{}/fhir", config.listen));
    let base = base.trim_end_matches('/').to_string();
    (hearth::auth::token::issuer_for(&base), base)
}

pub async fn client(args: ClientArgs) -> anyhow::Result<()> {
    match args.command {
        ClientCommand::Add(a) => {
            let credential = match (a.secret, a.jwks_file, a.public) {
                (Some(s), None, false) => Credential::Secret(s),
                (None, Some(f), false) => Credential::Jwks(
                    std::fs::read_to_string(&f).with_context(|| format!("reading {}", f.display()))?,
                ),
                (None, None, true) => Credential::Public,
                _ => bail!("give one of --secret, --jwks-file or --public"),
            };
            let (_, store) = open(&a.serve).await?;
            let c =
                accounts::add_client(&store, &a.client_id, credential, &a.redirect_uris, &a.scopes).await?;
            println!("added {} client {} (scopes: {})", c.kind, c.client_id, c.scopes);
        }
        ClientCommand::List(db) => {
            let (_, store) = open(&db.serve).await?;
            for c in store.clients().await? {
                println!("{}\t{}\t{}\t{}", c.client_id, c.kind, c.redirect_uris.join(","), c.scopes);
            }
        }
    }
    Ok(())
}

pub async fn user(args: UserArgs) -> anyhow::Result<()> {
    let UserCommand::Add(a) = args.command;
    let mut password = String::new();
    std::io::stdin().lock().read_line(&mut password).context("reading the password from stdin")?;
    let password = password.trim_end_matches(['\r', '\n']);
    let (_, store) = open(&a.serve).await?;
    let u = accounts::add_user(&store, &a.username, password, a.fhir_user.as_deref(), &a.role).await?;
    println!(
        "added user {} ({}{})",
        u.username,
        u.role,
        u.fhir_user.map(|f| format!(", {f}")).unwrap_or_default()
    );
    if a.totp {
        let secret = hearth::auth::secrets::new_totp_secret();
        store.set_totp(&u.username, Some(&secret)).await?;
        println!("TOTP secret (base32): {secret}");
        println!("{}", hearth::auth::secrets::otpauth_uri("Hearth", &u.username, &secret));
    }
    Ok(())
}

/// `hearth launch`: an EHR launch id for a patient (and encounter), valid five minutes. The
/// EHR passes it to the app as `launch`; the app sends it on to /auth/authorize.
pub async fn launch(args: LaunchArgs) -> anyhow::Result<()> {
    for id in std::iter::once(&args.patient).chain(args.encounter.as_ref()) {
        if !hearth::resource::valid_id(id) {
            bail!("'{id}' is not a valid resource id");
        }
    }
    let (_, store) = open(&args.serve).await?;
    let id =
        hearth::auth::flow::create_launch(&store, Some(&args.patient), args.encounter.as_deref()).await?;
    println!("{id}");
    Ok(())
}

pub async fn token(args: TokenArgs) -> anyhow::Result<()> {
    let (config, store) = open(&args.serve).await?;
    let keys = Keys::load_or_create(&store).await?;
    let (issuer, audience) = issuer_and_audience(&config);
    let (token, claims) = accounts::token_for_client(
        &store,
        &keys,
        &issuer,
        &audience,
        &args.client_id,
        &args.scopes,
        args.patient.as_deref(),
    )
    .await?;
    let mut out = serde_json::json!({
        "access_token": token,
        "token_type": "Bearer",
        "expires_in": claims.exp - claims.iat,
        "scope": claims.scope,
    });
    if let Some(p) = claims.patient {
        out["patient"] = p.into();
    }
    println!("{out}");
    Ok(())
}
