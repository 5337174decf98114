//! The demo data set (`examples/demo/demo.json`), loaded through the ordinary write path.

use serde_json::Value;

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::store::Filter;

const DEMO: &str = include_str!("../examples/demo/demo.json");

/// Loads the demo resources when the database has no Patient yet; returns how many were written.
pub async fn load_if_empty(engine: &Engine) -> Result<usize> {
    if engine.store.count(&Filter { sql: "r.rtype = 'Patient'".into(), binds: vec![] }).await? > 0 {
        return Ok(0);
    }
    let bundle: Value = serde_json::from_str(DEMO).map_err(|e| Error::Internal(format!("demo data: {e}")))?;
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    let mut n = 0;
    for entry in entries {
        let resource = entry["resource"].clone();
        let rtype = resource["resourceType"].as_str().unwrap_or_default().to_string();
        let id = resource["id"].as_str().unwrap_or_default().to_string();
        engine.update(&rtype, &id, resource, None).await?;
        n += 1;
    }
    Ok(n)
}

/// The demo app and user of `serve --demo` with `auth = "smart"`.
pub struct DemoAccounts {
    pub client_id: &'static str,
    pub redirect_uri: &'static str,
    pub scopes: &'static str,
    pub username: &'static str,
    pub password: String,
    pub fhir_user: Option<String>,
    /// A backend-service client whose token the demo prints, for curl.
    pub service_id: &'static str,
    pub service_scopes: &'static str,
}

const DEMO_CLIENT: &str = "demo-app";
const DEMO_REDIRECT: &str = "http://localhost:9000/callback";
const DEMO_SCOPES: &str =
    "launch launch/patient openid fhirUser profile offline_access online_access patient/*.rs user/*.cruds";
const DEMO_USER: &str = "demo";
const DEMO_SERVICE: &str = "demo-service";
const DEMO_SERVICE_SCOPES: &str = "system/*.cruds";
const DEMO_PRACTITIONER: &str = "pract-amara-okafor";

/// Creates the demo client and user unless they exist. The user's password is new at every
/// start (only its hash is stored, so an old one could not be printed again).
pub async fn ensure_accounts(engine: &Engine) -> Result<DemoAccounts> {
    use crate::auth::accounts::{self, Credential};
    let store = &engine.store;
    if store.client(DEMO_CLIENT).await?.is_none() {
        accounts::add_client(store, DEMO_CLIENT, Credential::Public, &[DEMO_REDIRECT.into()], DEMO_SCOPES)
            .await?;
    }
    if store.client(DEMO_SERVICE).await?.is_none() {
        // Its secret is never shown: the demo mints its tokens straight from the database.
        let secret = Credential::Secret(crate::auth::secrets::random_secret());
        accounts::add_client(store, DEMO_SERVICE, secret, &[], DEMO_SERVICE_SCOPES).await?;
    }
    let fhir_user = engine
        .read("Practitioner", DEMO_PRACTITIONER)
        .await
        .ok()
        .map(|_| format!("Practitioner/{DEMO_PRACTITIONER}"));
    let password = crate::auth::secrets::random_secret().chars().take(20).collect::<String>();
    if store.user(DEMO_USER).await?.is_none() {
        accounts::add_user(store, DEMO_USER, &password, fhir_user.as_deref(), "provider").await?;
    } else {
        store.set_password(DEMO_USER, &accounts::hash_secret(&password)?).await?;
    }
    Ok(DemoAccounts {
        client_id: DEMO_CLIENT,
        redirect_uri: DEMO_REDIRECT,
        scopes: DEMO_SCOPES,
        username: DEMO_USER,
        password,
        fhir_user,
        service_id: DEMO_SERVICE,
        service_scopes: DEMO_SERVICE_SCOPES,
    })
}
