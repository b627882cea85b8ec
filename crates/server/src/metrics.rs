//! Prometheus metrics, hand-rolled (a handful of counters and one histogram family do not
//! justify an exporter dependency): requests and latency per route and status, gateway
//! decisions per dialect and outcome, replay-store and rate-limit results, hashing-pool and
//! outbox figures. Rendered at `/metrics` in the text exposition format. Labels are fixed
//! strings from the router and the code, never request data, so cardinality is bounded.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use crate::sharded::Sharded;

/// Latency bucket bounds, in seconds.
const BUCKETS: [f64; 12] = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];

#[derive(Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, secs: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if secs <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += secs;
        self.count += 1;
    }

    fn add(&mut self, other: &Histogram) {
        for (a, b) in self.counts.iter_mut().zip(other.counts) {
            *a += b;
        }
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// One route's requests: counts by (method, status) and the latency histogram.
#[derive(Debug, Default)]
struct RouteStats {
    by: BTreeMap<(&'static str, u16), u64>,
    latency: Histogram,
}

/// A counter's identity: its name and its label pairs.
type CounterKey = (&'static str, Vec<(&'static str, String)>);

/// One part of the registry.
#[derive(Debug, Default)]
struct Part {
    routes: BTreeMap<String, RouteStats>,
    /// Few (labels are fixed strings), so a list searched without allocating beats a map
    /// whose lookup key would have to be built, with owned strings, on every increment.
    counters: Vec<(CounterKey, u64)>,
}

/// The registry, in [`Sharded`] parts: a thread records into one part (chosen once per
/// thread), so request threads do not queue on one lock; `/metrics` adds the parts up.
#[derive(Debug, Default)]
pub struct Metrics {
    parts: Sharded<Part>,
}

impl Metrics {
    /// Records one HTTP request.
    pub fn request(&self, route: &str, method: &'static str, status: u16, took: Duration) {
        let mut part = self.parts.mine();
        // Look up by `&str` first so the hot path allocates nothing once a route is known.
        if !part.routes.contains_key(route) {
            part.routes.insert(route.to_owned(), RouteStats::default());
        }
        let Some(r) = part.routes.get_mut(route) else { return };
        *r.by.entry((method, status)).or_default() += 1;
        r.latency.observe(took.as_secs_f64());
    }

    /// Adds one to counter `name` with `labels`.
    pub fn inc(&self, name: &'static str, labels: &[(&'static str, &str)]) {
        let mut part = self.parts.mine();
        let same = |(n, l): &CounterKey| {
            *n == name && l.len() == labels.len() && l.iter().zip(labels).all(|((a, b), (c, d))| a == c && b == d)
        };
        match part.counters.iter_mut().find(|(k, _)| same(k)) {
            Some((_, n)) => *n += 1,
            None => part.counters.push(((name, labels.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()), 1)),
        }
    }

    /// Every part added up: requests, latency and counters, in rendering order.
    fn totals(&self) -> Part {
        let mut total = Part::default();
        let mut counters: BTreeMap<CounterKey, u64> = BTreeMap::new();
        for part in self.parts.each() {
            for (route, r) in &part.routes {
                let t = total.routes.entry(route.clone()).or_default();
                for (k, n) in &r.by {
                    *t.by.entry(*k).or_default() += n;
                }
                t.latency.add(&r.latency);
            }
            for (k, n) in &part.counters {
                *counters.entry(k.clone()).or_default() += n;
            }
        }
        total.counters = counters.into_iter().collect();
        total
    }

    /// The text exposition, with `extra` gauge/counter lines appended.
    pub fn render(&self, extra: &[(&str, &str, &str, f64)]) -> String {
        let totals = self.totals();
        let mut out = String::new();
        out.push_str("# HELP gatehouse_http_requests_total HTTP requests by route template, method and status.\n");
        out.push_str("# TYPE gatehouse_http_requests_total counter\n");
        for (route, r) in &totals.routes {
            for ((method, status), n) in &r.by {
                let _ = writeln!(
                    out,
                    "gatehouse_http_requests_total{{route=\"{}\",method=\"{method}\",status=\"{status}\"}} {n}",
                    escape(route)
                );
            }
        }
        out.push_str("# HELP gatehouse_http_request_duration_seconds Request latency by route template.\n");
        out.push_str("# TYPE gatehouse_http_request_duration_seconds histogram\n");
        for (route, RouteStats { latency: hist, .. }) in &totals.routes {
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
        let mut last = "";
        for ((name, labels), n) in &totals.counters {
            if *name != last {
                let _ = writeln!(out, "# TYPE {name} counter");
                last = name;
            }
            let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", escape(v))).collect();
            let _ = writeln!(out, "{name}{{{}}} {n}", l.join(","));
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
#[allow(clippy::unwrap_used)] // tests fail loudly
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

    /// Threads record into their own parts; `/metrics` shows the sums, each series once.
    #[test]
    fn parts_recorded_by_many_threads_add_up() {
        let m = std::sync::Arc::new(Metrics::default());
        let threads: Vec<_> = (0..crate::sharded::PARTS + 4)
            .map(|i| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for _ in 0..50 {
                        m.request("/api", "GET", 200, Duration::from_micros(300));
                        m.inc(
                            "gatehouse_replay_inserts_total",
                            &[("result", if i % 2 == 0 { "fresh" } else { "replayed" })],
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let text = m.render(&[]);
        let n = (crate::sharded::PARTS + 4) * 50;
        assert!(
            text.contains(&format!(r#"gatehouse_http_requests_total{{route="/api",method="GET",status="200"}} {n}"#))
        );
        assert!(
            text.contains(&format!(
                r#"gatehouse_http_request_duration_seconds_bucket{{route="/api",le="0.0005"}} {n}"#
            ))
        );
        assert!(text.contains(&format!(r#"gatehouse_http_request_duration_seconds_count{{route="/api"}} {n}"#)));
        assert!(text.contains(&format!(r#"gatehouse_replay_inserts_total{{result="fresh"}} {}"#, n / 2)));
        assert!(text.contains(&format!(r#"gatehouse_replay_inserts_total{{result="replayed"}} {}"#, n / 2)));
        assert_eq!(text.matches("# TYPE gatehouse_replay_inserts_total counter").count(), 1);
        assert_eq!(text.matches("gatehouse_http_requests_total{").count(), 1);
    }
}
