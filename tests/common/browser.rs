//! The browser tests render pages in: Debian's Chromium, headless.

use std::process::Command;

/// Debian's Chromium, which scripts/test.sh installs (or `FACTORYPAL_TEST_CHROMIUM`).
pub fn chromium() -> String {
    let path = std::env::var("FACTORYPAL_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&path).arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "{path} --version failed: run the tests with scripts/test.sh (it installs Debian's \
         chromium), or set FACTORYPAL_TEST_CHROMIUM to a Chromium binary"
    );
    path
}
