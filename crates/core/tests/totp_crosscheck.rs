//! Cross-checks gatehouse's TOTP against two independent implementations that authenticator
//! users actually meet: `oathtool` (OATH Toolkit, C) and `pyotp` (Python).
//!
//! Covered: every RFC 6238 Appendix B row (SHA-1/256/512 with their 20/32/64-byte seeds,
//! 8 digits, including T = 20000000000), a fresh random 160-bit seed at fixed instants (6 and
//! 8 digits, step edges, 2038 and beyond), our verification window fed with oathtool's codes
//! for neighbouring steps, and `otpauth://` URIs in both directions (ours parsed by
//! `pyotp.parse_uri`, pyotp's parsed by us).
//!
//! Both tools are **required**: a missing tool fails the test with the command that installs
//! it; nothing is skipped silently.
//! * `apt-get install -y oathtool`
//! * `python3 -m venv .venv && .venv/bin/pip install pyotp` at the workspace root, or point
//!   `GATEHOUSE_PYTHON` at a Python that can `import pyotp`.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use gatehouse_core::clock::Timestamp;
use gatehouse_core::mfa::{
    Algorithm, Digits, OtpAuthUri, TotpCheck, TotpParams, TotpSecret, base32, code_at, step_at, verify,
};
use gatehouse_core::rng::OsRng;
use gatehouse_core::secret::SecretBytes;
use serde_json::{Value, json};

const INSTALL_OATHTOOL: &str = "install it with `apt-get install -y oathtool`";
const INSTALL_PYOTP: &str = "create the venv with `python3 -m venv .venv && .venv/bin/pip install pyotp` in the \
                             workspace root, or set GATEHOUSE_PYTHON to a python that can `import pyotp`";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..").join("..")
}

fn python() -> PathBuf {
    std::env::var_os("GATEHOUSE_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join(".venv").join("bin").join("python"))
}

/// Runs `cmd` with `stdin`, failing loudly (naming the tool and how to install it) if it
/// cannot be started or exits non-zero. Returns trimmed stdout.
fn run(cmd: &mut Command, stdin: &str, tool: &str, install: &str) -> String {
    let child = cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn();
    assert!(
        child.is_ok(),
        "REQUIRED TOOL MISSING: {tool} could not be started ({:?}); {install}",
        child.as_ref().err()
    );
    let Ok(mut child) = child else { unreachable!() };
    if let Some(mut input) = child.stdin.take() {
        assert!(input.write_all(stdin.as_bytes()).is_ok(), "{tool}: cannot write stdin");
    }
    let out = child.wait_with_output();
    let Ok(out) = out else { unreachable!("{tool}: {:?}", out.err()) };
    assert!(
        out.status.success(),
        "{tool} failed ({}): {}\n(if the tool is missing or broken: {install})",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `oathtool`'s code for `secret` at Unix time `t`, passing the time as
/// `--now "YYYY-MM-DD HH:MM:SS UTC"` so the result is deterministic.
fn oathtool(secret_b32: &str, algorithm: Algorithm, digits: Digits, period: u32, t: i64) -> String {
    let now = Timestamp::from_secs(t).to_rfc3339().replace('T', " ").replace(".000Z", " UTC");
    let mode = match algorithm {
        Algorithm::Sha1 => "--totp=sha1",
        Algorithm::Sha256 => "--totp=sha256",
        Algorithm::Sha512 => "--totp=sha512",
    };
    run(
        Command::new("oathtool").args([
            mode,
            "-b",
            "-d",
            &digits.count().to_string(),
            "-s",
            &period.to_string(),
            "--now",
            &now,
            secret_b32,
        ]),
        "",
        "oathtool",
        INSTALL_OATHTOOL,
    )
}

const PYOTP_SCRIPT: &str = r#"
import hashlib, json, sys
import importlib.metadata
import pyotp
req = json.load(sys.stdin)
out = {"version": importlib.metadata.version("pyotp"), "codes": [], "uris": [], "provisioned": []}
for c in req["codes"]:
    totp = pyotp.TOTP(c["secret"], digits=c["digits"], digest=getattr(hashlib, c["digest"]), interval=c["period"])
    out["codes"].append(totp.at(c["t"]))
for u in req["uris"]:
    o = pyotp.parse_uri(u["uri"])
    out["uris"].append({"code": o.at(u["t"]), "issuer": o.issuer, "name": o.name, "digits": o.digits,
                        "interval": o.interval, "digest": o.digest().name})
for p in req["provision"]:
    out["provisioned"].append(pyotp.TOTP(p["secret"], digits=p["digits"], digest=getattr(hashlib, p["digest"]),
                              interval=p["period"]).provisioning_uri(name=p["name"], issuer_name=p["issuer"]))
json.dump(out, sys.stdout)
"#;

/// Runs one batch through pyotp (one interpreter start for the whole test).
fn pyotp(request: &Value) -> Value {
    let py = python();
    assert!(
        py.exists(),
        "REQUIRED TOOL MISSING: python with pyotp not found at {} (GATEHOUSE_PYTHON or <workspace>/.venv/bin/python); \
         {INSTALL_PYOTP}",
        py.display()
    );
    let probe = Command::new(&py).args(["-c", "import pyotp"]).output();
    let importable = probe.as_ref().is_ok_and(|o| o.status.success());
    assert!(
        importable,
        "REQUIRED TOOL MISSING: `import pyotp` fails with {}: {}; {INSTALL_PYOTP}",
        py.display(),
        probe.as_ref().map(|o| String::from_utf8_lossy(&o.stderr).into_owned()).unwrap_or_default()
    );
    let stdout = run(Command::new(&py).args(["-c", PYOTP_SCRIPT]), &request.to_string(), "pyotp", INSTALL_PYOTP);
    let Ok(v) = serde_json::from_str(&stdout) else { unreachable!("pyotp printed non-JSON: {stdout}") };
    v
}

fn digest_name(a: Algorithm) -> &'static str {
    match a {
        Algorithm::Sha1 => "sha1",
        Algorithm::Sha256 => "sha256",
        Algorithm::Sha512 => "sha512",
    }
}

fn secret(bytes: &[u8]) -> TotpSecret {
    let Ok(s) = TotpSecret::from_bytes(SecretBytes::new(bytes.to_vec())) else { unreachable!() };
    s
}

fn params(a: Algorithm, d: Digits, period: u32) -> TotpParams {
    let Ok(p) = TotpParams::new(a, d, period) else { unreachable!() };
    p
}

/// One comparison: what we compute, and the request pyotp gets for the same case.
struct Case {
    label: String,
    b32: String,
    algorithm: Algorithm,
    digits: Digits,
    period: u32,
    t: i64,
    ours: String,
}

impl Case {
    fn new(label: String, s: &TotpSecret, p: TotpParams, t: i64) -> Self {
        Case {
            label,
            b32: s.to_base32().expose().to_owned(),
            algorithm: p.algorithm(),
            digits: p.digits(),
            period: p.period(),
            t,
            ours: code_at(s, &p, Timestamp::from_secs(t)),
        }
    }

    fn pyotp_request(&self) -> Value {
        json!({"secret": self.b32, "digits": self.digits.count(), "digest": digest_name(self.algorithm),
               "period": self.period, "t": self.t})
    }
}

fn rfc6238_cases() -> Vec<Case> {
    let path = workspace().join("testdata/rfc/rfc6238_totp.json");
    let Ok(text) = std::fs::read_to_string(&path) else { unreachable!("missing {}", path.display()) };
    let Ok(d) = serde_json::from_str::<Value>(&text) else { unreachable!("bad JSON in {}", path.display()) };
    let vectors = d["vectors"].as_array().cloned().unwrap_or_default();
    assert_eq!(vectors.len(), 18);
    vectors
        .iter()
        .map(|v| {
            let mode = v["mode"].as_str().unwrap_or_default();
            let Ok(alg) = Algorithm::parse(mode) else { unreachable!("{mode}") };
            let seed = d["seeds_ascii"][mode].as_str().unwrap_or_default().as_bytes();
            let t = v["unix_time"].as_i64().unwrap_or(-1);
            let case = Case::new(format!("RFC 6238 {mode} t={t}"), &secret(seed), params(alg, Digits::Eight, 30), t);
            // Our own answer is the RFC's, before the tools are asked.
            assert_eq!(case.ours, v["totp"].as_str().unwrap_or_default(), "{}", case.label);
            case
        })
        .collect()
}

/// Fixed instants for the random seed: step edges, the 32-bit rollover, far future.
const INSTANTS: [i64; 9] =
    [0, 29, 30, 1_111_111_109, 1_699_999_999, 1_700_000_010, 2_147_483_648, 4_102_444_800, 20_000_000_000];

#[test]
fn totp_codes_agree_with_oathtool_and_pyotp() {
    let mut cases = rfc6238_cases();
    let fresh = TotpSecret::generate(&OsRng);
    assert_eq!(fresh.expose().expose().len(), 20);
    for t in INSTANTS {
        for digits in [Digits::Six, Digits::Eight] {
            let p = params(Algorithm::Sha1, digits, 30);
            cases.push(Case::new(format!("random seed, {} digits, t={t}", digits.count()), &fresh, p, t));
        }
    }
    // A non-default period and algorithm through both tools.
    let p = params(Algorithm::Sha256, Digits::Six, 60);
    cases.push(Case::new("random seed, SHA256/60s, t=1700000000".into(), &fresh, p, 1_700_000_000));

    let request = json!({
        "codes": cases.iter().map(Case::pyotp_request).collect::<Vec<_>>(),
        "uris": [],
        "provision": [],
    });
    let answer = pyotp(&request);
    let py_codes = answer["codes"].as_array().cloned().unwrap_or_default();
    assert_eq!(py_codes.len(), cases.len(), "pyotp {} answered {answer}", answer["version"]);

    for (case, py) in cases.iter().zip(&py_codes) {
        let oath = oathtool(&case.b32, case.algorithm, case.digits, case.period, case.t);
        assert_eq!(oath, case.ours, "oathtool disagrees: {}", case.label);
        assert_eq!(py.as_str(), Some(case.ours.as_str()), "pyotp disagrees: {}", case.label);
    }
}

#[test]
fn window_accepts_oathtools_neighbouring_steps_only() {
    let s = TotpSecret::generate(&OsRng);
    let b32 = s.to_base32();
    let p = TotpParams::ENROLMENT;
    let t = 1_700_000_015; // middle of a step
    let now = Timestamp::from_secs(t);
    let Some(step) = step_at(&p, now) else { unreachable!() };
    for (offset, expect_ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
        let code = oathtool(b32.expose(), Algorithm::Sha1, Digits::Six, 30, t + 30 * offset);
        let got = verify(&s, &p, &code, now, None);
        if expect_ok {
            let want = step.checked_add_signed(offset).unwrap_or_default();
            assert_eq!(got, TotpCheck::Accepted { step: want }, "offset {offset}");
            // Once that step is used, the same oathtool code is a replay.
            assert_eq!(verify(&s, &p, &code, now, Some(want)), TotpCheck::Replayed { step: want });
        } else {
            // A 1-in-10^6 coincidence with a neighbouring code would make this flaky only in theory.
            assert_eq!(got, TotpCheck::Rejected, "offset {offset} must be outside the window");
        }
    }
}

#[test]
fn otpauth_uris_interoperate_with_pyotp() {
    let fresh = TotpSecret::generate(&OsRng);
    let enrol = OtpAuthUri::new("Gatehouse Exchange", "alice+test@example.com", fresh.clone(), TotpParams::ENROLMENT);
    let Ok(enrol) = enrol else { unreachable!() };
    let sha512 = params(Algorithm::Sha512, Digits::Eight, 60);
    let Ok(other) = OtpAuthUri::new("Gatehouse", "bob", fresh.clone(), sha512) else { unreachable!() };
    let t = 1_700_000_000;
    let now = Timestamp::from_secs(t);
    let ours = [&enrol, &other];

    let request = json!({
        "codes": [],
        "uris": ours.iter().map(|u| json!({"uri": u.to_uri().expose(), "t": t})).collect::<Vec<_>>(),
        "provision": [
            {"secret": fresh.to_base32().expose(), "name": "carol@example.com", "issuer": "Gatehouse Exchange",
             "digits": 6, "digest": "sha1", "period": 30},
            {"secret": fresh.to_base32().expose(), "name": "dave", "issuer": "Gatehouse",
             "digits": 8, "digest": "sha256", "period": 60},
        ],
    });
    let answer = pyotp(&request);

    // Ours, parsed by pyotp.parse_uri.
    let parsed = answer["uris"].as_array().cloned().unwrap_or_default();
    assert_eq!(parsed.len(), 2, "{answer}");
    for (u, py) in ours.iter().zip(&parsed) {
        let p = u.params();
        assert_eq!(py["code"].as_str(), Some(code_at(u.secret(), p, now).as_str()), "{py}");
        assert_eq!(py["issuer"].as_str(), u.issuer(), "{py}");
        assert_eq!(py["name"].as_str(), Some(u.account()), "{py}");
        assert_eq!(py["digits"].as_u64(), Some(u64::from(p.digits().count())), "{py}");
        assert_eq!(py["interval"].as_u64(), Some(u64::from(p.period())), "{py}");
        assert_eq!(py["digest"].as_str(), Some(digest_name(p.algorithm())), "{py}");
    }

    // pyotp's provisioning URIs, parsed by us.
    let provisioned = answer["provisioned"].as_array().cloned().unwrap_or_default();
    assert_eq!(provisioned.len(), 2, "{answer}");
    let expected = [
        ("Gatehouse Exchange", "carol@example.com", TotpParams::ENROLMENT),
        ("Gatehouse", "dave", params(Algorithm::Sha256, Digits::Eight, 60)),
    ];
    for (uri, (issuer, account, p)) in provisioned.iter().zip(expected) {
        let uri = uri.as_str().unwrap_or_default();
        let parsed = OtpAuthUri::parse(uri);
        assert!(parsed.is_ok(), "we refused pyotp's URI {uri}: {:?}", parsed.as_ref().err());
        let Ok(parsed) = parsed else { unreachable!() };
        assert_eq!((parsed.issuer(), parsed.account(), parsed.params()), (Some(issuer), account, &p), "{uri}");
        assert_eq!(parsed.secret().expose().expose(), fresh.expose().expose());
        assert_eq!(code_at(parsed.secret(), parsed.params(), now), code_at(&fresh, &p, now));
    }

    // The seed text is the same base32 both tools use.
    assert_eq!(base32::encode(fresh.expose().expose()), fresh.to_base32().expose());
}
