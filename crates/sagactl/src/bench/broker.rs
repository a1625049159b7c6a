//! What the services asked the broker during a run, per saga, by request type: each service's
//! clients count their requests on `/metrics` (`saga_kafka_requests_total`, from librdkafka's
//! statistics, once a second). The broker's work is per request, so this is what its CPU
//! follows: at low rates every record is a fetch answered to every group reading its topic, at
//! the peak a fetch brings several.

use std::collections::BTreeMap;

use serde_json::{Value, json};

const REQUESTS: &str = "saga_kafka_requests_total";

/// Requests by type, summed over every client of every service that answered.
pub type Requests = BTreeMap<String, f64>;

/// The services' request counts now; a service that does not answer counts nothing.
pub async fn scrape(http: &reqwest::Client, service_urls: &[&str]) -> Requests {
    let mut requests = Requests::new();
    for url in service_urls {
        let Ok(response) = http.get(format!("{url}/metrics")).send().await else {
            continue;
        };
        let Ok(text) = response.text().await else {
            continue;
        };
        for (request, count) in parse(&text) {
            *requests.entry(request).or_default() += count;
        }
    }
    requests
}

fn parse(metrics: &str) -> Vec<(String, f64)> {
    metrics
        .lines()
        .filter(|line| line.starts_with(REQUESTS))
        .filter_map(|line| {
            let request = line.split("request=\"").nth(1)?.split('"').next()?;
            let count: f64 = line.rsplit(' ').next()?.parse().ok()?;
            Some((request.to_owned(), count))
        })
        .collect()
}

/// Requests per saga between two scrapes: by type, and in all.
pub fn per_saga(before: &Requests, after: &Requests, sagas: f64) -> Value {
    let by_type: BTreeMap<&str, f64> = after
        .iter()
        .map(|(request, count)| {
            let added = count - before.get(request).copied().unwrap_or(0.0);
            (request.as_str(), added.max(0.0) / sagas)
        })
        .filter(|(_, per)| *per > 0.0)
        .collect();
    let total: f64 = by_type.values().sum();
    json!({ "total": total, "by_type": by_type })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_summed_by_type_and_divided_by_sagas() {
        let scraped = "# TYPE saga_kafka_requests_total counter\n\
            saga_kafka_requests_total{client=\"consumer\",request=\"Fetch\"} 30\n\
            saga_kafka_requests_total{client=\"producer\",request=\"Produce\"} 12\n\
            saga_kafka_requests_total{client=\"producer\",request=\"Fetch\"} 2\n\
            saga_events_published_total 9\n";
        let mut after = Requests::new();
        for (request, count) in parse(scraped) {
            *after.entry(request).or_default() += count;
        }
        let before = Requests::from([("Fetch".to_owned(), 12.0)]);
        let report = per_saga(&before, &after, 4.0);
        assert_eq!(report["by_type"]["Fetch"], 5.0);
        assert_eq!(report["by_type"]["Produce"], 3.0);
        assert_eq!(report["total"], 8.0);
    }
}
