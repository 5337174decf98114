//! HL7 v2 over MLLP (issue 7, begun): real TCP connections to the listener, ACKs checked field
//! by field, and the resulting Patients found by FHIR search, on both backends.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{Backend, Srv, json};

pub async fn start(backend: Backend) -> Srv {
    Srv::start_with(backend, |c| c.mllp = Some("127.0.0.1:0".into())).await
}

pub async fn connect(srv: &Srv) -> TcpStream {
    TcpStream::connect(srv.state.mllp_addr.expect("MLLP is on")).await.expect("connect")
}

/// Sends one framed message and reads one framed answer.
pub async fn exchange(conn: &mut TcpStream, message: &str) -> String {
    exchange_bytes(conn, message.as_bytes()).await
}

pub async fn exchange_bytes<S: AsyncRead + AsyncWrite + Unpin>(conn: &mut S, message: &[u8]) -> String {
    let mut frame = vec![0x0b];
    frame.extend_from_slice(message);
    frame.extend_from_slice(&[0x1c, 0x0d]);
    conn.write_all(&frame).await.unwrap();
    read_frame(conn).await
}

async fn read_frame<S: AsyncRead + Unpin>(conn: &mut S) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk))
            .await
            .expect("an ACK in time")
            .unwrap();
        assert!(n > 0, "connection closed before an ACK: {}", String::from_utf8_lossy(&buf));
        buf.extend_from_slice(&chunk[..n]);
        if buf.ends_with(&[0x1c, 0x0d]) {
            break;
        }
    }
    assert_eq!(buf[0], 0x0b);
    String::from_utf8(buf[1..buf.len() - 2].to_vec()).unwrap()
}

/// Field `n` of the ACK's first `seg` segment.
pub fn field(ack: &str, seg: &str, n: usize) -> String {
    let line = ack.split('\r').find(|l| l.starts_with(seg)).unwrap_or_else(|| panic!("no {seg} in {ack}"));
    let offset = if seg == "MSH" { 1 } else { 0 };
    line.split('|').nth(n - offset).unwrap_or_default().to_string()
}

fn adt(control: &str, event: &str, mrn: &str, family: &str) -> String {
    format!(
        "MSH|^~\\&|LAB|NORTH|HEARTH|CLINIC|20250102030405||ADT^{event}^ADT_A01|{control}|P|2.5.1\r\
         EVN|{event}|20250102030405\r\
         PID|1||{mrn}^^^NORTH&1.2.840.99&ISO^MR||{family}^Ada^^^^^L||19800102|F|||1 Main St^^Springfield^IL^62701||^PRN^PH^^^555^1234567\r\
         PV1|1|O\r"
    )
}

async fn patients(srv: &Srv, mrn: &str) -> Value {
    json(srv.get(&format!("Patient?identifier=urn:oid:1.2.840.99|{mrn}")).await).await
}

async fn listener(backend: Backend) {
    let srv = start(backend).await;
    let mut conn = connect(&srv).await;
    // A01: accepted after commit, the Patient is there.
    let ack = exchange(&mut conn, &adt("c1", "A01", "M100", "Ward")).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    assert_eq!(field(&ack, "MSA", 2), "c1");
    assert_eq!(field(&ack, "MSH", 3), "HEARTH", "sender and receiver swapped: {ack}");
    assert_eq!(field(&ack, "MSH", 5), "LAB");
    assert_eq!(field(&ack, "MSH", 9), "ACK^A01^ACK");
    let b = patients(&srv, "M100").await;
    assert_eq!(b["total"], 1, "{b}");
    let p = &b["entry"][0]["resource"];
    assert_eq!(p["name"][0]["family"], "Ward");
    assert_eq!(p["birthDate"], "1980-01-02");
    assert_eq!(p["gender"], "female");
    assert_eq!(p["telecom"][0]["value"], "5551234567");
    // A08 on the same connection: the same Patient, updated.
    let ack = exchange(&mut conn, &adt("c2", "A08", "M100", "Ward-Lee")).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    let b = patients(&srv, "M100").await;
    assert_eq!(b["total"], 1);
    assert_eq!(b["entry"][0]["resource"]["name"][0]["family"], "Ward-Lee");
    assert_eq!(b["entry"][0]["resource"]["meta"]["versionId"], "2");
    // The same control id again: the first ACK, nothing processed.
    let again = exchange(&mut conn, &adt("c2", "A08", "M100", "Changed")).await;
    assert_eq!(field(&again, "MSA", 1), "AA");
    assert_eq!(field(&again, "MSH", 10), field(&ack, "MSH", 10), "the same ACK");
    assert_eq!(patients(&srv, "M100").await["entry"][0]["resource"]["meta"]["versionId"], "2");
    // A copy that would now be refused (another version) is still a copy: the first ACK.
    let refused =
        exchange(&mut conn, &adt("c2", "A08", "M100", "Changed").replace("|P|2.5.1", "|P|2.1")).await;
    assert_eq!(field(&refused, "MSA", 1), "AA", "{refused}");
    assert_eq!(field(&refused, "MSH", 10), field(&ack, "MSH", 10), "the same ACK");
    // Not supported: AR with the reason, nothing stored.
    let mfn = adt("c3", "A01", "M200", "Lab").replace("ADT^A01^ADT_A01", "MFN^M02^MFN_M02");
    let ack = exchange(&mut conn, &mfn).await;
    assert_eq!(field(&ack, "MSA", 1), "AR", "{ack}");
    assert!(field(&ack, "ERR", 3).starts_with("200^"), "{ack}");
    assert_eq!(patients(&srv, "M200").await["total"], 0);
    let a02 = adt("c3b", "A02", "M200", "Lab");
    let ack = exchange(&mut conn, &a02).await;
    assert_eq!(field(&ack, "MSA", 1), "AR", "{ack}");
    assert!(field(&ack, "ERR", 3).starts_with("201^"), "{ack}");
    let ack = exchange(&mut conn, &adt("c4", "A01", "M300", "Old").replace("|2.5.1\r", "|2.1\r")).await;
    assert_eq!(field(&ack, "MSA", 1), "AR");
    assert!(field(&ack, "ERR", 3).starts_with("203^"), "{ack}");
    assert_eq!(patients(&srv, "M300").await["total"], 0);
    // A bad value: AE naming the field, nothing stored.
    let ack =
        exchange(&mut conn, &adt("c5", "A01", "M400", "Bad").replace("|19800102|F|", "|19801340|Q|")).await;
    assert_eq!(field(&ack, "MSA", 1), "AE", "{ack}");
    assert_eq!(field(&ack, "ERR", 2), "PID-7");
    let errs: Vec<&str> = ack.split('\r').filter(|l| l.starts_with("ERR|")).collect();
    assert_eq!(errs.len(), 2, "an ERR for each problem: {ack}");
    assert!(errs[1].contains("|PID-8|"), "{ack}");
    assert_eq!(patients(&srv, "M400").await["total"], 0);
    // Noise between frames and a frame that is no HL7: the connection goes on.
    conn.write_all(b"\r\n").await.unwrap();
    let ack = exchange(&mut conn, "hello").await;
    assert_eq!(field(&ack, "MSA", 1), "AR", "{ack}");
    let ack = exchange(&mut conn, &adt("c6", "A04", "M500", "Next")).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    // An oversized frame closes that connection only.
    let mut big = connect(&srv).await;
    let mut frame = vec![0x0b];
    frame.extend(std::iter::repeat_n(b'x', 1024 * 1024 + 10));
    let _ = big.write_all(&frame).await;
    let mut rest = [0u8; 16];
    let closed =
        tokio::time::timeout(Duration::from_secs(10), big.read(&mut rest)).await.expect("closed in time");
    assert!(matches!(closed, Ok(0) | Err(_)), "the oversized connection is closed");
    let ack = exchange(&mut conn, &adt("c7", "A31", "M600", "Still")).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    // Several connections at once.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let addr = srv.state.mllp_addr.unwrap();
        tasks.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(addr).await.unwrap();
            let mut codes = Vec::new();
            for j in 0..5 {
                let ack =
                    exchange(&mut c, &adt(&format!("p{i}-{j}"), "A28", &format!("P{i}-{j}"), "Many")).await;
                codes.push(field(&ack, "MSA", 1));
            }
            codes
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().iter().all(|c| c == "AA"));
    }
    assert_eq!(json(srv.get("Patient?family=Many&_summary=count").await).await["total"], 40);
    srv.stop().await;
}

/// The answer each sample in `examples/hl7v2/` gets when they are sent in name order (the
/// README says what each is); the others are accepted.
const REFUSED: &[(&str, &str)] = &[
    ("bad-version.hl7", "AR"),
    ("bad-type.hl7", "AR"),
    ("bad-sex.hl7", "AE"),
    ("bad-vxu-date.hl7", "AE"),
    // A VAERS report whose OBX-5 of type NM reads `01I`.
    ("oru-imm.hl7", "AE"),
];

/// Every sample in `examples/hl7v2/` is answered as it should be, over one connection.
async fn samples(backend: Backend) {
    let srv = start(backend).await;
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/hl7v2");
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().flatten().map(|e| e.path()).collect();
    files.sort();
    let mut conn = connect(&srv).await;
    let mut accepted = 0;
    for path in files.iter().filter(|p| p.extension().is_some_and(|e| e == "hl7")) {
        let bytes = std::fs::read(path).unwrap();
        let ack = exchange_bytes(&mut conn, &bytes).await;
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let want = REFUSED.iter().find(|(n, _)| *n == name).map_or("AA", |(_, c)| c);
        assert_eq!(field(&ack, "MSA", 1), want, "{name}: {ack}");
        accepted += usize::from(want == "AA");
    }
    assert!(accepted >= 25, "{accepted}");
    let all = json(srv.get("Patient?_summary=count").await).await;
    assert!(all["total"].as_i64().unwrap() >= 10, "{all}");
    srv.stop().await;
}

fn vxu(control: &str, action: &str, lot: &str) -> String {
    format!(
        "MSH|^~\\&|IIS|NORTH|HEARTH|CLINIC|20250102||VXU^V04^VXU_V04|{control}|P|2.5.1\r\
         PID|1||V100^^^NORTH&1.2.840.99&ISO^MR||Dose^Della||20200105|F\r\
         ORC|RE||F-77^NORTH-IZ\r\
         RXA|0|1|20250102||08^HepB pediatric^CVX|0.5|mL^mL^UCUM||00^New record^NIP001||||||{lot}|20261231|MSK^Merck^MVX|||CP|{action}\r\
         RXR|C28161^Intramuscular^NCIT|LA^Left arm^HL70163\r\
         RXA|0|1|20200301||20^DTaP^CVX|999|||01^Historical^NIP001\r\
         RXA|0|1|20250102||03^MMR^CVX|999||||||||||||00^Parental decision^NIP002||RE\r"
    )
}

async fn immunizations(backend: Backend) {
    let srv = start(backend).await;
    let mut conn = connect(&srv).await;
    let ack = exchange(&mut conn, &vxu("v1", "A", "LOT1")).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    let all = json(srv.get("Immunization?_sort=date&_count=10").await).await;
    assert_eq!(all["total"], 3, "{all}");
    let by_code = |code: &str| {
        all["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["resource"].clone())
            .find(|r| r["vaccineCode"]["coding"][0]["code"] == code)
            .unwrap()
    };
    let hepb = by_code("08");
    assert_eq!(hepb["status"], "completed");
    assert_eq!(hepb["occurrenceDateTime"], "2025-01-02");
    assert_eq!(hepb["vaccineCode"]["coding"][0]["system"], "http://hl7.org/fhir/sid/cvx");
    assert_eq!(hepb["doseQuantity"]["value"], 0.5);
    assert_eq!(hepb["lotNumber"], "LOT1");
    assert_eq!(hepb["expirationDate"], "2026-12-31");
    assert_eq!(hepb["primarySource"], true);
    assert_eq!(hepb["route"]["coding"][0]["code"], "C28161");
    assert_eq!(hepb["site"]["coding"][0]["code"], "LA");
    assert_eq!(hepb["identifier"][0]["value"], "F-77");
    let org = hepb["manufacturer"]["reference"].as_str().unwrap().to_string();
    let manufacturer = json(srv.get(&org).await).await;
    assert_eq!(manufacturer["identifier"][0]["value"], "MSK");
    let patient = hepb["patient"]["reference"].as_str().unwrap().to_string();
    assert_eq!(json(srv.get(&patient).await).await["name"][0]["family"], "Dose");
    let dtap = by_code("20");
    assert_eq!(dtap["primarySource"], false);
    assert_eq!(dtap["reportOrigin"]["coding"][0]["code"], "01");
    assert!(dtap.get("doseQuantity").is_none(), "999 means unknown");
    let mmr = by_code("03");
    assert_eq!(mmr["status"], "not-done");
    assert_eq!(mmr["statusReason"]["coding"][0]["code"], "00");
    // Sent again (a new control id, a corrected lot): updated, not duplicated.
    let ack = exchange(&mut conn, &vxu("v2", "U", "LOT2")).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    assert_eq!(json(srv.get("Immunization?_summary=count").await).await["total"], 3);
    assert_eq!(json(srv.get("Organization?_summary=count").await).await["total"], 1);
    let hepb = json(srv.get("Immunization?identifier=F-77").await).await;
    assert_eq!(hepb["entry"][0]["resource"]["lotNumber"], "LOT2");
    assert_eq!(hepb["entry"][0]["resource"]["meta"]["versionId"], "2");
    // RXA-21 D: the dose was recorded in error.
    let ack = exchange(&mut conn, &vxu("v3", "D", "LOT2")).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    let hepb = json(srv.get("Immunization?identifier=F-77").await).await;
    assert_eq!(hepb["entry"][0]["resource"]["status"], "entered-in-error");
    // A wrong RXA: AE naming it, and nothing of the message stored.
    let bad = vxu("v4", "A", "LOT9").replace("|20200301|", "|2020-03|").replace("V100", "V200");
    let ack = exchange(&mut conn, &bad).await;
    assert_eq!(field(&ack, "MSA", 1), "AE", "{ack}");
    assert_eq!(field(&ack, "ERR", 2), "RXA[2]-3");
    assert_eq!(json(srv.get("Patient?identifier=urn:oid:1.2.840.99|V200").await).await["total"], 0);
    srv.stop().await;
}

/// Many senders at once: their messages are committed in groups. Every message gets its own
/// answer, a failing one stores nothing and does not disturb the others, and a resource that
/// several messages of a group write (the manufacturer) is stored and indexed once.
async fn concurrent(backend: Backend) {
    let srv = start(backend).await;
    let mut tasks = Vec::new();
    for c in 0..8 {
        let mut conn = connect(&srv).await;
        tasks.push(tokio::spawn(async move {
            let mut codes = Vec::new();
            for i in 0..15 {
                let n = c * 100 + i;
                let mut m = vxu(&format!("g{n}"), "A", &format!("L{n}"))
                    .replace("V100", &format!("G{n}"))
                    .replace("F-77", &format!("F-{n}"));
                if i % 5 == 4 {
                    m = m.replace("|20200301|", "|2020-03|");
                }
                let ack = exchange(&mut conn, &m).await;
                assert_eq!(field(&ack, "MSA", 2), format!("g{n}"), "{ack}");
                codes.push((n, field(&ack, "MSA", 1)));
            }
            codes
        }));
    }
    let mut good = 0;
    for t in tasks {
        for (n, code) in t.await.unwrap() {
            let want = if n % 100 % 5 == 4 { "AE" } else { "AA" };
            assert_eq!(code, want, "message {n}");
            good += usize::from(want == "AA");
        }
    }
    let count = |q: &'static str| {
        let srv = &srv;
        async move { json(srv.get(q).await).await["total"].as_u64().unwrap() as usize }
    };
    assert_eq!(count("Patient?_summary=count").await, good);
    assert_eq!(count("Immunization?_summary=count").await, good * 3);
    assert_eq!(count("Provenance?_summary=count").await, good);
    assert_eq!(count("Organization?identifier=MSK").await, 1, "one manufacturer, indexed once");
    assert_eq!(count("Immunization?manufacturer.identifier=MSK").await, good);
    assert_eq!(count("Patient?identifier=urn:oid:1.2.840.99|G4").await, 0, "a failed message stored nothing");
    assert_eq!(count("Patient?identifier=urn:oid:1.2.840.99|G3").await, 1);
    // One Patient updated by every sender at once: groups write it several times over, and
    // only its last version may be found by name.
    let mut tasks = Vec::new();
    for c in 0..8 {
        let mut conn = connect(&srv).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                let ack =
                    exchange(&mut conn, &adt(&format!("s{c}-{i}"), "A08", "SHARED", &format!("Fam{c}x{i}")))
                        .await;
                assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut found = 0;
    for c in 0..8 {
        for i in 0..5 {
            let q = format!("Patient?family:exact=Fam{c}x{i}&_summary=count");
            found += json(srv.get(&q).await).await["total"].as_u64().unwrap();
        }
    }
    assert_eq!(found, 1, "stale index rows of earlier versions");
    srv.stop().await;
}

/// One part of a group commit: a conditional update of the Patient with `identifier` in
/// system `urn:x`, recorded as message `control_id`.
fn patient_part(control_id: &str, identifier: &str, family: &str) -> hearth::engine::Part {
    use hearth::engine::{Method, Part, Request};
    let requests = vec![Request {
        method: Method::Put,
        url: format!("Patient?identifier=urn:x|{identifier}"),
        full_url: None,
        resource: Some(serde_json::json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:x", "value": identifier}],
            "name": [{"family": family}],
        })),
        if_match: None,
        if_none_exist: None,
    }];
    let record = hearth::store::hl7::Received {
        sender: "T^T".into(),
        control_id: control_id.into(),
        message_type: "ADT^A08".into(),
        status: "AA",
        ack: format!("ack of {control_id}"),
        raw: String::new(),
        received: 0,
    };
    Part::new(requests, record).unwrap()
}

/// Within one group commit, a resource created by one part and updated by the next keeps only
/// the index rows of its last version.
async fn group_rewrites(backend: Backend) {
    let srv = start(backend).await;
    let parts = [
        patient_part("grp1", "grp", "First"),
        patient_part("grp2", "grp", "Second"),
        patient_part("grp3", "grp", "Third"),
    ];
    let results = srv.state.engine.transaction_group(&parts).await;
    assert!(results.iter().all(|r| r.is_ok()));
    for (family, want) in [("First", 0), ("Second", 0), ("Third", 1)] {
        let b = json(srv.get(&format!("Patient?family:exact={family}")).await).await;
        assert_eq!(b["total"], want, "{family}: {b}");
    }
    srv.stop().await;
}

/// A part that fails inside a group (here: its condition matches two patients) is answered
/// alone with its error and leaves nothing; the parts before and after it commit.
async fn group_part_fails(backend: Backend) {
    let srv = start(backend).await;
    for _ in 0..2 {
        let twin = serde_json::json!({
            "resourceType": "Patient",
            "identifier": [{"system": "urn:x", "value": "twin"}],
        });
        assert_eq!(srv.post("Patient", &twin).await.status(), 201);
    }
    let parts = [
        patient_part("part1", "one", "Part1"),
        patient_part("part2", "twin", "Part2"),
        patient_part("part3", "three", "Part3"),
    ];
    let results = srv.state.engine.transaction_group(&parts).await;
    assert!(results[0].is_ok() && results[2].is_ok());
    assert!(results[1].is_err(), "two patients match the second part's condition");
    for (family, want) in [("Part1", 1), ("Part2", 0), ("Part3", 1)] {
        let b = json(srv.get(&format!("Patient?family:exact={family}")).await).await;
        assert_eq!(b["total"], want, "{family}: {b}");
    }
    let store = &srv.state.engine.store;
    for (n, want) in [(1, true), (2, false), (3, true)] {
        let ack = store.hl7_ack("T^T", &format!("part{n}")).await.unwrap();
        assert_eq!(ack.is_some(), want, "record of part {n}");
    }
    srv.stop().await;
}

/// Back-pressure at the door: beyond `mllp_max_connections`, a sender waits to be served until
/// a connection closes.
async fn connection_limit(backend: Backend) {
    let srv = Srv::start_with(backend, |c| {
        c.mllp = Some("127.0.0.1:0".into());
        c.mllp_max_connections = 1;
    })
    .await;
    let mut first = connect(&srv).await;
    let ack = exchange(&mut first, &adt("k1", "A04", "K1", "One")).await;
    assert_eq!(field(&ack, "MSA", 1), "AA");
    let mut second = connect(&srv).await;
    let m = adt("k2", "A04", "K2", "Two");
    let mut frame = vec![0x0b];
    frame.extend_from_slice(m.as_bytes());
    frame.extend_from_slice(&[0x1c, 0x0d]);
    second.write_all(&frame).await.unwrap();
    let mut byte = [0u8; 1];
    let waited = tokio::time::timeout(Duration::from_millis(500), second.read(&mut byte)).await;
    assert!(waited.is_err(), "the second sender is not served while the first is connected");
    drop(first);
    let ack = read_frame(&mut second).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    assert_eq!(patients(&srv, "K2").await["total"], 1);
    srv.stop().await;
}

/// The same messages sent on several connections at once (a sender retrying on a new
/// connection before its ACK came) are applied once each; every copy gets AA.
async fn duplicates(backend: Backend) {
    let srv = start(backend).await;
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let mut conn = connect(&srv).await;
        tasks.push(tokio::spawn(async move {
            for i in 0..5 {
                let ack =
                    exchange(&mut conn, &adt(&format!("dup{i}"), "A08", &format!("D{i}"), "Twice")).await;
                assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
                assert_eq!(field(&ack, "MSA", 2), format!("dup{i}"));
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let p = json(srv.get("Provenance?_summary=count").await).await;
    assert_eq!(p["total"], 5, "one Provenance per message, however often it came: {p}");
    for i in 0..5 {
        let b = patients(&srv, &format!("D{i}")).await;
        assert_eq!(b["entry"][0]["resource"]["meta"]["versionId"], "1", "{b}");
    }
    srv.stop().await;
}

/// Refusals of what cannot be filed safely, and the ACK's header.
async fn refusals_and_ack_header(backend: Backend) {
    let srv = start(backend).await;
    let mut conn = connect(&srv).await;
    // Two patients in one ORU: refused whole, not filed under the first.
    let oru = "MSH|^~\\&|LAB|NORTH|HEARTH|CLINIC|20250102||ORU^R01|o2|P|2.5.1\r\
               PID|1||P1^^^NORTH&1.2.840.99&ISO\rOBR|1||F1|2345-7^Glucose^LN\rOBX|1|NM|2345-7^Glucose^LN||5\r\
               PID|2||P2^^^NORTH&1.2.840.99&ISO\rOBR|1||F2|2345-7^Glucose^LN\rOBX|1|NM|2345-7^Glucose^LN||6\r";
    let ack = exchange(&mut conn, oru).await;
    assert_eq!(field(&ack, "MSA", 1), "AE", "{ack}");
    assert_eq!(patients(&srv, "P1").await["total"], 0);
    // A control character: AR, the connection goes on.
    let ack = exchange(&mut conn, &adt("n1", "A04", "N1", "Nul").replace("Nul", "N\u{1}ul")).await;
    assert_eq!(field(&ack, "MSA", 1), "AR", "{ack}");
    // The ACK names the sender's application with its components, and echoes MSH-11.
    let m = adt("h1", "A04", "H1", "Hd")
        .replace("|LAB|NORTH|", "|LAB^1.2.3^ISO|NORTH|")
        .replace("|P|2.5.1", "|T|2.5.1");
    let ack = exchange(&mut conn, &m).await;
    assert_eq!(field(&ack, "MSA", 1), "AA", "{ack}");
    assert_eq!(field(&ack, "MSH", 5), "LAB^1.2.3^ISO", "{ack}");
    assert_eq!(field(&ack, "MSH", 11), "T");
    srv.stop().await;
}

crate::on_backends!(
    listener,
    samples,
    immunizations,
    concurrent,
    group_rewrites,
    group_part_fails,
    duplicates,
    connection_limit,
    refusals_and_ack_header,
);
