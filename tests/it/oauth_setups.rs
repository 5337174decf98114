//! Deployments of the embedded authorization server, black-box: two nodes sharing revocations,
//! an external issuer instead of ours, `serve --demo` accounts, and a real SMART client
//! (Python fhirclient) driving a standalone launch.

use base64::Engine;
use reqwest::Method;
use serde_json::{Value, json};

use crate::oauth_flow::{
    PASSWORD, REDIRECT, VERIFIER, answer, browser, challenge, read_patient, revoke, root, start,
};
use crate::support::{Backend, Db, Srv};

/// Two nodes on one PostgreSQL behind one base URL: a token revoked on one is refused by the
/// other within seconds, though the other had it cached.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_reaches_other_nodes() {
    if !crate::support::postgres_available() {
        return;
    }
    let db = Db::new(Backend::Postgres).await;
    let base = "http://hearth.test/fhir";
    let tweak = |c: &mut hearth::config::Config| {
        c.auth = hearth::config::AuthMode::Smart;
        c.base_url = Some(base.into());
    };
    let a = Srv::start_on(&db, tweak).await;
    let b = Srv::start_on(&db, tweak).await;
    let store = &a.state.engine.store;
    let creds = hearth::auth::accounts::Credential::Public;
    hearth::auth::accounts::add_client(store, "app", creds, &[REDIRECT.into()], "user/*.cruds")
        .await
        .unwrap();
    let mint = |srv: &Srv| {
        let issuer = hearth::auth::token::issuer_for(base);
        let r = hearth::auth::token::Request {
            issuer: &issuer,
            audience: base,
            client_id: "app",
            subject: "alice",
            scope: "user/*.cruds",
            patient: None,
            fhir_user: None,
            lifetime_seconds: 300,
        };
        hearth::auth::token::mint(srv.state.keys.as_ref().unwrap(), &r).unwrap().0
    };
    let token = mint(&a);
    let p1 = json!({"resourceType": "Patient", "id": "p1"});
    let resp = a
        .req(Method::PUT, "Patient/p1")
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .body(p1.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(read_patient(&b, &token).await, 200, "now cached on B");
    assert_eq!(revoke(&a, &token).await, 200);
    assert_eq!(read_patient(&a, &token).await, 401, "at once on the node that revoked");
    let started = std::time::Instant::now();
    while read_patient(&b, &token).await == 200 {
        assert!(started.elapsed().as_secs() < 6, "B still accepts a token revoked on A");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    eprintln!("revocation reached the other node after {:?}", started.elapsed());
    // A token B never saw is checked against the table on B's cache miss.
    let fresh = mint(&b);
    assert_eq!(revoke(&a, &fresh).await, 200);
    assert_eq!(read_patient(&b, &fresh).await, 401);
    b.stop().await;
    a.stop().await;
}

async fn fhirclient_launch(backend: Backend) {
    let srv = &start(backend).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/fhirclient_launch.py");
    let has_client = std::process::Command::new("python3")
        .args(["-c", "import fhirclient, requests"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_client {
        assert!(
            std::env::var("HEARTH_REQUIRE_CLIENTS").as_deref() != Ok("1"),
            "HEARTH_REQUIRE_CLIENTS=1 but python3 with fhirclient is not installed (pip install -r tests/clients/requirements.txt)"
        );
        eprintln!("fhirclient not installed: skipping the real-client SMART launch test");
        return;
    }
    let base = srv.base.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .env("HEARTH_BASE_URL", base)
            .env("HEARTH_CLIENT_ID", "app")
            .env("HEARTH_REDIRECT_URI", REDIRECT)
            .env("HEARTH_USERNAME", "alice")
            .env("HEARTH_PASSWORD", PASSWORD)
            .env("HEARTH_PATIENT", "p1")
            .env("HEARTH_PATIENT_NAME", "Ward")
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "fhirclient SMART launch failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhirclient_standalone_launch_sqlite() {
    fhirclient_launch(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fhirclient_standalone_launch_postgres() {
    if crate::support::postgres_available() {
        fhirclient_launch(Backend::Postgres).await;
    }
}

/// An external issuer's ES256 key, its JWKS file, and tokens it signs.
struct Idp {
    der: Vec<u8>,
    kid: String,
}

impl Idp {
    fn new(kid: &str) -> (Idp, Value) {
        use p256::pkcs8::EncodePrivateKey;
        let key = p256::ecdsa::SigningKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
        let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(point.x().unwrap()), "y": b64(point.y().unwrap()),
                         "kid": kid, "alg": "ES256", "use": "sig"});
        let der = key.to_pkcs8_der().unwrap().as_bytes().to_vec();
        (Idp { der, kid: kid.into() }, jwk)
    }

    fn sign(&self, claims: &Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &jsonwebtoken::EncodingKey::from_ec_der(&self.der)).unwrap()
    }
}

async fn external_issuer(backend: Backend) {
    const ISS: &str = "https://idp.example/realms/care";
    let (idp, jwk) = Idp::new("k1");
    let dir = tempfile::tempdir().unwrap();
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [jwk]}).to_string()).unwrap();
    let srv = Srv::start_on(&Db::new(backend).await, |c| {
        c.auth = hearth::config::AuthMode::Smart;
        c.auth_issuer = Some(ISS.into());
        c.auth_jwks = Some(jwks.display().to_string());
        c.auth_audience = Some("hearth-api".into());
    })
    .await;
    let now = hearth::resource::instant::now_ms() / 1000;
    let claims = |f: &dyn Fn(&mut Value)| {
        let mut c = json!({"iss": ISS, "aud": "hearth-api", "sub": "u-1", "azp": "web-app", "exp": now + 300,
                           "iat": now, "scope": "openid user/Patient.cruds", "fhirUser": "Practitioner/pr1"});
        f(&mut c);
        c
    };
    let good = idp.sign(&claims(&|_| {}));
    let p1 = json!({"resourceType": "Patient", "id": "p1"});
    let resp = srv
        .req(Method::PUT, "Patient/p1")
        .bearer_auth(&good)
        .header("content-type", "application/fhir+json")
        .body(p1.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    assert_eq!(read_patient(&srv, &good).await, 200);
    // Scope as an array, client_id instead of azp, issuer with a trailing slash.
    let array = idp.sign(&claims(&|c| {
        c["scope"] = json!(["user/Patient.rs"]);
        c["client_id"] = "cli".into();
        c["iss"] = format!("{ISS}/").into();
    }));
    assert_eq!(read_patient(&srv, &array).await, 200);
    // The issuer rotates keys: a token with a new kid makes the server read the JWKS again.
    let (rotated, new_jwk) = Idp::new("k3");
    let old_jwk: Value =
        serde_json::from_str::<Value>(&std::fs::read_to_string(&jwks).unwrap()).unwrap()["keys"][0].clone();
    std::fs::write(&jwks, json!({"keys": [old_jwk, new_jwk]}).to_string()).unwrap();
    assert_eq!(read_patient(&srv, &rotated.sign(&claims(&|_| {}))).await, 200);
    assert_eq!(read_patient(&srv, &good).await, 200);
    let narrow = idp.sign(&claims(&|c| c["scope"] = "user/Observation.rs".into()));
    assert_eq!(read_patient(&srv, &narrow).await, 403);
    let (other, _) = Idp::new("k1");
    let (unknown_kid, _) = Idp::new("k2");
    for (why, token) in [
        ("wrong issuer", idp.sign(&claims(&|c| c["iss"] = "https://evil.example".into()))),
        ("wrong audience", idp.sign(&claims(&|c| c["aud"] = "other-api".into()))),
        ("expired", idp.sign(&claims(&|c| c["exp"] = (now - 120).into()))),
        ("unknown kid", unknown_kid.sign(&claims(&|_| {}))),
        ("another key under the same kid", other.sign(&claims(&|_| {}))),
        ("not a JWT", "nope".to_string()),
    ] {
        assert_eq!(read_patient(&srv, &token).await, 401, "{why}");
    }
    // Our own authorization server is off.
    for path in ["/auth/authorize?client_id=x", "/.well-known/smart-configuration"] {
        let resp = srv.client.get(format!("{}{path}", root(&srv))).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
    let resp = srv
        .client
        .post(format!("{}/auth/token", root(&srv)))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    srv.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_issuer_sqlite() {
    external_issuer(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_issuer_postgres() {
    if crate::support::postgres_available() {
        external_issuer(Backend::Postgres).await;
    }
}

/// `serve --demo` (authorization is on by default) prints a ready demo client and user, and a
/// token for curl; a second start reuses them with a new password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_accounts_are_printed_and_work() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("demo.db").display());
    for _ in 0..2 {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["serve", "--demo", "--listen", "127.0.0.1:0", "--database", &database])
            .current_dir(dir.path())
            .env("HEARTH_LOG", "warn")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let mut next = || lines.next().unwrap().unwrap();
        let base = next().strip_prefix("hearth listening on ").unwrap().to_string();
        let client_line = next();
        let user_line = next();
        let token_line = next();
        assert!(token_line.starts_with("demo token (demo-service, system/*.cruds, 1 h"), "{token_line}");
        let token = next();
        let fhir = reqwest::Client::new();
        let read = fhir.get(format!("{base}/Patient?_count=0")).bearer_auth(&token).send().await.unwrap();
        assert_eq!(read.status(), 200);
        let without = fhir.get(format!("{base}/Patient?_count=0")).send().await.unwrap();
        assert_eq!(without.status(), 401, "authorization is on by default");
        assert!(
            client_line.starts_with(
                "demo client: demo-app (public, PKCE) redirect_uri http://localhost:9000/callback"
            ),
            "{client_line}"
        );
        assert!(
            client_line.contains("patient/*.rs user/*.cruds") && client_line.contains("offline_access"),
            "{client_line}"
        );
        let password = user_line.split("password: ").nth(1).unwrap().split(' ').next().unwrap().to_string();
        assert!(user_line.contains("fhirUser: Practitioner/pract-amara-okafor"), "{user_line}");
        let root = base.trim_end_matches("/fhir").to_string();
        let ch = challenge(VERIFIER);
        let params = [
            ("response_type", "code"),
            ("client_id", "demo-app"),
            ("redirect_uri", "http://localhost:9000/callback"),
            ("scope", "openid fhirUser user/*.cruds"),
            ("aud", base.as_str()),
            ("code_challenge", ch.as_str()),
            ("code_challenge_method", "S256"),
        ];
        let page =
            answer(browser().get(format!("{root}/auth/authorize")).query(&params).send().await.unwrap())
                .await;
        let id = page.pending();
        let fields = [
            ("pending", id.as_str()),
            ("step", "login"),
            ("username", "demo"),
            ("password", password.as_str()),
        ];
        let page = answer(
            browser()
                .post(format!("{root}/auth/authorize"))
                .form(&fields)
                .header("cookie", crate::oauth_flow::cookie_for(&id))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert!(page.body.contains("Allow access?"), "{}", page.body);
        let _ = child.kill();
        let _ = child.wait();
    }
}
