//! The real browser the page and WebAuthn tests drive: Debian chromium and playwright-core
//! (installed by `scripts/test`). A missing tool fails the test loudly, never skips it.

use std::path::PathBuf;

use super::workspace;

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
