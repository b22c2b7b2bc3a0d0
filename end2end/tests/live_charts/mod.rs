//! The deployment page's live metrics in the browser: the charts fill from the metrics
//! socket and move when the app's memory grows, without a reload.

use std::{path::Path, process::Command, time::Duration};

use fantoccini::{Client, Locator};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// On an open deployment page whose instance runs in `container`: waits for the socket and
/// the CPU line, writes 24 MiB to the instance's tmpfs and waits for the memory chart to
/// show it; saves `e2e-metrics.png` (or `e2e-failure.png`) under `target`; then switches
/// to the 1 h history and back to live; then checks the project page's "now" columns and
/// usage card (`e2e-project-now.png`) and comes back.
pub async fn watch(c: &Client, container: &str, target: &Path) -> Result<()> {
    // Live metrics: the charts fill from the metrics socket, and 24 MiB written to the
    // instance's tmpfs (charged to its memory) show on the memory chart without a reload.
    for (what, locator) in [
        (
            "the metrics socket",
            Locator::XPath("//p[@id='metrics-state'][text()='Live']"),
        ),
        ("the CPU chart's line", Locator::Css("#chart-cpu polyline")),
    ] {
        if let Err(e) = c
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(locator)
            .await
        {
            let shot = c.screenshot().await?;
            std::fs::write(target.join("e2e-failure.png"), shot)?;
            return Err(format!("waiting for {what}: {e}").into());
        }
    }
    Command::new("docker")
        .args([
            "exec",
            container,
            "/bin/busybox",
            "dd",
            "if=/dev/zero",
            "of=/dev/shm/e2e",
            "bs=1048576",
            "count=24",
        ])
        .output()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let readout = c
            .find(Locator::Css("#chart-memory .chart-readout"))
            .await?
            .text()
            .await?;
        if largest_mib(&readout) >= 20.0 {
            break;
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("the memory chart still reads '{readout}'").into());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    c.execute(
        "document.getElementById('chart-cpu').scrollIntoView()",
        vec![],
    )
    .await?;
    let shot = c.screenshot().await?;
    std::fs::write(target.join("e2e-metrics.png"), shot)?;
    // The 1 h tab reads the history (a fresh deployment has no closed minute yet, or just
    // one), and Live goes back to the socket, which kept running meanwhile.
    c.find(Locator::Css("button[data-range='1h']"))
        .await?
        .click()
        .await?;
    let history = "//p[@id='metrics-state'][starts-with(., 'No history yet') or contains(., 'one per 1 min')]";
    if let Err(e) = c
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::XPath(history))
        .await
    {
        let shot = c.screenshot().await?;
        std::fs::write(target.join("e2e-failure.png"), shot)?;
        let state = c.find(Locator::Id("metrics-state")).await?.text().await?;
        return Err(format!("waiting for the 1 h history ('{state}'): {e}").into());
    }
    c.find(Locator::Css("button[data-range='live']"))
        .await?
        .click()
        .await?;
    c.wait()
        .at_most(Duration::from_secs(10))
        .for_element(Locator::XPath("//p[@id='metrics-state'][text()='Live']"))
        .await?;

    // The project page shows the deployment's CPU and memory now, and the usage card; then
    // back to the deployment page, live again.
    let deployment_url = c.current_url().await?;
    let project = c
        .find(Locator::XPath("//a[starts-with(@href, '/projects/')]"))
        .await?
        .attr("href")
        .await?
        .ok_or("the deployment page has no link to its project")?;
    c.goto(deployment_url.join(&project)?.as_str()).await?;
    for (what, xpath) in [
        ("CPU now", "//td[@data-cpu-now][contains(., '%')]"),
        ("memory now", "//td[@data-memory-now][contains(., 'MiB')]"),
        ("the usage card", "//*[@id='usage' or @id='usage-empty']"),
    ] {
        if let Err(e) = c
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::XPath(xpath))
            .await
        {
            let shot = c.screenshot().await?;
            std::fs::write(target.join("e2e-failure.png"), shot)?;
            return Err(format!("waiting for {what} on the project page: {e}").into());
        }
    }
    let shot = c.screenshot().await?;
    std::fs::write(target.join("e2e-project-now.png"), shot)?;
    c.goto(deployment_url.as_str()).await?;
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::XPath("//p[@id='metrics-state'][text()='Live']"))
        .await?;
    Ok(())
}

/// The largest `<n> MiB` figure in a chart's readout (`12:00:01 — …a1b2c3: 24.1 MiB`), 0
/// when there is none.
fn largest_mib(readout: &str) -> f64 {
    let words: Vec<&str> = readout.split_whitespace().collect();
    words
        .windows(2)
        .filter(|w| w[1] == "MiB")
        .filter_map(|w| w[0].parse::<f64>().ok())
        .fold(0.0, f64::max)
}
