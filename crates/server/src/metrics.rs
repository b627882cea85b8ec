//! Prometheus metrics, hand-rolled (a handful of counters and one histogram family do not
//! justify an exporter dependency): requests and latency per route and status, gateway
//! decisions per dialect and outcome, replay-store and rate-limit results, hashing-pool and
//! outbox figures. Rendered at `/metrics` in the text exposition format. Labels are fixed
//! strings from the router and the code, never request data, so cardinality is bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Duration;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// Request counts of one route by (method, status).
type ByMethodStatus = BTreeMap<(&'static str, u16), u64>;

/// A counter's identity: its name and its label pairs.
type CounterKey = (&'static str, Vec<(&'static str, String)>);

/// The registry.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<String, ByMethodStatus>>,
    latency: Mutex<BTreeMap<String, Histogram>>,
    /// Few (labels are fixed strings), so a list searched without allocating beats a map
    /// whose lookup key would have to be built, with owned strings, on every increment.
    counters: Mutex<Vec<(CounterKey, u64)>>,
}

impl Metrics {
    /// Records one HTTP request.
    pub fn request(&self, route: &str, method: &'static str, status: u16, took: Duration) {
        // Look up by `&str` first so the hot path allocates nothing once a route is known.
        if let Ok(mut m) = self.requests.lock() {
            match m.get_mut(route) {
                Some(r) => *r.entry((method, status)).or_default() += 1,
                None => {
                    m.entry(route.to_owned()).or_default().insert((method, status), 1);
                }
            }
        }
        if let Ok(mut all) = self.latency.lock() {
            if !all.contains_key(route) {
                all.insert(route.to_owned(), Histogram::default());
            }
            let Some(h) = all.get_mut(route) else { return };
            let secs = took.as_secs_f64();
            for (i, b) in BUCKETS.iter().enumerate() {
                if secs <= *b {
                    h.counts[i] += 1;
                }
            }
            h.sum += secs;
            h.count += 1;
        }
    }

    /// Adds one to counter `name` with `labels`.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        if let Ok(mut c) = self.counters.lock() {
            let same = |(n, l): &CounterKey| {
                *n == name && l.len() == labels.len() && l.iter().zip(labels).all(|((a, b), (c, d))| a == c && b == d)
            };
            match c.iter_mut().find(|(k, _)| same(k)) {
                Some((_, n)) => *n += 1,
                None => c.push(((name, labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()), 1)),
            }
        }
    }

    /// The text exposition, with `extra` gauge/counter lines appended.
    pub fn render(&self, extra: &[(&str, &str, &str, f64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP gatehouse_http_requests_total HTTP requests by route template, method and status.\n");
        out.push_str("# TYPE gatehouse_http_requests_total counter\n");
        if let Ok(m) = self.requests.lock() {
            for (route, by) in m.iter() {
                for ((method, status), n) in by {
                    let _ = writeln!(
                        out,
                        "gatehouse_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                        escape(route)
                    );
                }
            }
        }
        out.push_str("# HELP gatehouse_http_request_duration_seconds Request latency by route template.\n");
        out.push_str("# TYPE gatehouse_http_request_duration_seconds histogram\n");
        if let Ok(h) = self.latency.lock() {
            for (route, hist) in h.iter() {
                let r = escape(route);
                for (i, b) in BUCKETS.iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "gatehouse_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"{b}\"}} {}",
                        hist.counts[i]
                    );
                }
                let _ = writeln!(
                    out,
                    "gatehouse_http_request_duration_seconds_bucket{{route=\"{r}\",le=\"+Inf\"}} {}",
                    hist.count
                );
                let _ = writeln!(out, "gatehouse_http_request_duration_seconds_sum{{route=\"{r}\"}} {}", hist.sum);
                let _ = writeln!(out, "gatehouse_http_request_duration_seconds_count{{route=\"{r}\"}} {}", hist.count);
            }
        }
        if let Ok(c) = self.counters.lock() {
            let mut sorted: Vec<&(CounterKey, u64)> = c.iter().collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            let mut last = "";
            for ((name, labels), n) in sorted {
                if *name != last {
                    let _ = writeln!(out, "# TYPE {name} counter");
                    last = name;
                }
                let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
                let _ = writeln!(out, "{name}{{{}}} {n}", l.join(","));
            }
        }
        for (name, kind, help, value) in extra {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        }
        out
    }
}

fn escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::default();
        m.request("/_gh/api/v1/sessions", "POST", 401, Duration::from_millis(20));
        m.request("/_gh/api/v1/sessions", "POST", 401, Duration::from_millis(3));
        m.inc("gatehouse_gateway_decisions_total", &[("dialect", "upbit"), ("outcome", "ok")]);
        let text = m.render(&[("gatehouse_mail_outbox_pending", "gauge", "Mail waiting.", 2.0)]);
        assert!(
            text.contains(
                r#"gatehouse_http_requests_total{route="/_gh/api/v1/sessions",method="POST",status="401"} 2"#
            )
        );
        assert!(
            text.contains(
                r#"gatehouse_http_request_duration_seconds_bucket{route="/_gh/api/v1/sessions",le="0.005"} 1"#
            )
        );
        assert!(text.contains(r#"gatehouse_http_request_duration_seconds_count{route="/_gh/api/v1/sessions"} 2"#));
        assert!(text.contains(r#"gatehouse_gateway_decisions_total{dialect="upbit",outcome="ok"} 1"#));
        assert!(text.contains("gatehouse_mail_outbox_pending 2"));
    }
}
