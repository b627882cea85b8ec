//! The real browser the page and WebAuthn tests drive: Debian chromium and playwright-core
//! (installed by `scripts/test`). A missing tool fails the test loudly, never skips it.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

use super::{Server, SmtpSink, workspace};

/// The chromium binary (`GH_CHROMIUM`, else `/usr/bin/chromium`).
pub fn chromium() -> PathBuf {
    let p = std::env::var_os("GH_CHROMIUM").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(p.exists(), "REQUIRED TOOL MISSING: chromium at {} (apt-get install -y chromium)", p.display());
    p
}

/// The `node_modules` holding playwright-core (`GH_BROWSER_NODE_MODULES`, else `tests/browser/`).
pub fn node_modules() -> PathBuf {
    let p = std::env::var_os("GH_BROWSER_NODE_MODULES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("tests/browser/node_modules"));
    assert!(
        p.join("playwright-core").exists(),
        "REQUIRED TOOL MISSING: playwright-core in {} (cd tests/browser && npm ci)",
        p.display()
    );
    p
}

/// Runs the node script `tests/browser/{script}` against `srv` (mail read from `sink`), with
/// this run's screenshots in `test-artifacts/screenshots/{shots}/`, and returns the JSON of its
/// `RESULT {json}` line. A failing script fails the test with its output and the server log.
pub fn run_browser(script: &str, srv: &Server, sink: &SmtpSink, shots: &str, env: &[(&str, &str)]) -> Value {
    let dir = workspace().join("test-artifacts/screenshots").join(shots);
    // Only this run's screenshots (numbered in page order).
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cmd = Command::new("node");
    cmd.arg(workspace().join("tests/browser").join(script))
        .env("GH_BASE_URL", &srv.base)
        .env("GH_MAIL_FILE", &sink.out)
        .env("GH_CHROMIUM", chromium())
        .env("GH_BROWSER_NODE_MODULES", node_modules())
        .env("GH_SCREENSHOTS", &dir);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("REQUIRED TOOL MISSING: node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(out.status.success(), "{script} failed ({}):\n{stdout}\n{stderr}\nserver log:\n{}", out.status, srv.log());
    let line = stdout.lines().find_map(|l| l.strip_prefix("RESULT ")).expect("a RESULT line");
    serde_json::from_str(line).unwrap()
}
