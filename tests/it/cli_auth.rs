//! `hearth client add|list`, `hearth user add` and `hearth token` against a real database.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::support::{postgres_available, postgres_database};

fn hearth(args: &[&str], database: &str, stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_hearth"))
        .args(args)
        .args(["--database", database])
        .env("HEARTH_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run hearth");
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn refused(out: &Output, expected: &str) {
    assert!(!out.status.success(), "should fail: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(expected), "expected '{expected}' in: {err}");
}

async fn accounts_round(database: &str) {
    let add = ["client", "add", "--client-id", "app", "--public", "--redirect-uri", "https://app.example/cb"];
    let scopes = "patient/*.rs launch/patient openid";
    let out = ok(&hearth(&[&add[..], &["--scopes", scopes]].concat(), database, None));
    assert!(out.contains("added public client app"), "{out}");
    refused(&hearth(&[&add[..], &["--scopes", scopes]].concat(), database, None), "exists already");
    let svc = ["client", "add", "--client-id", "svc", "--secret", "short", "--scopes", "system/*.rs"];
    refused(&hearth(&svc, database, None), "at least 16 characters");
    let svc = [
        "client",
        "add",
        "--client-id",
        "svc",
        "--secret",
        "a-long-enough-secret",
        "--scopes",
        "system/*.rs",
    ];
    ok(&hearth(&svc, database, None));
    refused(
        &hearth(
            &["client", "add", "--client-id", "x", "--public", "--scopes", "user/Nope.rs"],
            database,
            None,
        ),
        "Nope",
    );
    let list = ok(&hearth(&["client", "list"], database, None));
    assert!(list.contains("app\tpublic\thttps://app.example/cb") && list.contains("svc\tsecret"), "{list}");
    assert!(!list.contains("a-long-enough-secret"), "secrets are stored hashed only");

    let user = ["user", "add", "--username", "alice", "--password-stdin", "--fhir-user", "Practitioner/pr1"];
    refused(&hearth(&user, database, Some("short\n")), "at least 12 characters");
    let out = ok(&hearth(
        &[&user[..], &["--role", "coordinator"]].concat(),
        database,
        Some("a long passphrase 42\n"),
    ));
    assert!(out.contains("added user alice (coordinator, Practitioner/pr1)"), "{out}");
    refused(
        &hearth(&[&user[..], &["--role", "wizard"]].concat(), database, Some("a long passphrase 42\n")),
        "role",
    );

    // A second factor: the secret and an otpauth:// URI are printed, and stored.
    let bob = ["user", "add", "--username", "bob", "--password-stdin", "--totp"];
    let out = ok(&hearth(&bob, database, Some("a long passphrase 42\n")));
    let uri = out.lines().find(|l| l.starts_with("otpauth://totp/Hearth:bob?secret=")).expect(&out);
    let secret = out.lines().find_map(|l| l.strip_prefix("TOTP secret (base32): ")).expect(&out);
    assert!(uri.contains(secret) && uri.contains("digits=6") && uri.contains("period=30"), "{uri}");
    // An EHR launch id.
    let launch = ok(&hearth(&["launch", "--patient", "p1", "--encounter", "e1"], database, None));
    let launch = launch.trim().to_string();
    refused(&hearth(&["launch", "--patient", "no way"], database, None), "not a valid");
    {
        let store = hearth::store::Store::open(database).await.unwrap();
        assert_eq!(store.user("bob").await.unwrap().unwrap().totp_secret.as_deref(), Some(secret));
        let now = hearth::resource::instant::now_ms();
        let context = store.launch(&launch, now).await.unwrap();
        assert_eq!(context, Some((Some("p1".to_string()), Some("e1".to_string()))));
        assert_eq!(store.launch(&launch, now + 301_000).await.unwrap(), None, "five minutes");
        store.close().await;
    }

    let token = ["token", "--client-id", "app", "--scopes", "patient/Observation.rs launch/patient"];
    refused(&hearth(&token, database, None), "need a patient");
    let out = ok(&hearth(&[&token[..], &["--patient", "p1"]].concat(), database, None));
    let answer: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(answer["token_type"], "Bearer");
    assert_eq!(answer["expires_in"], 3600);
    assert_eq!(answer["patient"], "p1");
    let jwt = answer["access_token"].as_str().unwrap();
    // The token verifies with the keys stored in the database.
    let store = hearth::store::Store::open(database).await.unwrap();
    let keys = hearth::auth::keys::Keys::load_or_create(&store).await.unwrap();
    let claims =
        hearth::auth::token::verify(&keys, jwt, "http://127.0.0.1:8080/auth", "http://127.0.0.1:8080/fhir")
            .unwrap();
    assert_eq!((claims.client_id.as_str(), claims.patient.as_deref()), ("app", Some("p1")));
    assert_eq!(claims.scope, "patient/Observation.rs launch/patient");
    store.close().await;
    drop(store); // releases the SQLite lock file for the commands below
    refused(
        &hearth(&["token", "--client-id", "app", "--scopes", "user/Observation.rs"], database, None),
        "may not be granted",
    );
    refused(
        &hearth(&["token", "--client-id", "nobody", "--scopes", "system/*.rs"], database, None),
        "no client",
    );
    let out = ok(&hearth(&["token", "--client-id", "svc", "--scopes", "system/Patient.rs"], database, None));
    assert!(out.contains("access_token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    accounts_round(&format!("sqlite://{}", dir.path().join("a.db").display())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_postgres() {
    if !postgres_available() {
        return;
    }
    accounts_round(&postgres_database().await).await;
}
