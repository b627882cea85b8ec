//! Test fixtures shared by the signing tests: the repository's third-party vectors, compiled
//! into the test binary so the tests read no files at run time.

use sha2::{Digest as _, Sha256};

/// Unwraps a `Result`/`Option` in a test, reporting the context on failure (the workspace
/// denies `unwrap`/`expect` everywhere, tests included).
macro_rules! must {
    ($e:expr) => {
        must!($e, "")
    };
    ($e:expr, $($ctx:tt)+) => {
        match $crate::signing::testdata::Must::into_option($e) {
            Some(v) => v,
            None => unreachable!("{} failed: {}", stringify!($e), format!($($ctx)+)),
        }
    };
}
pub(crate) use must;

/// Lets [`must!`] accept both `Option` and `Result`.
pub(crate) trait Must<T> {
    fn into_option(self) -> Option<T>;
}

impl<T> Must<T> for Option<T> {
    fn into_option(self) -> Option<T> {
        self
    }
}

impl<T, E: std::fmt::Debug> Must<T> for Result<T, E> {
    fn into_option(self) -> Option<T> {
        match self {
            Ok(v) => Some(v),
            Err(e) => {
                eprintln!("error: {e:?}");
                None
            }
        }
    }
}

macro_rules! testdata {
    ($rel:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/", $rel))
    };
}

pub(crate) const GOLDEN: &[u8] = testdata!("exchange/golden_vectors.json");
pub(crate) const CAPTURES: &[u8] = testdata!("exchange/captures.jsonl");
pub(crate) const RFC4231: &[u8] = testdata!("rfc/rfc4231_hmac_sha256.json");
pub(crate) const RFC8032: &[u8] = testdata!("rfc/rfc8032_ed25519.json");
pub(crate) const RFC9421: &[u8] = testdata!("rfc/rfc9421_http_signatures.json");
pub(crate) const WYCHEPROOF_SOURCE: &[u8] = testdata!("wycheproof/SOURCE.txt");
pub(crate) const WYCHEPROOF_HMAC_SHA256: &[u8] = testdata!("wycheproof/testvectors_v1/hmac_sha256_test.json");
pub(crate) const WYCHEPROOF_HMAC_SHA512: &[u8] = testdata!("wycheproof/testvectors_v1/hmac_sha512_test.json");
pub(crate) const WYCHEPROOF_ED25519: &[u8] = testdata!("wycheproof/testvectors_v1/ed25519_test.json");

/// The pinned instant of `golden_vectors.json` (its `timestamp` 1700000000000).
pub(crate) const GOLDEN_NOW_MS: i64 = 1_700_000_000_000;

/// Parses a JSON fixture.
pub(crate) fn json(bytes: &[u8]) -> serde_json::Value {
    must!(serde_json::from_slice(bytes))
}

/// A string field of a JSON object, or `""`.
pub(crate) fn str_of<'a>(v: &'a serde_json::Value, key: &str) -> &'a str {
    v.get(key).and_then(serde_json::Value::as_str).unwrap_or_default()
}

/// Asserts that a Wycheproof file is the one recorded in `SOURCE.txt`, so nobody swaps the
/// data silently (security-bar.md §4.3 harness tip 3).
pub(crate) fn assert_wycheproof_pinned(name: &str, bytes: &[u8]) {
    let source = String::from_utf8_lossy(WYCHEPROOF_SOURCE);
    let expected = source.lines().find_map(|l| l.strip_suffix(&format!("  testvectors_v1/{name}"))).map(str::to_owned);
    let actual = hex::encode(Sha256::digest(bytes));
    assert_eq!(expected.as_deref(), Some(actual.as_str()), "{name} does not match wycheproof/SOURCE.txt");
}

/// A captured request (`captures.jsonl`).
pub(crate) struct Capture {
    pub index: usize,
    pub ts_ms: i64,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

/// All captured requests, header names lower-cased as the server hands them over.
pub(crate) fn captures() -> Vec<Capture> {
    String::from_utf8_lossy(CAPTURES)
        .lines()
        .enumerate()
        .map(|(index, line)| {
            let v: serde_json::Value = must!(serde_json::from_str(line));
            let headers = v["headers"]
                .as_array()
                .map(|hs| {
                    hs.iter()
                        .map(|h| {
                            (
                                h[0].as_str().unwrap_or_default().to_ascii_lowercase(),
                                h[1].as_str().unwrap_or_default().as_bytes().to_vec(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            Capture {
                index,
                ts_ms: v["ts_ms"].as_i64().unwrap_or_default(),
                method: str_of(&v, "method").to_owned(),
                target: str_of(&v, "target").to_owned(),
                headers,
                body: str_of(&v, "body").as_bytes().to_vec(),
            }
        })
        .collect()
}

/// An owned request that can lend a [`super::RawRequest`].
#[derive(Clone, Debug)]
pub(crate) struct OwnedRequest {
    pub method: String,
    pub target: String,
    pub authority: String,
    pub headers: Vec<(String, Vec<u8>)>,
    pub body: Vec<u8>,
}

impl OwnedRequest {
    /// A request with no headers and no body.
    pub(crate) fn new(method: &str, target: &str) -> Self {
        Self {
            method: method.into(),
            target: target.into(),
            authority: "api.example.com".into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header (name lower-cased).
    pub(crate) fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.as_ref().to_vec()));
        self
    }

    /// Sets the body.
    pub(crate) fn body(mut self, body: impl AsRef<[u8]>) -> Self {
        self.body = body.as_ref().to_vec();
        self
    }

    /// Header slices in the shape [`super::RawRequest`] borrows.
    pub(crate) fn header_refs(&self) -> Vec<(&str, &[u8])> {
        self.headers.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect()
    }

    /// Replaces every header named `name`.
    pub(crate) fn set_header(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.headers.retain(|(n, _)| n != name);
        self.headers.push((name.to_owned(), value.as_ref().to_vec()));
    }
}

/// Borrows an [`OwnedRequest`] as a [`super::RawRequest`] named `$raw` (header slices need a
/// local to live in).
macro_rules! raw {
    ($owned:expr => $raw:ident) => {
        let __headers = $owned.header_refs();
        let $raw = $crate::signing::RawRequest {
            method: &$owned.method,
            target: &$owned.target,
            authority: &$owned.authority,
            headers: &__headers,
            body: &$owned.body,
        };
    };
}
pub(crate) use raw;

impl From<&Capture> for OwnedRequest {
    fn from(c: &Capture) -> Self {
        let authority = c
            .headers
            .iter()
            .find(|(n, _)| n == "host")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default();
        Self {
            method: c.method.clone(),
            target: c.target.clone(),
            authority,
            headers: c.headers.clone(),
            body: c.body.clone(),
        }
    }
}
