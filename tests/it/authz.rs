//! `auth = "smart"`: bearer tokens checked on every FHIR request, scopes enforced per type and
//! interaction, included resources the grant cannot read left out. Patient compartments and
//! query restrictions: `authz_patient.rs`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::{Backend, Srv, json};

pub(crate) async fn start(backend: Backend) -> Srv {
    let srv = Srv::start_with(backend, |c| c.auth = hearth::config::AuthMode::Smart).await;
    // Data, written with an all-powerful token.
    let admin = token(&srv, "user/*.cruds", None);
    for r in [
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Ward"}]}),
        json!({"resourceType": "Practitioner", "id": "pr1"}),
        json!({"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "x"},
               "subject": {"reference": "Patient/p1"}, "performer": [{"reference": "Practitioner/pr1"}]}),
        json!({"resourceType": "Task", "id": "t1", "status": "ready", "intent": "order", "for": {"reference": "Patient/p1"}}),
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
    srv
}

/// A token from the server's own keys, for its base URL.
pub(crate) fn token(srv: &Srv, scopes: &str, patient: Option<&str>) -> String {
    crate::support::mint(srv, "test", "test", scopes, patient, None)
}

pub(crate) async fn send(
    srv: &Srv,
    bearer: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, String) {
    let mut req = srv.req(method, path).header("prefer", "respond-async");
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        let ct = if b.is_array() { "application/json-patch+json" } else { "application/fhir+json" };
        req = req.header("content-type", ct).body(b.to_string());
    }
    let resp = req.send().await.unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn patient() -> Value {
    json!({"resourceType": "Patient", "name": [{"family": "New"}]})
}

/// (scopes, method, path, body, expected status, text the answer must not contain)
type Case = (&'static str, Method, &'static str, Option<Value>, u16, Option<&'static str>);

fn cases() -> Vec<Case> {
    use Method as M;
    let p = || Some(patient());
    let put = || Some(json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Ward"}]}));
    vec![
        ("user/Patient.rs", M::GET, "Patient/p1", None, 200, None),
        ("user/Patient.rs", M::GET, "Patient?_id=p1", None, 200, None),
        ("user/Patient.rs", M::GET, "Patient/p1/_history", None, 200, None),
        ("user/Patient.rs", M::GET, "Patient/p1/_history/1", None, 200, None),
        ("user/Patient.rs", M::GET, "Patient/_history", None, 200, None),
        ("user/Patient.rs", M::GET, "Observation/o1", None, 403, Some("\"final\"")),
        ("user/Patient.rs", M::GET, "Observation?subject=Patient/p1", None, 403, Some("\"final\"")),
        (
            "user/Patient.rs",
            M::GET,
            "Patient?_revinclude=Observation:subject",
            None,
            200,
            Some("\"resourceType\":\"Observation\""),
        ),
        ("user/Patient.rs", M::GET, "?_type=Patient", None, 200, None),
        ("user/Patient.rs", M::GET, "Patient?_has:Observation:subject:status=final", None, 403, Some("Ward")),
        (
            "user/Patient.rs user/Observation.s",
            M::GET,
            "Patient?_has:Observation:subject:status=final",
            None,
            200,
            None,
        ),
        (
            "user/Observation.rs",
            M::GET,
            "Observation?subject:Patient.name=Ward",
            None,
            403,
            Some("\"final\""),
        ),
        (
            "user/Observation.rs user/Patient.s",
            M::GET,
            "Observation?subject:Patient.name=Ward",
            None,
            200,
            None,
        ),
        ("user/Observation.rs user/Patient.s", M::GET, "Observation?subject.name=Ward", None, 403, None),
        ("user/*.rs", M::GET, "Observation?subject.name=Ward", None, 200, None),
        ("user/Patient.rs", M::GET, "?_type=Patient,Observation", None, 403, Some("\"final\"")),
        ("user/Patient.rs", M::GET, "", None, 403, None),
        ("user/Patient.rs", M::GET, "_history", None, 403, None),
        ("user/Patient.rs", M::GET, "Patient/p1/Observation", None, 403, Some("\"final\"")),
        ("user/Patient.rs", M::GET, "Patient/p1/*", None, 403, None),
        ("user/Patient.rs", M::GET, "Patient/p1/$everything", None, 403, None),
        ("user/Patient.rs", M::POST, "Patient", p(), 403, None),
        ("user/Patient.rs", M::PUT, "Patient/p1", put(), 403, None),
        ("user/Patient.rs", M::DELETE, "Patient/p1", None, 403, None),
        ("user/Patient.rs", M::GET, "$export", None, 403, None),
        ("user/Patient.read", M::GET, "Patient/p1", None, 200, None),
        ("user/Patient.write", M::GET, "Patient/p1", None, 403, Some("Ward")),
        ("user/Patient.write", M::POST, "Patient", p(), 201, None),
        ("user/Patient.c", M::POST, "Patient", p(), 201, None),
        ("user/Patient.c", M::PUT, "Patient/p1", put(), 403, None),
        ("user/Patient.u", M::PUT, "Patient/p1", put(), 200, None),
        // What the caller did not send stays unread without read rights.
        (
            "user/Patient.u",
            M::PATCH,
            "Patient/p1",
            Some(json!([{"op": "add", "path": "/active", "value": true}])),
            200,
            Some("Ward"),
        ),
        ("user/Patient.cu", M::PUT, "Patient?name=Ward", put(), 403, None),
        ("user/Patient.cus", M::PUT, "Patient?name=Ward", put(), 200, None),
        ("user/Observation.rs", M::GET, "Observation?_include=Observation:subject", None, 200, Some("Ward")),
        (
            "user/Observation.rs user/Patient.r",
            M::GET,
            "Observation?_include=Observation:subject",
            None,
            200,
            None,
        ),
        (
            "user/Observation.rs",
            M::GET,
            "Observation?_include=Observation:performer",
            None,
            200,
            Some("\"resourceType\":\"Practitioner\""),
        ),
        ("user/*.rs", M::GET, "", None, 200, None),
        // System history would show the audit log, which only admins read.
        ("user/*.rs", M::GET, "_history", None, 403, None),
        ("system/*.rs", M::GET, "_history", None, 200, None),
        ("user/*.rs", M::GET, "Patient/p1/$everything", None, 200, None),
        ("user/*.rs", M::GET, "Patient/p1/*", None, 200, None),
        ("user/*.rs", M::POST, "Patient", p(), 403, None),
        ("user/*.rs", M::GET, "$export", None, 403, None),
        ("user/*.cruds", M::DELETE, "Task/t1", None, 200, None),
        ("user/*.*", M::GET, "Observation/o1", None, 200, None),
        ("system/*.rs", M::GET, "Observation/o1", None, 200, None),
        ("system/*.rs", M::POST, "Patient", p(), 403, None),
        ("system/*.rs", M::GET, "$export", None, 202, None),
        ("system/*.rs", M::GET, "Patient/$export", None, 202, None),
        ("system/Patient.rs", M::GET, "$export", None, 403, None),
        ("system/*.rs", M::POST, "$reindex", None, 403, None),
        ("system/*.cruds", M::POST, "$reindex", None, 200, None),
        // Confined grants (more in authz_patient.rs): the token's patient is p1.
        ("patient/Observation.rs", M::GET, "Observation/o1", None, 200, None),
        ("patient/*.cruds", M::GET, "Patient/p1", None, 200, None),
        ("user/Observation.rs?category=laboratory", M::GET, "Observation/o1", None, 404, Some("\"final\"")),
        ("launch/patient openid", M::GET, "Patient/p1", None, 403, Some("Ward")),
        ("", M::GET, "Patient/p1", None, 403, Some("Ward")),
        ("user/*.rs", M::GET, "metadata", None, 200, None),
    ]
}

async fn matrix(backend: Backend) {
    let srv = start(backend).await;
    let mut checked = 0;
    for (scopes, method, path, body, expected, hidden) in cases() {
        let t = token(&srv, scopes, Some("p1"));
        let (status, text) = send(&srv, Some(&t), method.clone(), path, body).await;
        assert_eq!(status, expected, "{backend:?} [{scopes}] {method} {path}: {text}");
        if let Some(h) = hidden {
            assert!(!text.contains(h), "{backend:?} [{scopes}] {method} {path} leaked {h}: {text}");
        }
        if status == 403 {
            let oo: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(oo["issue"][0]["code"], "forbidden", "{text}");
        }
        checked += 1;
    }
    assert!(checked >= 50);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_matrix_sqlite() {
    matrix(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scope_matrix_postgres() {
    if crate::support::postgres_available() {
        matrix(Backend::Postgres).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_bad_and_expired_tokens_get_401() {
    for backend in crate::export::backends() {
        missing_bad_and_expired_tokens_get_401_on(backend).await;
    }
}

async fn missing_bad_and_expired_tokens_get_401_on(backend: Backend) {
    let srv = start(backend).await;
    for path in ["Patient/p1", "Patient", "", "_history", "$export", "Patient/p1/$everything"] {
        let resp = srv.req(Method::GET, path).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{path}");
        assert_eq!(resp.headers()["www-authenticate"], "Bearer realm=\"hearth\"");
        let oo = json(resp).await;
        assert_eq!(oo["issue"][0]["code"], "login");
    }
    // The base with a trailing slash is its own route: it is guarded too.
    let resp = srv.client.get(format!("{}/", srv.base)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = srv.client.post(format!("{}/", srv.base)).body("{}").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = srv.req(Method::GET, "Patient/p1").bearer_auth("garbage").send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.starts_with("Bearer realm=\"hearth\", error=\"invalid_token\""), "{challenge}");
    // Expired, and minted for another server's audience.
    let keys = srv.state.keys.as_ref().unwrap();
    let issuer = hearth::auth::token::issuer_for(&srv.base);
    for (audience, lifetime) in [(srv.base.as_str(), -120), ("http://elsewhere/fhir", 300)] {
        let request = hearth::auth::token::Request {
            issuer: &issuer,
            audience,
            client_id: "t",
            subject: "t",
            scope: "user/*.rs",
            patient: None,
            fhir_user: None,
            lifetime_seconds: lifetime,
        };
        let t = hearth::auth::token::mint(keys, &request).unwrap().0;
        let resp = srv.req(Method::GET, "Patient/p1").bearer_auth(&t).send().await.unwrap();
        assert_eq!(resp.status(), 401, "{audience} {lifetime}");
    }
    // The CapabilityStatement stays open.
    assert_eq!(srv.get("metadata").await.status(), 200);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bundles_are_checked_entry_by_entry() {
    for backend in crate::export::backends() {
        bundles_are_checked_entry_by_entry_on(backend).await;
    }
}

async fn bundles_are_checked_entry_by_entry_on(backend: Backend) {
    let srv = start(backend).await;
    let t = token(&srv, "user/Patient.cruds", None);
    let entry = |rtype: &str| {
        json!({"resource": {"resourceType": rtype, "status": "final", "code": {"text": "x"}},
        "request": {"method": "POST", "url": rtype}})
    };
    let mut tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": patient(), "request": {"method": "POST", "url": "Patient"}}, entry("Observation")]});
    let (status, text) = send(&srv, Some(&t), Method::POST, "", Some(tx.clone())).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("Bundle.entry[1]"), "{text}");
    let admin = token(&srv, "user/*.rs", None);
    let (_, found) = send(&srv, Some(&admin), Method::GET, "Patient?name=New&_summary=count", None).await;
    assert!(found.contains("\"total\":0"), "the allowed entry did not run either: {found}");
    tx["type"] = json!("batch");
    let (status, text) = send(&srv, Some(&t), Method::POST, "", Some(tx)).await;
    assert_eq!(status, 200, "{text}");
    let b: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(b["entry"][0]["response"]["status"].as_str().unwrap().split(' ').next(), Some("201"));
    assert_eq!(b["entry"][1]["response"]["status"].as_str().unwrap().split(' ').next(), Some("403"));
    srv.stop().await;
}

/// SMART Backend Services: `client_credentials` with a client secret (HTTP Basic) or a signed
/// client assertion (ES384), then the token used on the FHIR API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_services_get_tokens_at_the_token_endpoint() {
    for backend in crate::export::backends() {
        backend_services_get_tokens_at_the_token_endpoint_on(backend).await;
    }
}

async fn backend_services_get_tokens_at_the_token_endpoint_on(backend: Backend) {
    use hearth::auth::accounts::{Credential, add_client};
    use p384::pkcs8::EncodePrivateKey;

    let srv = start(backend).await;
    let store = &srv.state.engine.store;
    let root = srv.base.trim_end_matches("/fhir").to_string();
    let token_url = format!("{root}/auth/token");
    add_client(store, "svc", Credential::Secret("a-long-enough-secret".into()), &[], "system/*.rs")
        .await
        .unwrap();
    let post = |form: Vec<(&'static str, String)>, basic: Option<(&'static str, &'static str)>| {
        let mut req = srv.client.post(&token_url).form(&form);
        if let Some((u, p)) = basic {
            req = req.basic_auth(u, Some(p));
        }
        req.send()
    };
    let grant =
        |scope: &str| vec![("grant_type", "client_credentials".to_string()), ("scope", scope.to_string())];

    let resp = post(grant("system/Patient.rs"), Some(("svc", "a-long-enough-secret"))).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let body = json(resp).await;
    assert_eq!((body["token_type"].as_str(), body["expires_in"].as_i64()), (Some("bearer"), Some(3600)));
    let access = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(send(&srv, Some(&access), Method::GET, "Patient/p1", None).await.0, 200);
    assert_eq!(send(&srv, Some(&access), Method::GET, "Observation/o1", None).await.0, 403);

    for (form, basic, status, error) in [
        (grant("system/Patient.rs"), Some(("svc", "wrong-secret-000000")), 401, "invalid_client"),
        (grant("system/Patient.rs"), None, 401, "invalid_client"),
        (grant("system/*.cruds"), Some(("svc", "a-long-enough-secret")), 400, "invalid_scope"),
        (grant("user/*.rs"), Some(("svc", "a-long-enough-secret")), 400, "invalid_scope"),
        (
            vec![("grant_type", "password".to_string())],
            Some(("svc", "a-long-enough-secret")),
            400,
            "unsupported_grant_type",
        ),
    ] {
        let resp = post(form, basic).await.unwrap();
        assert_eq!(resp.status(), status);
        assert_eq!(json(resp).await["error"], error);
    }

    // private_key_jwt with ES384: the client's key pair made here, its public half registered.
    let key = p384::ecdsa::SigningKey::random(&mut p384::elliptic_curve::rand_core::OsRng);
    let point = key.verifying_key().to_encoded_point(false);
    let b64 = |b: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, b);
    let jwks = json!({"keys": [{"kty": "EC", "crv": "P-384", "kid": "k1", "alg": "ES384",
        "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap())}]});
    add_client(store, "bulk", Credential::Jwks(jwks.to_string()), &[], "system/*.rs").await.unwrap();
    let der = key.to_pkcs8_der().unwrap();
    let encoding = jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes());
    let assertion = |jti: &str, aud: &str| {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES384);
        header.kid = Some("k1".into());
        let now = hearth::resource::instant::now_ms() / 1000;
        let claims = json!({"iss": "bulk", "sub": "bulk", "aud": aud, "exp": now + 240, "jti": jti});
        jsonwebtoken::encode(&header, &claims, &encoding).unwrap()
    };
    let with_assertion = |a: String| {
        let mut form = grant("system/*.rs");
        form.push(("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into()));
        form.push(("client_assertion", a));
        form
    };
    let resp = post(with_assertion(assertion("j1", &token_url)), None).await.unwrap();
    assert_eq!(resp.status(), 200);
    let access = json(resp).await["access_token"].as_str().unwrap().to_string();
    assert_eq!(send(&srv, Some(&access), Method::GET, "Observation/o1", None).await.0, 200);
    // The same jti again is a replay; another audience is refused.
    let resp = post(with_assertion(assertion("j1", &token_url)), None).await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = post(with_assertion(assertion("j2", "http://elsewhere/auth/token")), None).await.unwrap();
    assert_eq!(resp.status(), 401);

    // Guessing a client's secret is slowed down: 30 requests per 10 s, then 429. (70 requests
    // span at most two windows, so one of them sees more than 30.)
    let mut limited = false;
    for _ in 0..70 {
        let resp = post(grant("system/Patient.rs"), Some(("svc", "guess-guess-guess-0"))).await.unwrap();
        if resp.status() == 429 {
            assert!(resp.headers().contains_key("retry-after"));
            limited = true;
            break;
        }
        assert_eq!(resp.status(), 401);
    }
    assert!(limited, "the token endpoint is rate limited");

    // The server's public keys.
    let keys = json(srv.client.get(format!("{root}/auth/jwks")).send().await.unwrap()).await;
    assert_eq!(keys["keys"][0]["alg"], "ES256");
    assert!(keys["keys"][0].get("d").is_none(), "no private part");
    srv.stop().await;
}

/// A token for another client than `token`'s.
fn token_for(srv: &Srv, client: &str, scopes: &str) -> String {
    crate::support::mint(srv, client, client, scopes, None, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_jobs_belong_to_the_client_that_started_them() {
    for backend in crate::export::backends() {
        let srv = start(backend).await;
        let (a, b) = (token_for(&srv, "a", "system/*.rs"), token_for(&srv, "b", "system/*.rs"));
        let resp = srv
            .req(Method::GET, "$export?_type=Patient")
            .header("prefer", "respond-async")
            .bearer_auth(&a)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 202);
        let status_url = resp.headers()["content-location"].to_str().unwrap().to_string();
        let poll = |t: &str| srv.client.get(&status_url).bearer_auth(t.to_string()).send();
        assert_eq!(poll(&b).await.unwrap().status(), 404, "another client polls");
        let mut manifest = Value::Null;
        for _ in 0..100 {
            let r = poll(&a).await.unwrap();
            if r.status() == 200 {
                manifest = r.json().await.unwrap();
                break;
            }
            assert_eq!(r.status(), 202);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert_eq!(manifest["requiresAccessToken"], true);
        let url = manifest["output"][0]["url"].as_str().unwrap().to_string();
        let get = |t: &str| srv.client.get(&url).bearer_auth(t.to_string()).send();
        assert_eq!(get(&b).await.unwrap().status(), 404, "another client downloads");
        let r = get(&a).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("\"p1\""));
        let cancel = |t: &str| srv.client.delete(&status_url).bearer_auth(t.to_string()).send();
        assert_eq!(cancel(&b).await.unwrap().status(), 404, "another client cancels");
        assert_eq!(cancel(&a).await.unwrap().status(), 202);
        srv.stop().await;
    }
}
