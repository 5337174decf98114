//! The written corpus in `examples/hl7v2/` sent over MLLP in a story's order (admission,
//! update, discharge, merge, immunizations with a re-send and a delete, lab results, refusals,
//! Latin-1), each result checked by FHIR search, on both backends.

use serde_json::Value;
use tokio::net::TcpStream;

use crate::hl7::{connect, exchange_bytes, field, start};
use crate::support::{Backend, Srv, json};

const GH: &str = "urn:oid:2.16.840.1.113883.3.72.5.9.1";

async fn send(conn: &mut TcpStream, name: &str) -> String {
    let path = format!("{}/examples/hl7v2/{name}", env!("CARGO_MANIFEST_DIR"));
    exchange_bytes(conn, &std::fs::read(path).unwrap()).await
}

async fn accept(conn: &mut TcpStream, name: &str) {
    let ack = send(conn, name).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{name}: {ack}");
}

/// The one resource a search finds.
async fn one(srv: &Srv, query: &str) -> Value {
    let b = json(srv.get(query).await).await;
    assert_eq!(b["total"], 1, "{query}: {b}");
    b["entry"][0]["resource"].clone()
}

fn ext<'a>(v: &'a Value, url: &str) -> &'a Value {
    v["extension"].as_array().unwrap().iter().find(|e| e["url"] == url).unwrap_or(&Value::Null)
}

async fn admission(srv: &Srv, conn: &mut TcpStream) {
    accept(conn, "ADT-A01-pv1.hl7").await;
    let p = one(srv, &format!("Patient?identifier={GH}|4455667")).await;
    let race = ext(&p, "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race");
    assert_eq!(race["extension"][0]["url"], "ombCategory", "{p}");
    assert_eq!(race["extension"][0]["valueCoding"]["code"], "2106-3");
    let eth = ext(&p, "http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity");
    assert_eq!(eth["extension"][0]["valueCoding"]["code"], "2186-5", "{p}");
    assert_eq!(p["communication"][0]["language"]["coding"][0]["code"], "en");
    assert_eq!(p["contact"].as_array().unwrap().len(), 2, "{p}");
    assert_eq!(p["contact"][0]["relationship"][0]["coding"][0]["code"], "MTH");
    assert_eq!(p["contact"][1]["relationship"][1]["coding"][0]["code"], "EC");
    assert_eq!(p["contact"][1]["name"]["family"], "Fenwick");
    // PD1-4: the primary care provider, a Practitioner matched by NPI.
    let gp = p["generalPractitioner"][0]["reference"].as_str().unwrap().to_string();
    let doc = json(srv.get(&gp).await).await;
    assert_eq!(doc["identifier"][0]["value"], "1234567890", "{doc}");
    assert_eq!(doc["name"][0]["family"], "Hartley");
    // PV1: the visit.
    let e = one(srv, "Encounter?identifier=V100234").await;
    assert_eq!(e["status"], "in-progress");
    assert_eq!(e["class"]["code"], "IMP");
    assert_eq!(e["period"]["start"], "2026-11-01T08:30:00-05:00", "MSH-7's offset: {e}");
    assert_eq!(e["subject"]["reference"], format!("Patient/{}", p["id"].as_str().unwrap()));
    assert_eq!(e["location"][0]["location"]["display"], "GOODHEALTH 4N 401 B");
    assert_eq!(e["participant"][0]["type"][0]["coding"][0]["code"], "ATND");
    // Provenance: who sent which message, for the Patient and the Encounter.
    let pv = one(srv, &format!("Provenance?target=Patient/{}", p["id"].as_str().unwrap())).await;
    assert_eq!(pv["entity"][0]["what"]["identifier"]["value"], "GH26110100001", "{pv}");
    assert_eq!(pv["agent"][0]["who"]["display"], "EPIC^GOODHEALTH");
    let targets: Vec<&str> =
        pv["target"].as_array().unwrap().iter().filter_map(|t| t["reference"].as_str()).collect();
    assert!(targets.iter().any(|t| t.starts_with("Encounter/")), "{pv}");
    // A08: the same Patient, updated; the practitioner is not written again.
    accept(conn, "ADT-A08-update.hl7").await;
    let p2 = one(srv, &format!("Patient?identifier={GH}|4455667")).await;
    assert_eq!(p2["id"], p["id"]);
    assert_eq!(p2["meta"]["versionId"], "2");
    assert_ne!(p2["address"], p["address"], "the new address");
    let doc2 = json(srv.get(&gp).await).await;
    assert_eq!(doc2["meta"]["versionId"], "1", "{doc2}");
    assert_eq!(json(srv.get("Practitioner?identifier=1234567890").await).await["total"], 1);
    // A03: the visit is finished.
    accept(conn, "ADT-A03-discharge.hl7").await;
    let e = one(srv, "Encounter?identifier=V100234").await;
    assert_eq!(e["status"], "finished", "{e}");
    assert_eq!(e["period"]["end"], "2026-11-05T14:00:00-05:00");
}

async fn merge(srv: &Srv, conn: &mut TcpStream) {
    // A40 before the retired Patient exists: AE, nothing changed.
    let ack = send(conn, "ADT-A40-merge.hl7").await;
    assert_eq!(field(&ack, "MSA", 1), "AE", "{ack}");
    assert_eq!(field(&ack, "ERR", 2), "MRG-1");
    assert_eq!(json(srv.get(&format!("Patient?identifier={GH}|7700345")).await).await["total"], 0);
    accept(conn, "ADT-A28-dup.hl7").await;
    accept(conn, "ADT-A28-survivor.hl7").await;
    // The same message again (same control id): it stored nothing the first time, so it is
    // processed now rather than answered with its old AE.
    accept(conn, "ADT-A40-merge.hl7").await;
    let dup = one(srv, &format!("Patient?identifier={GH}|7700112")).await;
    let survivor = one(srv, &format!("Patient?identifier={GH}|7700345")).await;
    assert_eq!(dup["active"], false, "{dup}");
    assert_eq!(dup["link"][0]["type"], "replaced-by");
    assert_eq!(dup["link"][0]["other"]["reference"], format!("Patient/{}", survivor["id"].as_str().unwrap()));
    assert_eq!(survivor["link"][0]["type"], "replaces", "{survivor}");
    assert_eq!(survivor["link"][0]["other"]["reference"], format!("Patient/{}", dup["id"].as_str().unwrap()));
    // An update of the survivor's demographics keeps the merge's link.
    let path = format!("{}/examples/hl7v2/ADT-A28-survivor.hl7", env!("CARGO_MANIFEST_DIR"));
    let again =
        String::from_utf8(std::fs::read(path).unwrap()).unwrap().replace("GH26110400007", "GH26110499999");
    let ack = exchange_bytes(conn, again.as_bytes()).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    let survivor = one(srv, &format!("Patient?identifier={GH}|7700345")).await;
    assert_eq!(survivor["link"][0]["type"], "replaces", "{survivor}");
    // Now accepted, the message is answered from its record when sent again.
    let before = dup["meta"]["versionId"].clone();
    accept(conn, "ADT-A40-merge.hl7").await;
    let dup = one(srv, &format!("Patient?identifier={GH}|7700112")).await;
    assert_eq!(dup["meta"]["versionId"], before);
}

async fn immunizations(srv: &Srv, conn: &mut TcpStream) {
    accept(conn, "VXU-V04-multi.hl7").await;
    let all = json(srv.get("Immunization?patient.identifier=880412&_count=10").await).await;
    assert_eq!(all["total"], 3, "{all}");
    let dtap = one(srv, "Immunization?identifier=IZ-783274").await;
    assert_eq!(dtap["vaccineCode"]["coding"][1]["system"], "http://hl7.org/fhir/sid/ndc", "{dtap}");
    assert_eq!(dtap["occurrenceDateTime"], "2026-11-03");
    assert_eq!(dtap["performer"][0]["function"]["coding"][0]["code"], "AP");
    assert_eq!(dtap["performer"][1]["function"]["coding"][0]["code"], "OP");
    let nurse = json(srv.get(dtap["performer"][0]["actor"]["reference"].as_str().unwrap()).await).await;
    assert_eq!(nurse["name"][0]["family"], "Jackson", "{nurse}");
    assert_eq!(dtap["programEligibility"][0]["coding"][0]["code"], "V02");
    assert_eq!(dtap["fundingSource"]["coding"][0]["code"], "VXC50");
    assert_eq!(dtap["education"][0]["documentType"], "253088698300012711120420");
    assert_eq!(dtap["education"][0]["presentationDate"], "2026-11-03");
    assert_eq!(dtap["route"]["coding"][0]["code"], "C28161");
    assert_eq!(dtap["site"]["coding"][0]["code"], "LD");
    let hist = one(srv, "Immunization?identifier=IZ-783275").await;
    assert_eq!(hist["primarySource"], false);
    assert!(hist.get("doseQuantity").is_none());
    // The refusal's ORC-3 is the placeholder 9999: its identifier comes from the dose itself.
    let refused = one(srv, "Immunization?vaccine-code=03&patient.identifier=880412").await;
    assert_eq!(refused["status"], "not-done");
    assert_eq!(refused["statusReason"]["coding"][0]["code"], "00");
    assert_eq!(refused["identifier"][0]["system"], "urn:hearth:hl7v2:dose");
    // Re-sent with a corrected lot: updated, not duplicated; then deleted (RXA-21 D).
    accept(conn, "VXU-V04-resend.hl7").await;
    let dtap = one(srv, "Immunization?identifier=IZ-783274").await;
    assert_eq!(dtap["lotNumber"], "C5823AB");
    assert_eq!(dtap["meta"]["versionId"], "2");
    accept(conn, "VXU-V04-delete.hl7").await;
    assert_eq!(one(srv, "Immunization?identifier=IZ-783274").await["status"], "entered-in-error");
    assert_eq!(json(srv.get("Immunization?patient.identifier=880412").await).await["total"], 3);
}

async fn lab(srv: &Srv, conn: &mut TcpStream) {
    accept(conn, "ORU-R01-lab.hl7").await;
    let report = one(srv, "DiagnosticReport?code=24323-8").await;
    assert_eq!(report["status"], "final");
    assert_eq!(report["result"].as_array().unwrap().len(), 5, "{report}");
    assert_eq!(report["issued"], "2026-11-02T09:30:00-05:00");
    let glucose = one(srv, "Observation?code=http://loinc.org|2345-7").await;
    assert_eq!(glucose["valueQuantity"]["value"], 142.0);
    assert_eq!(glucose["valueQuantity"]["code"], "mg/dL");
    assert_eq!(glucose["interpretation"][0]["coding"][0]["code"], "H");
    assert_eq!(glucose["referenceRange"][0]["low"]["value"], 70.0);
    assert_eq!(glucose["referenceRange"][0]["high"]["value"], 99.0);
    assert_eq!(glucose["subject"], report["subject"]);
    let creatinine = one(srv, "Observation?code=2160-0").await;
    assert_eq!(creatinine["valueQuantity"]["comparator"], "<", "{creatinine}");
    let color = one(srv, "Observation?code=5778-6").await;
    assert_eq!(color["valueCodeableConcept"]["coding"][0]["system"], "http://snomed.info/sct");
    let note = one(srv, "Observation?code=8251-1").await;
    assert!(note["valueString"].as_str().unwrap().starts_with("Fasting specimen"));
    // The lab's patient is the admitted one.
    let p = one(srv, &format!("Patient?identifier={GH}|4455667")).await;
    assert_eq!(report["subject"]["reference"], format!("Patient/{}", p["id"].as_str().unwrap()));
    // Numbers by value.
    assert_eq!(json(srv.get("Observation?value-quantity=gt140").await).await["total"], 1);
}

async fn refusals(srv: &Srv, conn: &mut TcpStream) {
    let ack = send(conn, "bad-version.hl7").await;
    assert_eq!(field(&ack, "MSA", 1), "AR");
    assert_eq!(field(&ack, "ERR", 2), "MSH-12");
    let ack = send(conn, "bad-type.hl7").await;
    assert_eq!(field(&ack, "MSA", 1), "AR");
    let ack = send(conn, "bad-sex.hl7").await;
    assert_eq!((field(&ack, "MSA", 1).as_str(), field(&ack, "ERR", 2).as_str()), ("AE", "PID-8"), "{ack}");
    let ack = send(conn, "bad-vxu-date.hl7").await;
    assert_eq!((field(&ack, "MSA", 1).as_str(), field(&ack, "ERR", 2).as_str()), ("AE", "RXA[2]-3"), "{ack}");
    // Atomic: the first dose, and the Patient, were not stored either.
    assert_eq!(json(srv.get("Patient?identifier=880577").await).await["total"], 0);
    assert_eq!(json(srv.get("Immunization?identifier=IZ-790011").await).await["total"], 0);
    for id in ["4455710", "4455802"] {
        assert_eq!(json(srv.get(&format!("Patient?identifier={id}")).await).await["total"], 0);
    }
}

async fn corpus(backend: Backend) {
    let srv = start(backend).await;
    let mut conn = connect(&srv).await;
    admission(&srv, &mut conn).await;
    merge(&srv, &mut conn).await;
    immunizations(&srv, &mut conn).await;
    lab(&srv, &mut conn).await;
    refusals(&srv, &mut conn).await;
    // MSH-18 8859/1: the Latin-1 bytes are read as Latin-1.
    accept(&mut conn, "ADT-A01-latin1.hl7").await;
    let p = one(&srv, "Patient?identifier=4455931").await;
    assert_eq!(p["name"][0]["family"], "Müller", "{p}");
    assert_eq!(p["name"][0]["given"][0], "Zoë");
    srv.stop().await;
}

/// `[hl7_authorities]`: an assigning authority becomes the configured system.
async fn configured_authorities(backend: Backend) {
    let srv = Srv::start_with(backend, |c| {
        c.mllp = Some("127.0.0.1:0".into());
        c.hl7_authorities.insert("GH".into(), "http://goodhealth.example.org/mrn".into());
    })
    .await;
    let mut conn = connect(&srv).await;
    accept(&mut conn, "ADT-A01-pv1.hl7").await;
    let p = one(&srv, "Patient?identifier=http://goodhealth.example.org/mrn|4455667").await;
    assert_eq!(p["identifier"][0]["system"], "http://goodhealth.example.org/mrn");
    srv.stop().await;
}

/// A third-party sender: the Python `hl7` package's `MLLPClient` sends corpus files (one of
/// them Latin-1) on its own connection; required when HEARTH_REQUIRE_CLIENTS=1.
async fn python_hl7_sender(backend: Backend) {
    let has_client = std::process::Command::new("python3")
        .args(["-c", "import hl7.client"])
        .status()
        .is_ok_and(|s| s.success());
    if !has_client {
        assert!(
            std::env::var("HEARTH_REQUIRE_CLIENTS").as_deref() != Ok("1"),
            "HEARTH_REQUIRE_CLIENTS=1 but python3 with hl7 is not installed (pip install -r tests/clients/requirements.txt)"
        );
        eprintln!("python hl7 not installed: skipping the third-party sender test");
        return;
    }
    let srv = start(backend).await;
    let addr = srv.state.mllp_addr.expect("MLLP is on");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hl7v2");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/clients/hl7_send.py");
    let files = ["ADT-A01-pv1.hl7", "VXU-V04-multi.hl7", "ADT-A01-latin1.hl7", "bad-sex.hl7", "ADT04-23.hl7"];
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(script)
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .args(files.iter().map(|f| format!("{dir}/{f}")))
            .output()
            .expect("python3")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let acks: Vec<Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let codes: Vec<&str> = acks.iter().map(|a| a["msa1"].as_str().unwrap()).collect();
    assert_eq!(codes, ["AA", "AA", "AA", "AE", "AA"], "{stdout}");
    assert_eq!(acks[0]["msa2"], "GH26110100001");
    assert_eq!(one(&srv, "Patient?identifier=4455931").await["name"][0]["family"], "Müller");
    assert_eq!(json(srv.get("Immunization?patient.identifier=880412").await).await["total"], 3);
    srv.stop().await;
}

/// `POST /hl7v2`: the ACK as the body, behind the FHIR API's authorization.
async fn http_endpoint(backend: Backend) {
    let srv = Srv::start_with(backend, |c| c.auth = hearth::config::AuthMode::Smart).await;
    let url = srv.base.trim_end_matches("/fhir").to_string() + "/hl7v2";
    let message =
        std::fs::read(format!("{}/examples/hl7v2/ADT-A01-pv1.hl7", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let post = |token: Option<String>, kind: &'static str| {
        let mut r = srv.client.post(&url).header("content-type", kind).body(message.clone());
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        r.send()
    };
    assert_eq!(post(None, "x-application/hl7-v2+er7").await.unwrap().status(), 401);
    let reader = crate::support::mint(&srv, "app", "u1", "system/*.rs", None, None);
    let r = post(Some(reader), "x-application/hl7-v2+er7").await.unwrap();
    assert_eq!(r.status(), 403, "read-only rights cannot feed");
    let patient_app = crate::support::mint(&srv, "app", "u1", "patient/*.cruds", Some("p1"), None);
    assert_eq!(
        post(Some(patient_app), "text/plain").await.unwrap().status(),
        403,
        "a feed is not one patient's"
    );
    let feed = crate::support::mint(&srv, "feed", "svc", "system/*.cruds", None, None);
    assert_eq!(post(Some(feed.clone()), "application/json").await.unwrap().status(), 415);
    let r = post(Some(feed.clone()), "x-application/hl7-v2+er7").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "x-application/hl7-v2+er7");
    let ack = r.text().await.unwrap();
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    assert_eq!(field(&ack, "MSA", 2), "GH26110100001");
    let found = srv
        .client
        .get(srv.url(&format!("Patient?identifier={GH}|4455667")))
        .bearer_auth(&feed)
        .send()
        .await
        .unwrap();
    assert_eq!(json(found).await["total"], 1);
    // A refusal is an ACK too, with status 200.
    let r = srv
        .client
        .post(&url)
        .bearer_auth(&feed)
        .header("content-type", "text/plain")
        .body("MSH|^~\\&|A|B|C|D|2024||ADT^A01|9|P|2.1\rPID|1||1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(field(&r.text().await.unwrap(), "MSA", 1), "AR");
    srv.stop().await;
}

/// MLLP over TLS: a client trusting the server's certificate gets its ACK; a plain-TCP sender
/// on the TLS port is dropped without disturbing the listener.
async fn mllp_over_tls(backend: Backend) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let key = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, key.cert.pem()).unwrap();
    std::fs::write(&key_path, key.signing_key.serialize_pem()).unwrap();
    let srv = Srv::start_with(backend, |c| {
        c.mllp = Some("127.0.0.1:0".into());
        c.mllp_tls_cert = Some(cert_path.to_string_lossy().into());
        c.mllp_tls_key = Some(key_path.to_string_lossy().into());
    })
    .await;
    let addr = srv.state.mllp_addr.unwrap();
    // Plain bytes on the TLS port: the handshake fails and that connection is closed.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(b"\x0bMSH|^~\\&|A|B|C|D|2024||ADT^A01|1|P|2.5.1\x1c\r").await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(std::time::Duration::from_secs(10), plain.read(&mut buf)).await.unwrap();
    assert!(!matches!(n, Ok(k) if k > 0 && buf[0] == 0x0b), "no ACK in clear text");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(key.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.unwrap();
    let message =
        std::fs::read(format!("{}/examples/hl7v2/ADT-A01-pv1.hl7", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let ack = exchange_bytes(&mut tls, &message).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    one(&srv, &format!("Patient?identifier={GH}|4455667")).await;
    srv.stop().await;
}

/// `hearth hl7 replay --id`: a merge refused because its retired Patient was not there yet is
/// processed again once it is, from the stored message.
async fn replay(backend: Backend) {
    let db = crate::support::Db::new(backend).await;
    let srv = Srv::start_on(&db, |c| c.mllp = Some("127.0.0.1:0".into())).await;
    let mut conn = connect(&srv).await;
    let ack = send(&mut conn, "ADT-A40-merge.hl7").await;
    assert_eq!(field(&ack, "MSA", 1), "AE", "{ack}");
    accept(&mut conn, "ADT-A28-dup.hl7").await;
    accept(&mut conn, "ADT-A28-survivor.hl7").await;
    drop(conn);
    srv.stop().await;
    let url = db.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
            .args(["hl7", "replay", "--id", "GH26110600005", "--auth", "none", "--database", &url])
            .env("HEARTH_LOG", "warn")
            .output()
            .expect("hearth hl7 replay")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("EPIC^GOODHEALTH GH26110600005: AE before, AA now"), "{stdout}");
    let srv = Srv::start_on(&db, |c| c.mllp = Some("127.0.0.1:0".into())).await;
    let dup = one(&srv, &format!("Patient?identifier={GH}|7700112")).await;
    assert_eq!(dup["active"], false, "{dup}");
    // The record now says AA: the message sent again gets that ACK, not a second merge.
    let mut conn = connect(&srv).await;
    accept(&mut conn, "ADT-A40-merge.hl7").await;
    assert_eq!(
        one(&srv, &format!("Patient?identifier={GH}|7700112")).await["meta"]["versionId"],
        dup["meta"]["versionId"]
    );
    srv.stop().await;
}

crate::on_backends!(corpus, http_endpoint, replay, configured_authorities, python_hl7_sender, mllp_over_tls,);
