//! The OpenAPI document at `/v1/openapi.json`: valid by a real validator
//! (the Python `openapi-spec-validator`, installed into a venv under
//! target/ when the machine's Python lacks it), every route of the server in
//! it with the methods the router serves, and every `$ref` resolving.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// The validator release installed when the machine has none.
const VALIDATOR: &str = "openapi-spec-validator==0.9.0";

/// Every HTTP route of the server under `/v1` (the WebSocket aside), as the
/// document must list it.
const ROUTES: &[(&str, &str)] = &[
    ("get", "/v1/streams"),
    ("post", "/v1/streams"),
    ("get", "/v1/streams/{stream}"),
    ("put", "/v1/streams/{stream}"),
    ("delete", "/v1/streams/{stream}"),
    ("post", "/v1/streams/{stream}/purge"),
    ("post", "/v1/messages"),
    ("post", "/v1/messages/batch"),
    ("post", "/v1/subjects/{subject}"),
    ("get", "/v1/streams/{stream}/messages"),
    ("get", "/v1/streams/{stream}/messages/{seq}"),
    ("get", "/v1/streams/{stream}/subjects/{subject}/last"),
    ("get", "/v1/streams/{stream}/consumers"),
    ("post", "/v1/streams/{stream}/consumers"),
    ("get", "/v1/streams/{stream}/consumers/{consumer}"),
    ("put", "/v1/streams/{stream}/consumers/{consumer}"),
    ("delete", "/v1/streams/{stream}/consumers/{consumer}"),
    ("post", "/v1/streams/{stream}/consumers/{consumer}/reset"),
    ("post", "/v1/streams/{stream}/consumers/{consumer}/fetch"),
    ("post", "/v1/streams/{stream}/consumers/{consumer}/settle"),
    ("post", "/v1/streams/{stream}/consumers/{consumer}/settle_batch"),
    ("get", "/v1/streams/{stream}/consumers/{consumer}/dead-letters"),
    ("delete", "/v1/streams/{stream}/consumers/{consumer}/dead-letters"),
    ("post", "/v1/streams/{stream}/consumers/{consumer}/dead-letters/replay"),
    ("get", "/v1/tail"),
    ("get", "/v1/openapi.json"),
];

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

async fn document() -> (SocketAddr, Value) {
    // Behind tokens, to show the document itself needs none.
    let access = herald_server::Access::Tokens(vec![herald_server::Token::new("admin", "secret").admin()]);
    let server = herald_server::Server::new(herald::Bus::memory().unwrap()).access(access);
    let addr = common::start(server).await;
    let answer = common::get(addr, "/v1/openapi.json", &[]).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    assert_eq!(answer.header("content-type"), Some("application/json"));
    (addr, answer.json())
}

#[tokio::test]
async fn the_served_document_passes_openapi_spec_validator() {
    let (_, document) = document().await;
    assert_eq!(document["openapi"].as_str().map(|v| &v[..2]), Some("3."));
    let dir = tempfile_dir("served");
    let path = dir.join("openapi.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&document).unwrap()).unwrap();
    let python = validator_python();
    if let Err(report) = validate(&python, &path) {
        panic!("openapi-spec-validator rejects the served document:\n{report}");
    }

    // The validator is really looking: a dangling reference fails it.
    let mut broken = document.clone();
    broken["paths"]["/v1/streams"]["get"]["responses"]["200"]["content"]["application/json"]["schema"] =
        serde_json::json!({"$ref": "#/components/schemas/NoSuchSchema"});
    let path = dir.join("broken.json");
    std::fs::write(&path, serde_json::to_vec(&broken).unwrap()).unwrap();
    let report = validate(&python, &path).expect_err("a dangling $ref must not validate");
    assert!(report.contains("NoSuchSchema"), "{report}");
    // Kept for a look when the test fails; removed when it passes.
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn the_document_refuses_a_query_parameter_as_every_route_does() {
    let (addr, _) = document().await;
    for query in ["format=yaml", "%FF=1"] {
        let answer = common::get(addr, &format!("/v1/openapi.json?{query}"), &[]).await;
        let said: String = answer.text().chars().take(200).collect();
        assert_eq!(answer.status, 400, "{query}: {said}");
        assert_eq!(answer.json()["code"], 1004, "{query}");
    }
}

#[tokio::test]
async fn every_route_is_documented_and_every_documented_operation_is_served() {
    let (addr, document) = document().await;
    let paths = document["paths"].as_object().unwrap();
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, item)| {
            METHODS
                .iter()
                .filter(|m| item.get(**m).is_some())
                .map(|m| ((*m).to_owned(), path.clone()))
        })
        .collect();
    let routes: BTreeSet<(String, String)> = ROUTES.iter().map(|(m, p)| ((*m).to_owned(), (*p).to_owned())).collect();
    assert_eq!(documented, routes, "the document lists exactly the server's routes");

    // Ask the router itself which methods each documented path serves: a
    // method it does not route gets 405 with the ones it does in `Allow`.
    for (path, item) in paths {
        let concrete = path
            .replace("{stream}", "orders")
            .replace("{consumer}", "billing")
            .replace("{subject}", "orders.created")
            .replace("{seq}", "1");
        let answer = common::request(addr, "PATCH", &concrete, &[], b"").await;
        assert_eq!(answer.status, 405, "{path} is routed");
        let served: BTreeSet<String> = answer
            .header("allow")
            .unwrap_or_default()
            .split(',')
            .map(|m| m.trim().to_ascii_lowercase())
            .filter(|m| !m.is_empty() && m != "head")
            .collect();
        let listed: BTreeSet<String> = METHODS
            .iter()
            .filter(|m| item.get(**m).is_some())
            .map(|m| (*m).to_owned())
            .collect();
        assert_eq!(served, listed, "the methods the router serves at {path}");
    }
}

#[tokio::test]
async fn every_reference_resolves_and_every_operation_answers_errors_as_wire_errors() {
    let (_, document) = document().await;
    let mut references = Vec::new();
    collect_refs(&document, &mut references);
    assert!(!references.is_empty());
    for reference in &references {
        let pointer = reference
            .strip_prefix('#')
            .unwrap_or_else(|| panic!("external $ref {reference}"));
        assert!(document.pointer(pointer).is_some(), "{reference} resolves");
    }
    let schemes = &document["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer");
    for (path, item) in document["paths"].as_object().unwrap() {
        for (method, operation) in item
            .as_object()
            .unwrap()
            .iter()
            .filter(|(m, _)| METHODS.contains(&m.as_str()))
        {
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("500"),
                "{method} {path} documents server failures"
            );
            if path != "/v1/openapi.json" {
                for status in ["401", "403"] {
                    assert!(responses.contains_key(status), "{method} {path} documents {status}");
                }
            }
            for (status, response) in responses.iter().filter(|(s, _)| s.starts_with('4')) {
                let schema = resolve(&document, response)["content"]["application/json"]["schema"].clone();
                assert_eq!(
                    schema["$ref"], "#/components/schemas/WireError",
                    "{method} {path} answers {status} with a WireError"
                );
            }
        }
    }
}

/// A response, following its `$ref` if it is one.
fn resolve<'a>(document: &'a Value, value: &'a Value) -> &'a Value {
    match value["$ref"].as_str() {
        Some(reference) => document.pointer(reference.trim_start_matches('#')).unwrap(),
        None => value,
    }
}

fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get("$ref") {
                out.push(reference.clone());
            }
            map.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// A fresh directory under target/ for this test's files.
fn tempfile_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("openapi-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs the validator on `file`; the error is its report.
fn validate(python: &Path, file: &Path) -> Result<(), String> {
    let script = "import json, sys\n\
                  from openapi_spec_validator import validate\n\
                  validate(json.load(open(sys.argv[1])))\n";
    let out = Command::new(python)
        .args(["-c", script])
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", python.display()));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// A Python that can import `openapi_spec_validator`: the machine's, or a
/// venv under target/ into which pip installs it. Panics (the test fails,
/// never skips) when neither can be had.
fn validator_python() -> PathBuf {
    let system = PathBuf::from("python3");
    if can_import(&system) {
        return system;
    }
    let venv = Path::new(env!("CARGO_TARGET_TMPDIR")).join("openapi-validator-venv");
    let python = venv.join("bin").join("python");
    if can_import(&python) {
        return python;
    }
    run(
        Command::new("python3").args(["-m", "venv"]).arg(&venv),
        "creating a venv",
    );
    run(
        Command::new(&python).args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            VALIDATOR,
        ]),
        "installing the validator",
    );
    assert!(
        can_import(&python),
        "{VALIDATOR} installed into {} but cannot be imported",
        venv.display()
    );
    python
}

fn can_import(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", "import openapi_spec_validator"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(command: &mut Command, what: &str) {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (the validator needs python3 with pip)"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
