//! Devices: what a session is bound to, and how a device is named in the device list.
//!
//! A session is bound to the device it was created on: a random device id (browser cookie, or
//! the `Gatehouse-Device` header for API clients) plus the *family* of the user agent. The
//! family ignores versions, so a browser update does not log the user out, but a cookie copied
//! into a different browser or operating system is refused (and audited) even when the device
//! cookie was copied too.

/// The parts of a `User-Agent` that identify a kind of client, without versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UaFamily {
    /// Browser or client library, e.g. `Chrome`, `Firefox`, `python-requests`.
    pub client: String,
    /// Operating system, e.g. `Linux`, `Windows`, `macOS`, `Android`, `iOS`, or `Other`.
    pub os: String,
}

/// The largest `User-Agent` value considered; longer values are cut before parsing.
pub const MAX_UA_BYTES: usize = 512;

impl UaFamily {
    /// Classifies a `User-Agent` header value (absent → `Unknown` on `Other`).
    pub fn parse(ua: Option<&str>) -> Self {
        let ua = ua.unwrap_or("");
        let ua = match ua.char_indices().nth(MAX_UA_BYTES) {
            Some((i, _)) => &ua[..i],
            None => ua,
        };
        let os = if ua.contains("Android") {
            "Android"
        } else if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iOS") {
            "iOS"
        } else if ua.contains("Windows") {
            "Windows"
        } else if ua.contains("Mac OS X") || ua.contains("Macintosh") {
            "macOS"
        } else if ua.contains("CrOS") {
            "ChromeOS"
        } else if ua.contains("Linux") || ua.contains("X11") {
            "Linux"
        } else {
            "Other"
        };
        // Order matters: Edge and Opera also say "Chrome", Chrome also says "Safari".
        let browsers = [
            ("Edg/", "Edge"),
            ("OPR/", "Opera"),
            ("Firefox/", "Firefox"),
            ("HeadlessChrome/", "Chrome"),
            ("Chromium/", "Chrome"),
            ("Chrome/", "Chrome"),
            ("Safari/", "Safari"),
        ];
        let client =
            browsers.iter().find(|(needle, _)| ua.contains(needle)).map(|(_, name)| (*name).to_owned()).unwrap_or_else(
                || {
                    // A library: the product token before the first '/', e.g. "python-requests/2.34".
                    let product = ua.split(['/', ' ']).next().unwrap_or("").trim();
                    let clean: String = product
                        .chars()
                        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                        .take(40)
                        .collect();
                    if clean.is_empty() { "Unknown".to_owned() } else { clean }
                },
            );
        Self { client, os: os.to_owned() }
    }

    /// `client/os`, the form stored with a session and compared on every request.
    pub fn key(&self) -> String {
        format!("{}/{}", self.client, self.os)
    }

    /// A human name for the device list, e.g. "Chrome on Linux".
    pub fn display_name(&self) -> String {
        format!("{} on {}", self.client, self.os)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_ignore_versions() {
        let a = UaFamily::parse(Some(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36",
        ));
        let b = UaFamily::parse(Some(
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/157.0.1.2 Safari/537.36",
        ));
        assert_eq!(a, b);
        assert_eq!(a.key(), "Chrome/Linux");
        assert_eq!(a.display_name(), "Chrome on Linux");
    }

    #[test]
    fn distinguishes_browsers_and_libraries() {
        let cases = [
            (
                "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36 Edg/120.0",
                "Edge/Windows",
            ),
            (
                "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_1) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
                "Safari/macOS",
            ),
            ("Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0", "Firefox/Linux"),
            (
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/156.0 Safari/537.36",
                "Chrome/Linux",
            ),
            ("python-requests/2.34.2", "python-requests/Other"),
            ("curl/8.5.0", "curl/Other"),
        ];
        for (ua, want) in cases {
            assert_eq!(UaFamily::parse(Some(ua)).key(), want, "{ua}");
        }
        assert_eq!(UaFamily::parse(None).key(), "Unknown/Other");
        assert_eq!(UaFamily::parse(Some("\u{0}\n/evil")).key(), "Unknown/Other");
    }
}
