//! The embedded SMART authorization server driven over HTTP as a browser and an app would:
//! authorization code + PKCE with login, patient picker and consent; EHR launch; refresh
//! rotation; id_token; introspection; revocation; the refusals. (`oauth_setups.rs`: several
//! nodes, an external issuer, the demo accounts, a real SMART client.)

use std::collections::HashMap;

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};
use sha2::Digest;

use crate::support::{Backend, Db, Srv, json};

pub(crate) const REDIRECT: &str = "http://localhost:9000/callback";
pub(crate) const PASSWORD: &str = "a long passphrase 42";

/// Declares a test that runs on SQLite and PostgreSQL against a server with `auth = "smart"`.
macro_rules! smart {
    ($name:ident, |$srv:ident| $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            async fn run($srv: &Srv) $body
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let srv = start(Backend::Sqlite).await;
                run(&srv).await;
                srv.stop().await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if !crate::support::postgres_available() {
                    return;
                }
                let srv = start(Backend::Postgres).await;
                run(&srv).await;
                srv.stop().await;
            }
        }
    };
}

pub(crate) async fn start(backend: Backend) -> Srv {
    let srv = Srv::start_on(&Db::new(backend).await, |c| c.auth = hearth::config::AuthMode::Smart).await;
    seed(&srv).await;
    srv
}

/// Patients, a practitioner, clients and users.
pub(crate) async fn seed(srv: &Srv) {
    let admin = admin_token(srv);
    for r in [
        // alice (a provider, Practitioner/pr1) is their general practitioner: the care-team
        // policy lets her user/ scopes reach them.
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Ward", "given": ["Ada"]}], "birthDate": "1970-01-02",
               "generalPractitioner": [{"reference": "Practitioner/pr1"}]}),
        json!({"resourceType": "Patient", "id": "p2", "name": [{"family": "Stone", "given": ["Bo"]}],
               "generalPractitioner": [{"reference": "Practitioner/pr1"}]}),
        json!({"resourceType": "Practitioner", "id": "pr1", "name": [{"family": "House"}]}),
    ] {
        let url = format!("{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        let resp = srv
            .req(Method::PUT, &url)
            .bearer_auth(&admin)
            .header("content-type", "application/fhir+json")
            .body(r.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201, "{url}");
    }
    use hearth::auth::accounts::{Credential, add_client, add_user};
    let store = &srv.state.engine.store;
    let scopes = "launch launch/patient openid fhirUser profile offline_access online_access patient/*.rs user/Patient.rs";
    add_client(store, "app", Credential::Public, &[REDIRECT.into()], scopes).await.unwrap();
    let secret = Credential::Secret("conf-secret-0123456789".into());
    add_client(store, "conf", secret, &[REDIRECT.into()], scopes).await.unwrap();
    let rs = Credential::Secret("rs-secret-0123456789".into());
    add_client(store, "rs", rs, &[], "system/*.rs").await.unwrap();
    add_user(store, "alice", PASSWORD, Some("Practitioner/pr1"), "provider").await.unwrap();
}

pub(crate) fn admin_token(srv: &Srv) -> String {
    crate::support::mint(srv, "test", "test", "user/*.cruds", None, None)
}

pub(crate) fn root(srv: &Srv) -> String {
    srv.base.trim_end_matches("/fhir").to_string()
}

/// A browser that does not follow redirects.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub(crate) fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()))
}

pub(crate) const VERIFIER: &str = "a-verifier-of-at-least-forty-three-characters-0123456789";

/// What a page answered: status, body, Location.
pub(crate) struct Answer {
    status: u16,
    pub(crate) body: String,
    location: Option<String>,
}

impl Answer {
    pub(crate) fn pending(&self) -> String {
        let start = self
            .body
            .find("name=\"pending\" value=\"")
            .unwrap_or_else(|| panic!("no pending id: {}", self.body));
        let rest = &self.body[start + 22..];
        rest[..rest.find('"').unwrap()].to_string()
    }

    /// The query parameters of the redirect.
    fn redirect(&self) -> HashMap<String, String> {
        let loc = self
            .location
            .as_deref()
            .unwrap_or_else(|| panic!("no redirect ({}): {}", self.status, self.body));
        assert!(loc.starts_with(REDIRECT), "{loc}");
        url::Url::parse(loc).unwrap().query_pairs().into_owned().collect()
    }
}

pub(crate) async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let location = resp.headers().get("location").map(|v| v.to_str().unwrap().to_string());
    let cookie =
        resp.headers().get("set-cookie").map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
    let a = Answer { status, body: resp.text().await.unwrap(), location };
    // The browser keeps the sign-in cookie: later pages of this sign-in send it back.
    if let Some(c) = cookie {
        jar().lock().unwrap().insert(a.pending(), c);
    }
    a
}

/// The sign-in cookies the test "browser" holds, by pending id.
fn jar() -> &'static std::sync::Mutex<HashMap<String, String>> {
    static JAR: std::sync::OnceLock<std::sync::Mutex<HashMap<String, String>>> = std::sync::OnceLock::new();
    JAR.get_or_init(Default::default)
}

/// The cookie header of the sign-in `pending`, if the browser holds one.
pub(crate) fn cookie_for(pending: &str) -> String {
    jar().lock().unwrap().get(pending).cloned().unwrap_or_default()
}

async fn authorize(srv: &Srv, params: &[(&str, &str)]) -> Answer {
    let url = format!("{}/auth/authorize", root(srv));
    answer(browser().get(url).query(params).send().await.unwrap()).await
}

async fn post_page(srv: &Srv, fields: &[(&str, &str)]) -> Answer {
    let url = format!("{}/auth/authorize", root(srv));
    let pending = fields.iter().find(|(k, _)| *k == "pending").map(|(_, v)| *v).unwrap_or_default();
    let req = browser().post(url).form(fields).header("cookie", cookie_for(pending));
    answer(req.send().await.unwrap()).await
}

/// The standard request of the public app, with `extra` added or replacing.
fn request<'a>(srv: &'a Srv, scope: &'a str, extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut p = vec![
        ("response_type", "code"),
        ("client_id", "app"),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "st-123"),
        ("aud", srv.base.as_str()),
        ("code_challenge_method", "S256"),
        ("nonce", "n-456"),
    ];
    for (k, v) in extra {
        p.retain(|(x, _)| x != k);
        p.push((k, v));
    }
    p
}

async fn login(srv: &Srv, page: &Answer, username: &str, password: &str, totp: &str) -> Answer {
    let id = page.pending();
    let fields = [
        ("pending", id.as_str()),
        ("step", "login"),
        ("username", username),
        ("password", password),
        ("totp", totp),
    ];
    post_page(srv, &fields).await
}

async fn consent(srv: &Srv, page: &Answer, decision: &str) -> Answer {
    assert!(page.body.contains("Allow access?"), "not the consent page: {}", page.body);
    let id = page.pending();
    post_page(srv, &[("pending", id.as_str()), ("step", "consent"), ("decision", decision)]).await
}

async fn token_request(srv: &Srv, basic: Option<(&str, &str)>, form: &[(&str, &str)]) -> (u16, Value) {
    let mut req = srv.client.post(format!("{}/auth/token", root(srv))).form(form);
    if let Some((id, secret)) = basic {
        req = req.basic_auth(id, Some(secret));
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    assert_eq!(resp.headers().get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"));
    (status, json(resp).await)
}

/// The code of a public-app flow with patient picker (p1), approved.
pub(crate) async fn code_for(srv: &Srv, scope: &str) -> String {
    let ch = challenge(VERIFIER);
    let ch = ch.as_str();
    let page = authorize(srv, &request(srv, scope, &[("code_challenge", ch)])).await;
    assert_eq!(page.status, 200, "{}", page.body);
    let mut page = login(srv, &page, "alice", PASSWORD, "").await;
    if page.body.contains("Choose a patient") {
        let id = page.pending();
        page = post_page(srv, &[("pending", id.as_str()), ("step", "patient"), ("patient", "p1")]).await;
    }
    let done = consent(srv, &page, "approve").await;
    let q = done.redirect();
    assert_eq!(q.get("state").map(String::as_str), Some("st-123"));
    q["code"].clone()
}

pub(crate) async fn exchange(srv: &Srv, code: &str, verifier: &str) -> (u16, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("client_id", "app"),
        ("code_verifier", verifier),
    ];
    token_request(srv, None, &form).await
}

pub(crate) async fn read_patient(srv: &Srv, token: &str) -> u16 {
    srv.req(Method::GET, "Patient/p1").bearer_auth(token).send().await.unwrap().status().as_u16()
}

pub(crate) const FULL: &str = "launch/patient openid fhirUser offline_access patient/*.rs user/Patient.rs";

smart!(standalone_public_app_with_picker_refresh_and_id_token, |srv| {
    let ch = challenge(VERIFIER);
    let ch = ch.as_str();
    let page = authorize(srv, &request(srv, FULL, &[("code_challenge", ch)])).await;
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains("name=\"username\"") && page.body.contains("name=\"password\""),
        "{}",
        page.body
    );
    let page = login(srv, &page, "alice", PASSWORD, "").await;
    assert!(page.body.contains("Choose a patient") && page.body.contains("Ward"), "{}", page.body);
    // The picker searches by name through the engine.
    let id = page.pending();
    let found = post_page(srv, &[("pending", id.as_str()), ("step", "patient"), ("name", "Stone")]).await;
    assert!(found.body.contains("Stone") && !found.body.contains("Ward"), "{}", found.body);
    let page = post_page(srv, &[("pending", id.as_str()), ("step", "patient"), ("patient", "p1")]).await;
    assert!(page.body.contains("Read, search all resources of the selected patient"), "{}", page.body);
    let done = consent(srv, &page, "approve").await;
    assert_eq!(done.status, 302);
    let q = done.redirect();
    assert_eq!(q["state"], "st-123");
    let (status, tokens) = exchange(srv, &q["code"], VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["patient"], "p1");
    assert_eq!(tokens["scope"], FULL);
    let access = tokens["access_token"].as_str().unwrap();
    assert_eq!(read_patient(srv, access).await, 200);
    check_id_token(srv, tokens["id_token"].as_str().unwrap(), "app", Some("n-456")).await;

    // Refresh: rotated, may narrow, never widen.
    let old = tokens["refresh_token"].as_str().unwrap();
    let refresh = |t: &str, scope: Option<&str>| {
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", t), ("client_id", "app")];
        form.extend(scope.map(|s| ("scope", s)));
        let form: Vec<(String, String)> =
            form.into_iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
            token_request(srv, None, &form).await
        }
    };
    let (status, wide) = refresh(old, Some("user/*.cruds")).await;
    assert_eq!((status, wide["error"].as_str()), (400, Some("invalid_scope")), "{wide}");
    let (status, next) = refresh(old, Some("user/Patient.rs offline_access")).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["scope"], "user/Patient.rs offline_access");
    assert_eq!(next["patient"], "p1");
    let newer = next["refresh_token"].as_str().unwrap();
    assert_ne!(newer, old);
    assert_eq!(read_patient(srv, next["access_token"].as_str().unwrap()).await, 200);
    // The new refresh token keeps the original grant.
    let (status, again) = refresh(newer, Some(FULL)).await;
    assert_eq!(status, 200, "{again}");
    let newest = again["refresh_token"].as_str().unwrap().to_string();
    // The old one no longer works, and its replay revokes the family.
    let (status, replay) = refresh(old, None).await;
    assert_eq!((status, replay["error"].as_str()), (400, Some("invalid_grant")), "{replay}");
    let (status, _) = refresh(&newest, None).await;
    assert_eq!(status, 400, "a replay revokes the family");
});

/// Verifies an id_token with the server's JWKS.
async fn check_id_token(srv: &Srv, id_token: &str, client: &str, nonce: Option<&str>) {
    let jwks = json(srv.client.get(format!("{}/auth/jwks", root(srv))).send().await.unwrap()).await;
    let header = jsonwebtoken::decode_header(id_token).unwrap();
    let jwk =
        jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"].as_str() == header.kid.as_deref()).unwrap();
    let key = jsonwebtoken::DecodingKey::from_jwk(&serde_json::from_value(jwk.clone()).unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_audience(&[client]);
    v.set_issuer(&[format!("{}/auth", root(srv))]);
    let claims = jsonwebtoken::decode::<Value>(id_token, &key, &v).expect("id_token verifies").claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["fhirUser"], format!("{}/Practitioner/pr1", srv.base));
    assert_eq!(claims["nonce"].as_str(), nonce);
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
}

smart!(confidential_client_with_secret, |srv| {
    // No PKCE needed for a confidential client; no patient picker without launch/patient.
    let scope = "openid profile user/Patient.rs";
    let params = [
        ("response_type", "code"),
        ("client_id", "conf"),
        ("redirect_uri", REDIRECT),
        ("scope", scope),
        ("state", "s1"),
        ("aud", srv.base.as_str()),
    ];
    let page = authorize(srv, &params).await;
    let page = login(srv, &page, "alice", PASSWORD, "").await;
    let q = consent(srv, &page, "approve").await.redirect();
    let form =
        [("grant_type", "authorization_code"), ("code", q["code"].as_str()), ("redirect_uri", REDIRECT)];
    let (status, err) = token_request(srv, Some(("conf", "wrong-secret-0123456789")), &form).await;
    assert_eq!((status, err["error"].as_str()), (401, Some("invalid_client")));
    // A confidential client cannot pass as public.
    let public = [&form[..], &[("client_id", "conf")]].concat();
    let (status, _) = token_request(srv, None, &public).await;
    assert_eq!(status, 401);
    let (status, tokens) = token_request(srv, Some(("conf", "conf-secret-0123456789")), &form).await;
    assert_eq!(status, 200, "{tokens}");
    assert!(tokens.get("refresh_token").is_none(), "no offline/online access, no refresh token");
    assert!(tokens.get("patient").is_none());
    check_id_token(srv, tokens["id_token"].as_str().unwrap(), "conf", None).await;
    assert_eq!(read_patient(srv, tokens["access_token"].as_str().unwrap()).await, 200);
});

smart!(ehr_launch_with_a_launch_id, |srv| {
    let launch =
        hearth::auth::flow::create_launch(&srv.state.engine.store, Some("p2"), Some("enc9")).await.unwrap();
    let ch = challenge(VERIFIER);
    let ch = ch.as_str();
    let scope = "launch openid fhirUser patient/*.rs user/Patient.rs";
    let page =
        authorize(srv, &request(srv, scope, &[("code_challenge", ch), ("launch", launch.as_str())])).await;
    let page = login(srv, &page, "alice", PASSWORD, "").await;
    // The launch gave the patient: straight to consent, and the picker cannot replace it.
    assert!(page.body.contains("Patient/p2"), "{}", page.body);
    let id = page.pending();
    let page = post_page(srv, &[("pending", id.as_str()), ("step", "patient"), ("patient", "p1")]).await;
    assert!(page.body.contains("Patient/p2") && !page.body.contains("Patient/p1"), "{}", page.body);
    let q = consent(srv, &page, "approve").await.redirect();
    let (status, tokens) = exchange(srv, &q["code"], VERIFIER).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!((tokens["patient"].as_str(), tokens["encounter"].as_str()), (Some("p2"), Some("enc9")));
    let bad =
        authorize(srv, &request(srv, scope, &[("code_challenge", ch), ("launch", "nope")])).await.redirect();
    assert_eq!(bad["error"], "invalid_request");
});

smart!(request_refusals, |srv| {
    let ch = challenge(VERIFIER);
    let ch = ch.as_str();
    // An unregistered redirect URI is never redirected to.
    let page = authorize(
        srv,
        &request(srv, FULL, &[("code_challenge", ch), ("redirect_uri", "https://evil.example/cb")]),
    )
    .await;
    assert_eq!(page.status, 400);
    assert!(page.location.is_none());
    assert!(page.body.contains("redirect_uri is not registered"), "{}", page.body);
    let page =
        authorize(srv, &request(srv, FULL, &[("code_challenge", ch), ("client_id", "<b>nobody</b>")])).await;
    assert_eq!(page.status, 400);
    // After the redirect URI is trusted, errors go back to the client with the state.
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![], "invalid_request"), // no PKCE from a public client
        (vec![("code_challenge", ch), ("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge", ch), ("scope", "user/*.cruds")], "invalid_scope"),
        (vec![("code_challenge", ch), ("aud", "https://other.example/fhir")], "invalid_request"),
        (vec![("code_challenge", ch), ("response_type", "token")], "unsupported_response_type"),
    ];
    for (extra, error) in cases {
        let q = authorize(srv, &request(srv, FULL, &extra)).await.redirect();
        assert_eq!(q["error"], error, "{extra:?}");
        assert_eq!(q["state"], "st-123");
        assert!(q.contains_key("error_description"));
    }
    // Deny at consent.
    let page =
        authorize(srv, &request(srv, "openid fhirUser user/Patient.rs", &[("code_challenge", ch)])).await;
    let page = login(srv, &page, "alice", PASSWORD, "").await;
    let q = consent(srv, &page, "deny").await.redirect();
    assert_eq!((q["error"].as_str(), q["state"].as_str()), ("access_denied", "st-123"));
    assert!(!q.contains_key("code"));
});

smart!(code_refusals, |srv| {
    // Wrong verifier.
    let code = code_for(srv, FULL).await;
    let (status, err) = exchange(srv, &code, "x-wrong-verifier-of-at-least-forty-three-characters-000").await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{err}");
    // The failed attempt used the code up.
    let (status, _) = exchange(srv, &code, VERIFIER).await;
    assert_eq!(status, 400);
    // A code used twice: the second use fails and revokes the first use's refresh token.
    let code = code_for(srv, FULL).await;
    let (status, tokens) = exchange(srv, &code, VERIFIER).await;
    assert_eq!(status, 200);
    let (status, err) = exchange(srv, &code, VERIFIER).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")));
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", "app")];
    let (status, err) = token_request(srv, None, &form).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")), "{err}");
    // An expired code.
    let code = "an-expired-code";
    let stale = hearth::store::AuthCode {
        client_id: "app".into(),
        redirect_uri: REDIRECT.into(),
        scope: "user/Patient.rs".into(),
        username: "alice".into(),
        fhir_user: None,
        patient: None,
        encounter: None,
        code_challenge: Some(challenge(VERIFIER)),
        nonce: None,
        expires: hearth::resource::instant::now_ms() - 1000,
    };
    let now = hearth::resource::instant::now_ms();
    srv.state.engine.store.add_code(&hearth::auth::secrets::hash(code), &stale, now).await.unwrap();
    let (status, err) = exchange(srv, code, VERIFIER).await;
    assert_eq!(
        (status, err["error_description"].as_str()),
        (400, Some("the authorization code has expired"))
    );
    let (status, err) = exchange(srv, "never-issued", VERIFIER).await;
    assert_eq!((status, err["error"].as_str()), (400, Some("invalid_grant")));
});

smart!(login_lockout_and_totp, |srv| {
    let ch = challenge(VERIFIER);
    let ch = ch.as_str();
    let params = request(srv, "openid fhirUser user/Patient.rs", &[("code_challenge", ch)]);
    let start = || authorize(srv, &params);
    let page = start().await;
    let wrong = login(srv, &page, "alice", "not the password", "").await;
    assert_eq!(wrong.status, 401);
    assert!(wrong.body.contains("invalid username or password"));
    let nobody = login(srv, &page, "mallory", "whatever it is", "").await;
    assert_eq!(
        (nobody.status, nobody.body.replace(&nobody.pending(), "")),
        (401, wrong.body.replace(&wrong.pending(), ""))
    );
    // Four more failures lock the account: the right password is refused, with the same words.
    for _ in 0..4 {
        assert_eq!(login(srv, &page, "alice", "not the password", "").await.status, 401);
    }
    let locked = login(srv, &page, "alice", PASSWORD, "").await;
    assert_eq!(locked.status, 401);
    assert!(locked.body.contains("invalid username or password"));
    // TOTP: a second user with a secret.
    let store = &srv.state.engine.store;
    hearth::auth::accounts::add_user(store, "bob", PASSWORD, None, "provider").await.unwrap();
    let secret = hearth::auth::secrets::new_totp_secret();
    assert!(store.set_totp("bob", Some(&secret)).await.unwrap());
    let page = start().await;
    assert_eq!(login(srv, &page, "bob", PASSWORD, "").await.status, 401);
    assert_eq!(login(srv, &page, "bob", PASSWORD, "000000x").await.status, 401);
    let now = hearth::resource::instant::now_ms() / 1000;
    let code = totp(&secret, now);
    let ok = login(srv, &page, "bob", PASSWORD, &code).await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.body.contains("Allow access?"));
    // The same code does not work twice.
    let page = start().await;
    assert_eq!(login(srv, &page, "bob", PASSWORD, &code).await.status, 401);
});

/// RFC 6238 TOTP computed here from the base32 secret, independently of the server's code.
fn totp(secret: &str, unix: i64) -> String {
    use hmac::{KeyInit, Mac};
    let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut bits = String::new();
    for c in secret.chars() {
        bits += &format!("{:05b}", alphabet.find(c).unwrap());
    }
    let key: Vec<u8> = bits
        .as_bytes()
        .chunks(8)
        .filter(|c| c.len() == 8)
        .map(|c| u8::from_str_radix(std::str::from_utf8(c).unwrap(), 2).unwrap())
        .collect();
    let mut mac = hmac::Hmac::<sha1::Sha1>::new_from_slice(&key).unwrap();
    mac.update(&((unix / 30) as u64).to_be_bytes());
    let d = mac.finalize().into_bytes();
    let o = (d[19] & 15) as usize;
    let n = u32::from_be_bytes([d[o] & 0x7f, d[o + 1], d[o + 2], d[o + 3]]) % 1_000_000;
    format!("{n:06}")
}

async fn introspect(srv: &Srv, token: &str) -> Value {
    let resp = srv
        .client
        .post(format!("{}/auth/introspect", root(srv)))
        .basic_auth("rs", Some("rs-secret-0123456789"))
        .form(&[("token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    json(resp).await
}

pub(crate) async fn revoke(srv: &Srv, token: &str) -> u16 {
    let form = [("token", token), ("client_id", "app")];
    srv.client.post(format!("{}/auth/revoke", root(srv))).form(&form).send().await.unwrap().status().as_u16()
}

smart!(introspection_and_revocation, |srv| {
    let code = code_for(srv, FULL).await;
    let (_, tokens) = exchange(srv, &code, VERIFIER).await;
    let access = tokens["access_token"].as_str().unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let info = introspect(srv, access).await;
    assert_eq!(info["active"], true, "{info}");
    assert_eq!((info["client_id"].as_str(), info["sub"].as_str()), (Some("app"), Some("alice")));
    assert_eq!((info["patient"].as_str(), info["fhirUser"].as_str()), (Some("p1"), Some("Practitioner/pr1")));
    assert_eq!(info["scope"], FULL);
    assert_eq!(introspect(srv, "garbage").await, json!({"active": false}));
    assert_eq!(introspect(srv, refresh).await["token_type"], "refresh_token");
    // Public clients may not introspect.
    let resp = srv
        .client
        .post(format!("{}/auth/introspect", root(srv)))
        .form(&[("token", access), ("client_id", "app")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // Revoking the access token: the FHIR endpoint refuses it at once (it was cached).
    assert_eq!(read_patient(srv, access).await, 200);
    assert_eq!(revoke(srv, access).await, 200);
    assert_eq!(read_patient(srv, access).await, 401);
    assert_eq!(introspect(srv, access).await, json!({"active": false}));
    // Revoking the refresh token.
    assert_eq!(revoke(srv, refresh).await, 200);
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh), ("client_id", "app")];
    assert_eq!(token_request(srv, None, &form).await.0, 400);
    assert_eq!(introspect(srv, refresh).await, json!({"active": false}));
    assert_eq!(revoke(srv, "unknown-token").await, 200, "RFC 7009 §2.2");
});

smart!(smart_configuration, |srv| {
    for path in ["/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"] {
        let resp = srv.client.get(format!("{}{path}", root(srv))).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let c = json(resp).await;
        let issuer = format!("{}/auth", root(srv));
        assert_eq!(c["issuer"], issuer);
        assert_eq!(c["authorization_endpoint"], format!("{issuer}/authorize"));
        assert_eq!(c["token_endpoint"], format!("{issuer}/token"));
        assert_eq!(c["jwks_uri"], format!("{issuer}/jwks"));
        assert_eq!(c["introspection_endpoint"], format!("{issuer}/introspect"));
        assert_eq!(c["revocation_endpoint"], format!("{issuer}/revoke"));
        assert_eq!(c["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(c["response_types_supported"], json!(["code"]));
        assert_eq!(
            c["token_endpoint_auth_methods_supported"],
            json!(["client_secret_basic", "private_key_jwt"])
        );
        let caps: Vec<&str> =
            c["capabilities"].as_array().unwrap().iter().filter_map(Value::as_str).collect();
        for cap in [
            "launch-standalone",
            "launch-ehr",
            "client-public",
            "context-ehr-patient",
            "permission-v2",
            "sso-openid-connect",
        ] {
            assert!(caps.contains(&cap), "{cap}");
        }
    }
    // HTML pages forbid framing and scripts.
    let page = srv.client.get(format!("{}/auth/authorize?client_id=nobody", root(srv))).send().await.unwrap();
    assert_eq!(page.headers()["x-frame-options"], "DENY");
    assert!(page.headers()["content-security-policy"].to_str().unwrap().contains("default-src 'none'"));
    assert!(!page.text().await.unwrap().contains("<b>"));
});

smart!(sign_ins_stay_in_their_browser_and_pick_only_the_users_patients, |srv| {
    // A patient outside alice's panel (she is the general practitioner of p1 and p2 only).
    let admin = admin_token(srv);
    let p3 = json!({"resourceType": "Patient", "id": "p3", "name": [{"family": "Outside"}]});
    let resp = srv
        .req(Method::PUT, "Patient/p3")
        .bearer_auth(&admin)
        .header("content-type", "application/fhir+json")
        .body(p3.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let ch = challenge(VERIFIER);
    let page = authorize(srv, &request(srv, FULL, &[("code_challenge", ch.as_str())])).await;
    let id = page.pending();
    // Another browser (no sign-in cookie) cannot go on with this sign-in, by GET or POST.
    let fields = [("pending", id.as_str()), ("step", "login"), ("username", "alice"), ("password", PASSWORD)];
    let url = format!("{}/auth/authorize", root(srv));
    let elsewhere = answer(browser().post(&url).form(&fields).send().await.unwrap()).await;
    assert_eq!(elsewhere.status, 400);
    assert!(elsewhere.body.contains("another browser"), "{}", elsewhere.body);
    let elsewhere =
        answer(browser().get(&url).query(&[("pending", id.as_str())]).send().await.unwrap()).await;
    assert_eq!(elsewhere.status, 400);
    // The starting browser can; its picker offers alice's patients only.
    let page = login(srv, &page, "alice", PASSWORD, "").await;
    assert!(page.body.contains("Ward") && page.body.contains("Stone"), "{}", page.body);
    assert!(!page.body.contains("Outside"), "{}", page.body);
    let page = post_page(srv, &[("pending", id.as_str()), ("step", "patient"), ("patient", "p3")]).await;
    assert!(page.body.contains("Choose a patient"), "p3 cannot be picked: {}", page.body);
});
