//! Envelope encryption of secrets the server must read back (R88): HMAC API secrets, TOTP
//! seeds, and the server's own long-lived keys.
//!
//! Each value gets its own random 256-bit data key (DEK). The value is sealed with AES-256-GCM
//! under the DEK with caller-supplied associated data naming the row it belongs to
//! (table, row id, owner, version), so a ciphertext copied into another row fails to open. The
//! DEK is itself sealed under a master key (KEK) that never enters the database. Sealed blobs
//! record the KEK id, so master keys can rotate: [`Keyring::rewrap`] moves a blob to the
//! current KEK without touching the sealed value.
//!
//! Blob layout (version 1):
//! `"GHE1" | kek_id (u32 BE) | wrap_nonce (12) | sealed DEK (32 + 16) | data_nonce (12) | sealed value (n + 16)`.
//! Nonces are 96-bit random values; a DEK seals exactly one value, so nonce reuse under one
//! key cannot happen.

use std::collections::BTreeMap;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::rng::SecureRng;
use crate::secret::SecretBytes;

const MAGIC: &[u8; 4] = b"GHE1";
const NONCE: usize = 12;
const TAG: usize = 16;
const DEK: usize = 32;
const HEADER: usize = 4 + 4 + NONCE + DEK + TAG + NONCE;

/// Errors from sealing and opening.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// The blob names a master key this keyring does not hold.
    #[error("master key {0} is not loaded")]
    UnknownKey(u32),
    /// Wrong associated data, a tampered blob, or a blob that is not ours.
    #[error("sealed value failed authentication")]
    Corrupt,
    /// The keyring text could not be parsed.
    #[error("invalid master key ring: {0}")]
    Keyring(&'static str),
}

/// Associated data binding a sealed value to its place: `(table, row id, owner, version)`.
#[derive(Debug, Clone)]
pub struct Aad(Vec<u8>);

impl Aad {
    /// Builds the AAD from its parts; parts are length-prefixed so `("ab","c")` ≠ `("a","bc")`.
    pub fn new(parts: &[&str]) -> Self {
        let mut out = Vec::new();
        for p in parts {
            out.extend_from_slice(&(p.len() as u32).to_be_bytes());
            out.extend_from_slice(p.as_bytes());
        }
        Self(out)
    }
}

/// The master keys (KEKs) known to this process, by id; the highest id seals new values.
#[derive(Clone)]
pub struct Keyring {
    keys: BTreeMap<u32, Zeroizing<[u8; 32]>>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring").field("key_ids", &self.keys.keys().collect::<Vec<_>>()).finish()
    }
}

impl Keyring {
    /// A keyring with one freshly generated key, id 1 (embedded mode, first start).
    pub fn generate(rng: &dyn SecureRng) -> Self {
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill(k.as_mut());
        Self { keys: BTreeMap::from([(1, k)]) }
    }

    /// Parses keyring text: one `<id>:<base64url 32 bytes>` entry per line (or separated by
    /// commas, for environment variables); `#` starts a comment.
    pub fn parse(text: &str) -> Result<Self, EnvelopeError> {
        let mut keys = BTreeMap::new();
        for entry in text.lines().flat_map(|l| l.split(',')) {
            let entry = entry.split('#').next().unwrap_or("").trim();
            if entry.is_empty() {
                continue;
            }
            let (id, b64) = entry.split_once(':').ok_or(EnvelopeError::Keyring("expected <id>:<key>"))?;
            let id: u32 = id.trim().parse().map_err(|_| EnvelopeError::Keyring("key id must be a number"))?;
            let raw = Zeroizing::new(
                URL_SAFE_NO_PAD.decode(b64.trim()).map_err(|_| EnvelopeError::Keyring("key must be base64url"))?,
            );
            let key: [u8; 32] =
                raw.as_slice().try_into().map_err(|_| EnvelopeError::Keyring("key must be 32 bytes"))?;
            if keys.insert(id, Zeroizing::new(key)).is_some() {
                return Err(EnvelopeError::Keyring("duplicate key id"));
            }
        }
        if keys.is_empty() {
            return Err(EnvelopeError::Keyring("no keys"));
        }
        Ok(Self { keys })
    }

    /// Keyring text for [`Keyring::parse`]. Only for writing the key file; never log it.
    pub fn to_text(&self) -> SecretBytes {
        let mut s = String::from("# gatehouse master keys: <id>:<base64url key>. Keep this file secret (mode 0600).\n");
        for (id, k) in &self.keys {
            s.push_str(&format!("{id}:{}\n", URL_SAFE_NO_PAD.encode(k.as_ref())));
        }
        SecretBytes::new(s.into_bytes())
    }

    /// Adds a new key with the next id; it becomes the sealing key. Returns its id.
    pub fn add_generated(&mut self, rng: &dyn SecureRng) -> u32 {
        let id = self.current_id() + 1;
        let mut k = Zeroizing::new([0u8; 32]);
        rng.fill(k.as_mut());
        self.keys.insert(id, k);
        id
    }

    /// The id of the key that seals new values.
    pub fn current_id(&self) -> u32 {
        self.keys.keys().next_back().copied().unwrap_or(0)
    }

    fn kek(&self, id: u32) -> Result<Aes256Gcm, EnvelopeError> {
        let k = self.keys.get(&id).ok_or(EnvelopeError::UnknownKey(id))?;
        Aes256Gcm::new_from_slice(k.as_ref()).map_err(|_| EnvelopeError::Corrupt)
    }

    /// Seals `plaintext` for the place described by `aad`.
    pub fn seal(&self, plaintext: &[u8], aad: &Aad, rng: &dyn SecureRng) -> Result<Vec<u8>, EnvelopeError> {
        let kek_id = self.current_id();
        let kek = self.kek(kek_id)?;
        let mut dek = Zeroizing::new([0u8; DEK]);
        rng.fill(dek.as_mut());
        let wrap_nonce: [u8; NONCE] = crate::rng::random_bytes(rng);
        let data_nonce: [u8; NONCE] = crate::rng::random_bytes(rng);
        let wrapped = kek
            .encrypt(&Nonce::from(wrap_nonce), Payload { msg: dek.as_ref(), aad: &kek_id.to_be_bytes() })
            .map_err(|_| EnvelopeError::Corrupt)?;
        let data_cipher = Aes256Gcm::new_from_slice(dek.as_ref()).map_err(|_| EnvelopeError::Corrupt)?;
        let sealed = data_cipher
            .encrypt(&Nonce::from(data_nonce), Payload { msg: plaintext, aad: &aad.0 })
            .map_err(|_| EnvelopeError::Corrupt)?;
        let mut out = Vec::with_capacity(HEADER + sealed.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&kek_id.to_be_bytes());
        out.extend_from_slice(&wrap_nonce);
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&data_nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unwrap_dek(&self, blob: &[u8]) -> Result<(u32, Zeroizing<Vec<u8>>), EnvelopeError> {
        if blob.len() < HEADER + TAG || &blob[..4] != MAGIC {
            return Err(EnvelopeError::Corrupt);
        }
        let kek_id = u32::from_be_bytes([blob[4], blob[5], blob[6], blob[7]]);
        let kek = self.kek(kek_id)?;
        let mut wrap_nonce = [0u8; NONCE];
        wrap_nonce.copy_from_slice(&blob[8..8 + NONCE]);
        let wrapped = &blob[8 + NONCE..8 + NONCE + DEK + TAG];
        let dek = kek
            .decrypt(&Nonce::from(wrap_nonce), Payload { msg: wrapped, aad: &kek_id.to_be_bytes() })
            .map_err(|_| EnvelopeError::Corrupt)?;
        Ok((kek_id, Zeroizing::new(dek)))
    }

    /// Opens a blob sealed by [`seal`](Self::seal) with the same `aad`.
    pub fn open(&self, blob: &[u8], aad: &Aad) -> Result<SecretBytes, EnvelopeError> {
        let (_, dek) = self.unwrap_dek(blob)?;
        let mut data_nonce = [0u8; NONCE];
        data_nonce.copy_from_slice(&blob[HEADER - NONCE..HEADER]);
        let cipher = Aes256Gcm::new_from_slice(&dek).map_err(|_| EnvelopeError::Corrupt)?;
        cipher
            .decrypt(&Nonce::from(data_nonce), Payload { msg: &blob[HEADER..], aad: &aad.0 })
            .map(SecretBytes::new)
            .map_err(|_| EnvelopeError::Corrupt)
    }

    /// The KEK id a blob is sealed under, if it is one of ours.
    pub fn key_id_of(blob: &[u8]) -> Option<u32> {
        (blob.len() >= 8 && &blob[..4] == MAGIC).then(|| u32::from_be_bytes([blob[4], blob[5], blob[6], blob[7]]))
    }

    /// Re-seals the blob's data key under the current KEK (rotation). The sealed value and its
    /// associated data are untouched, so this needs no knowledge of the row.
    pub fn rewrap(&self, blob: &[u8], rng: &dyn SecureRng) -> Result<Vec<u8>, EnvelopeError> {
        let (_, dek) = self.unwrap_dek(blob)?;
        let kek_id = self.current_id();
        let kek = self.kek(kek_id)?;
        let wrap_nonce: [u8; NONCE] = crate::rng::random_bytes(rng);
        let wrapped = kek
            .encrypt(&Nonce::from(wrap_nonce), Payload { msg: dek.as_slice(), aad: &kek_id.to_be_bytes() })
            .map_err(|_| EnvelopeError::Corrupt)?;
        let mut out = Vec::with_capacity(blob.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&kek_id.to_be_bytes());
        out.extend_from_slice(&wrap_nonce);
        out.extend_from_slice(&wrapped);
        out.extend_from_slice(&blob[HEADER - NONCE..]);
        Ok(out)
    }

    /// A 256-bit key for `purpose`, derived from master key `id` with HMAC-SHA-256. Used only
    /// to bootstrap; long-lived server keys are generated and stored sealed instead, so that
    /// they survive master-key rotation.
    pub fn derive(&self, id: u32, purpose: &str) -> Result<SecretBytes, EnvelopeError> {
        use hmac::{Hmac, KeyInit as _, Mac};
        let k = self.keys.get(&id).ok_or(EnvelopeError::UnknownKey(id))?;
        let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(k.as_ref()).map_err(|_| EnvelopeError::Corrupt)?;
        mac.update(purpose.as_bytes());
        Ok(SecretBytes::new(mac.finalize().into_bytes().to_vec()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    fn aad(row: &str) -> Aad {
        Aad::new(&["api_key_secret", row, "user-1", "v1"])
    }

    #[test]
    fn seal_open_round_trip_and_row_binding() {
        let rng = SeededRng::new(1);
        let ring = Keyring::generate(&rng);
        let blob = ring.seal(b"hmac-secret-canary", &aad("key-a"), &rng);
        let blob = blob.unwrap_or_default();
        assert_eq!(ring.open(&blob, &aad("key-a")).map(|s| s.expose().to_vec()), Ok(b"hmac-secret-canary".to_vec()));
        // Moved to another row: refused (R88).
        assert_eq!(ring.open(&blob, &aad("key-b")).err(), Some(EnvelopeError::Corrupt));
        // The plaintext does not appear in the blob.
        assert!(!blob.windows(6).any(|w| w == b"canary"));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let rng = SeededRng::new(2);
        let ring = Keyring::generate(&rng);
        let Ok(blob) = ring.seal(b"seed", &aad("r"), &rng) else { unreachable!() };
        for i in 0..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 0x01;
            assert!(ring.open(&bad, &aad("r")).is_err(), "byte {i}");
        }
        assert!(ring.open(&blob[..blob.len() - 1], &aad("r")).is_err());
    }

    #[test]
    fn rotation_rewraps_and_old_blobs_still_open() {
        let rng = SeededRng::new(3);
        let mut ring = Keyring::generate(&rng);
        let Ok(old) = ring.seal(b"totp-seed", &aad("f1"), &rng) else { unreachable!() };
        assert_eq!(ring.add_generated(&rng), 2);
        assert_eq!(Keyring::key_id_of(&old), Some(1));
        assert!(ring.open(&old, &aad("f1")).is_ok());
        let Ok(new) = ring.rewrap(&old, &rng) else { unreachable!() };
        assert_eq!(Keyring::key_id_of(&new), Some(2));
        assert_eq!(ring.open(&new, &aad("f1")).map(|s| s.expose().to_vec()), Ok(b"totp-seed".to_vec()));
        // A keyring without key 1 can no longer open the old blob but can open the new one.
        let Ok(text) = String::from_utf8(ring.to_text().expose().to_vec()) else { unreachable!() };
        let only2: String = text.lines().filter(|l| l.starts_with("2:")).collect();
        let Ok(ring2) = Keyring::parse(&only2) else { unreachable!() };
        assert_eq!(ring2.open(&old, &aad("f1")).err(), Some(EnvelopeError::UnknownKey(1)));
        assert!(ring2.open(&new, &aad("f1")).is_ok());
    }

    #[test]
    fn keyring_text_round_trips_and_rejects_garbage() {
        let rng = SeededRng::new(4);
        let ring = Keyring::generate(&rng);
        let Ok(text) = String::from_utf8(ring.to_text().expose().to_vec()) else { unreachable!() };
        assert!(Keyring::parse(&text).is_ok());
        assert!(!format!("{ring:?}").contains(text.lines().nth(1).unwrap_or("x")));
        for bad in [
            "",
            "1:abc",
            "x:AAAA",
            "1",
            "1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA,1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        ] {
            assert!(Keyring::parse(bad).is_err(), "{bad}");
        }
    }

    /// Wycheproof AES-GCM vectors (256-bit keys, 96-bit IVs, 128-bit tags) against the AEAD we
    /// use. The file's hash is pinned so nobody swaps the data silently.
    #[test]
    fn wycheproof_aes_gcm() {
        let raw = include_str!("../../../../testdata/wycheproof/testvectors_v1/aes_gcm_test.json");
        let v: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
        let mut checked = 0;
        for g in v["testGroups"].as_array().into_iter().flatten() {
            if g["keySize"] != 256 || g["ivSize"] != 96 || g["tagSize"] != 128 {
                continue;
            }
            for t in g["tests"].as_array().into_iter().flatten() {
                let h = |k: &str| hex::decode(t[k].as_str().unwrap_or("")).unwrap_or_default();
                let Ok(cipher) = Aes256Gcm::new_from_slice(&h("key")) else { unreachable!() };
                let nonce: [u8; 12] = h("iv").try_into().unwrap_or([0; 12]);
                let mut ct = h("ct");
                ct.extend_from_slice(&h("tag"));
                let aad = h("aad");
                let out = cipher.decrypt(&Nonce::from(nonce), Payload { msg: &ct, aad: &aad });
                let id = &t["tcId"];
                match t["result"].as_str() {
                    Some("valid") => assert_eq!(out.ok(), Some(h("msg")), "tcId {id}"),
                    Some("invalid") => assert!(out.is_err(), "tcId {id}"),
                    _ => {}
                }
                checked += 1;
            }
        }
        assert!(checked > 50, "only {checked} vectors applied");
    }
}
