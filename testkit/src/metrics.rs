//! Reading a Prometheus endpoint until it shows what a test waits for.

use std::net::SocketAddr;
use std::time::Duration;

use eventgateway_runtime::metrics::scrape;

use crate::wait::PATIENCE;

/// How often the endpoint is scraped again.
const SCRAPE_AGAIN: Duration = Duration::from_millis(100);

/// Scrapes the metrics at `addr` until they contain every line of
/// `expected`; fails the test, showing what is missing, after [`PATIENCE`].
pub async fn metrics_show(addr: SocketAddr, expected: &[String]) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = scrape(addr).await.unwrap_or_default();
        let missing: Vec<&String> = expected
            .iter()
            .filter(|l| !text.contains(l.as_str()))
            .collect();
        if missing.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "metrics lack {missing:?}:\n{text}"
        );
        tokio::time::sleep(SCRAPE_AGAIN).await;
    }
}

/// Scrapes the metrics at `addr` until `series` (its name and labels, as
/// the text shows them) reaches at least `value`; returns its value then.
/// Fails the test after [`PATIENCE`].
pub async fn metric_reaches(addr: SocketAddr, series: &str, value: f64) -> f64 {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let text = scrape(addr).await.unwrap_or_default();
        let now = sample(&text, series);
        if let Some(now) = now.filter(|now| *now >= value) {
            return now;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{series} is {now:?}, not yet {value}:\n{text}"
        );
        tokio::time::sleep(SCRAPE_AGAIN).await;
    }
}

/// The metrics at `addr` now, as text (empty when they cannot be read).
pub async fn metrics_text(addr: SocketAddr) -> String {
    scrape(addr).await.unwrap_or_default()
}

/// The value of `series` (its name and labels, as the text shows them) at
/// `addr` now, if it is there.
pub async fn metric_value(addr: SocketAddr, series: &str) -> Option<f64> {
    sample(&scrape(addr).await.ok()?, series)
}

/// The value of `series` in Prometheus text.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|line| line.strip_prefix(series))
        .find_map(|rest| rest.strip_prefix(' '))
        .and_then(|value| value.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_is_read_by_its_whole_name() {
        let text = "a_total 3\na_total_more 9\nb{x=\"1\"} 2.5\n";
        assert_eq!(sample(text, "a_total"), Some(3.0));
        assert_eq!(sample(text, "b{x=\"1\"}"), Some(2.5));
        assert_eq!(sample(text, "c"), None);
    }
}
