//! GeoIP: country, autonomous system and coordinates of an address, and the distance
//! arithmetic behind "impossible travel".
//!
//! The engine never opens files or networks itself: it is handed a [`GeoLookup`] (an
//! `Arc<dyn GeoLookup>`, the axum way of injecting a service). [`MaxMindGeo`] reads databases
//! in the MaxMind DB format (GeoLite2/GeoIP2 City or Country, and ASN) through the `maxminddb`
//! crate, behind the default `geoip` cargo feature; tests build their own small database file
//! with a minimal MaxMind DB writer (`tests::mmdb`), so no third-party database ships in the
//! repository.
//!
//! Without GeoIP the ASN and country features and the impossible-travel signal are simply
//! absent (no evidence), never guessed.
//!
//! Spec followed: MaxMind DB File Format Specification 2.0 (search tree, data section types,
//! metadata); GeoLite2 record layout (`country.iso_code`, `location.latitude/longitude`,
//! `autonomous_system_number`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Mean Earth radius used by the haversine formula, in km.
pub const EARTH_RADIUS_KM: f64 = 6371.0;

/// A point on Earth, in degrees.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct GeoPoint {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lon: f64,
}

impl GeoPoint {
    /// Great-circle distance to `other` in km (haversine).
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        let (la1, la2) = (self.lat.to_radians(), other.lat.to_radians());
        let dla = la2 - la1;
        let dlo = (other.lon - self.lon).to_radians();
        let a = (dla / 2.0).sin().powi(2) + la1.cos() * la2.cos() * (dlo / 2.0).sin().powi(2);
        2.0 * EARTH_RADIUS_KM * a.sqrt().min(1.0).asin()
    }
}

/// What GeoIP knows about an address. Every part is optional: databases differ in coverage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GeoInfo {
    /// ISO 3166-1 alpha-2 country code.
    pub country: Option<String>,
    /// Autonomous system number.
    pub asn: Option<u32>,
    /// Approximate location (city or country centroid).
    pub location: Option<GeoPoint>,
}

/// A source of GeoIP answers.
pub trait GeoLookup: Send + Sync + std::fmt::Debug {
    /// What is known about `ip`; `None` when nothing is.
    fn lookup(&self, ip: IpAddr) -> Option<GeoInfo>;
}

/// Why a GeoIP database could not be used.
#[derive(Debug, thiserror::Error)]
pub enum GeoError {
    /// The file could not be read or is not a MaxMind DB.
    #[error("GeoIP database {path}: {reason}")]
    Database {
        /// The path given.
        path: String,
        /// What the reader said.
        reason: String,
    },
}

#[cfg(feature = "geoip")]
pub use maxmind::MaxMindGeo;

#[cfg(feature = "geoip")]
mod maxmind {
    use std::net::IpAddr;
    use std::path::Path;

    use serde::Deserialize;

    use super::{GeoError, GeoInfo, GeoLookup, GeoPoint};

    #[derive(Deserialize, Default)]
    struct Country {
        iso_code: Option<String>,
    }

    #[derive(Deserialize, Default)]
    struct Location {
        latitude: Option<f64>,
        longitude: Option<f64>,
    }

    /// The parts of a GeoLite2 City/Country or ASN record the engine reads.
    #[derive(Deserialize, Default)]
    struct Record {
        country: Option<Country>,
        location: Option<Location>,
        autonomous_system_number: Option<u32>,
    }

    /// GeoIP from MaxMind DB files: a City or Country database and, optionally, an ASN one
    /// (GeoLite2 ships them separately; a single file carrying both kinds of field also works).
    #[derive(Debug)]
    pub struct MaxMindGeo {
        place: maxminddb::Reader<Vec<u8>>,
        asn: Option<maxminddb::Reader<Vec<u8>>>,
    }

    fn open(path: &Path) -> Result<maxminddb::Reader<Vec<u8>>, GeoError> {
        maxminddb::Reader::open_readfile(path)
            .map_err(|e| GeoError::Database { path: path.display().to_string(), reason: e.to_string() })
    }

    impl MaxMindGeo {
        /// Opens the place database and, if given, the ASN database. Files are read into
        /// memory once; reload by building a new value.
        pub fn open(place: &Path, asn: Option<&Path>) -> Result<Self, GeoError> {
            Ok(Self { place: open(place)?, asn: asn.map(open).transpose()? })
        }

        fn record(reader: &maxminddb::Reader<Vec<u8>>, ip: IpAddr) -> Option<Record> {
            reader.lookup(ip).ok()?.decode::<Record>().ok().flatten()
        }
    }

    impl GeoLookup for MaxMindGeo {
        fn lookup(&self, ip: IpAddr) -> Option<GeoInfo> {
            let place = Self::record(&self.place, ip).unwrap_or_default();
            let asn_rec = self.asn.as_ref().and_then(|r| Self::record(r, ip));
            let location = place.location.and_then(|l| match (l.latitude, l.longitude) {
                (Some(lat), Some(lon)) => Some(GeoPoint { lat, lon }),
                _ => None,
            });
            let info = GeoInfo {
                country: place.country.and_then(|c| c.iso_code),
                asn: asn_rec.and_then(|r| r.autonomous_system_number).or(place.autonomous_system_number),
                location,
            };
            if info == GeoInfo::default() { None } else { Some(info) }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests fail loudly
pub(crate) mod tests {
    use super::*;

    #[test]
    fn haversine_matches_known_distances() {
        let seoul = GeoPoint { lat: 37.5665, lon: 126.9780 };
        let london = GeoPoint { lat: 51.5074, lon: -0.1278 };
        let d = seoul.distance_km(&london);
        assert!((d - 8_860.0).abs() < 60.0, "{d}");
        assert_eq!(seoul.distance_km(&seoul), 0.0);
    }

    /// A minimal MaxMind DB writer for tests: IPv6 tree (IPv4 under `::/96`), 24-bit records,
    /// data values limited to what GeoLite2 records use (maps, UTF-8 strings, doubles,
    /// unsigned integers).
    pub(crate) mod mmdb {
        use std::collections::BTreeMap;
        use std::net::IpAddr;

        /// A data-section value.
        pub(crate) enum Value {
            Map(Vec<(&'static str, Value)>),
            Str(String),
            F64(f64),
            U16(u16),
            U32(u32),
            U64(u64),
            Array(Vec<Value>),
        }

        fn control(out: &mut Vec<u8>, type_num: u8, size: usize) {
            let (size_bits, extra): (u8, Vec<u8>) = if size < 29 {
                (size as u8, vec![])
            } else if size < 29 + 256 {
                (29, vec![(size - 29) as u8])
            } else {
                let s = size - 285;
                (30, vec![(s >> 8) as u8, s as u8])
            };
            if type_num <= 7 {
                out.push((type_num << 5) | size_bits);
            } else {
                out.push(size_bits);
                out.push(type_num - 7);
            }
            out.extend(extra);
        }

        fn uint(out: &mut Vec<u8>, type_num: u8, v: u64) {
            let bytes = v.to_be_bytes();
            let skip = bytes.iter().take_while(|b| **b == 0).count();
            control(out, type_num, 8 - skip);
            out.extend(&bytes[skip..]);
        }

        pub(crate) fn encode(out: &mut Vec<u8>, v: &Value) {
            match v {
                Value::Str(s) => {
                    control(out, 2, s.len());
                    out.extend(s.as_bytes());
                }
                Value::F64(f) => {
                    control(out, 3, 8);
                    out.extend(f.to_be_bytes());
                }
                Value::U16(n) => uint(out, 5, u64::from(*n)),
                Value::U32(n) => uint(out, 6, u64::from(*n)),
                Value::U64(n) => uint(out, 9, *n),
                Value::Map(kv) => {
                    control(out, 7, kv.len());
                    for (k, v) in kv {
                        encode(out, &Value::Str((*k).to_owned()));
                        encode(out, v);
                    }
                }
                Value::Array(items) => {
                    control(out, 11, items.len());
                    for it in items {
                        encode(out, it);
                    }
                }
            }
        }

        #[derive(Default)]
        struct Node {
            child: [Option<Box<Node>>; 2],
            data: Option<usize>,
        }

        /// Builds a database from `(network, prefix length, record)` rows.
        pub(crate) fn build(rows: Vec<(IpAddr, u8, Value)>) -> Vec<u8> {
            let mut data = Vec::new();
            let mut root = Node::default();
            for (ip, len, rec) in rows {
                let offset = data.len();
                encode(&mut data, &rec);
                let (bits, depth): (u128, u8) = match ip {
                    IpAddr::V4(v4) => (u128::from(u32::from(v4)), 96 + len),
                    IpAddr::V6(v6) => (u128::from(v6), len),
                };
                let mut node = &mut root;
                for i in 0..depth {
                    let bit = ((bits >> (127 - i)) & 1) as usize;
                    node = node.child[bit].get_or_insert_with(Box::default);
                }
                node.data = Some(offset);
            }
            // Number internal nodes breadth-first; a node with data is a leaf record.
            let mut order: Vec<&Node> = vec![&root];
            let mut i = 0;
            while i < order.len() {
                let n = order[i];
                for c in n.child.iter().flatten() {
                    if c.data.is_none() {
                        order.push(c);
                    }
                }
                i += 1;
            }
            let index: BTreeMap<*const Node, usize> =
                order.iter().enumerate().map(|(i, n)| (*n as *const Node, i)).collect();
            let node_count = order.len();
            let mut tree = Vec::new();
            for n in &order {
                for c in &n.child {
                    let rec = match c {
                        None => node_count,
                        Some(c) => match c.data {
                            Some(off) => node_count + 16 + off,
                            None => index[&(&**c as *const Node)],
                        },
                    };
                    tree.extend(&(rec as u32).to_be_bytes()[1..]);
                }
            }
            let mut out = tree;
            out.extend([0u8; 16]);
            out.extend(data);
            out.extend(b"\xAB\xCD\xEFMaxMind.com");
            let meta = Value::Map(vec![
                ("binary_format_major_version", Value::U16(2)),
                ("binary_format_minor_version", Value::U16(0)),
                ("build_epoch", Value::U64(1_800_000_000)),
                ("database_type", Value::Str("Gatehouse-Test".into())),
                ("description", Value::Map(vec![("en", Value::Str("gatehouse test database".into()))])),
                ("ip_version", Value::U16(6)),
                ("languages", Value::Array(vec![Value::Str("en".into())])),
                ("node_count", Value::U32(node_count as u32)),
                ("record_size", Value::U16(24)),
            ]);
            encode(&mut out, &meta);
            out
        }
    }

    #[cfg(feature = "geoip")]
    #[test]
    fn maxmind_reader_reads_a_database_we_wrote() {
        use mmdb::Value;
        let city = |cc: &str, lat: f64, lon: f64| {
            Value::Map(vec![
                ("country", Value::Map(vec![("iso_code", Value::Str(cc.into()))])),
                ("location", Value::Map(vec![("latitude", Value::F64(lat)), ("longitude", Value::F64(lon))])),
            ])
        };
        let place = mmdb::build(vec![
            ("203.0.113.0".parse().unwrap(), 24, city("KR", 37.57, 126.98)),
            ("198.51.100.0".parse().unwrap(), 24, city("GB", 51.51, -0.13)),
            ("2001:db8:1::".parse().unwrap(), 48, city("DE", 52.52, 13.40)),
        ]);
        let asn = mmdb::build(vec![
            ("203.0.113.0".parse().unwrap(), 24, Value::Map(vec![("autonomous_system_number", Value::U32(4766))])),
            ("2001:db8::".parse().unwrap(), 32, Value::Map(vec![("autonomous_system_number", Value::U32(3320))])),
        ]);
        let dir = std::env::temp_dir().join(format!("gatehouse-geo-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (pp, ap) = (dir.join("city.mmdb"), dir.join("asn.mmdb"));
        std::fs::write(&pp, place).unwrap();
        std::fs::write(&ap, asn).unwrap();
        let geo = MaxMindGeo::open(&pp, Some(&ap)).unwrap();

        let kr = geo.lookup("203.0.113.9".parse().unwrap()).unwrap();
        assert_eq!(kr.country.as_deref(), Some("KR"));
        assert_eq!(kr.asn, Some(4766));
        assert!((kr.location.unwrap().lat - 37.57).abs() < 1e-9);
        let gb = geo.lookup("198.51.100.200".parse().unwrap()).unwrap();
        assert_eq!((gb.country.as_deref(), gb.asn), (Some("GB"), None));
        let de = geo.lookup("2001:db8:1:ffff::1".parse().unwrap()).unwrap();
        assert_eq!((de.country.as_deref(), de.asn), (Some("DE"), Some(3320)));
        assert_eq!(geo.lookup("192.0.2.1".parse().unwrap()), None);
        assert!(MaxMindGeo::open(&dir.join("missing.mmdb"), None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
