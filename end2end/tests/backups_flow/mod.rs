//! Backups in the browser: deploy the demo image with a volume, write a file into it, set a
//! backup schedule, "Back up now" and see the backup succeed, delete the file, restore from
//! the card, find the file in the backup's file browser, and read it back through the app's
//! generated hostname; then reveal the repository and have stock `restic` list the same
//! snapshot, and check the repository with a restore drill from the card. Saves `target/e2e-backups.png`.

use std::{process::Command, time::Duration};

use fantoccini::{Client, Locator};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn exec(container: &str, script: &str) -> Result<String> {
    let out = Command::new("docker")
        .args(["exec", container, "/bin/busybox", "sh", "-c", script])
        .output()?;
    if !out.status.success() {
        return Err(format!("docker exec failed: {out:?}").into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

async fn healthy_container(c: &Client) -> Result<String> {
    let cell = "//tr[@class='instance'][td[@class='health' and text()='healthy']]/td[contains(@class, 'container-id')]";
    Ok(c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::XPath(cell))
        .await?
        .attr("title")
        .await?
        .unwrap_or_default())
}

async fn click(c: &Client, css: &str) -> Result<()> {
    c.find(Locator::Css(css)).await?.click().await?;
    Ok(())
}

/// See the module documentation. Starts on any page; `berth_url` is the portal's address.
pub async fn protect_and_restore(c: &Client, berth_url: &str) -> Result<()> {
    c.goto(&format!("{berth_url}/projects")).await?;
    c.wait()
        .for_element(Locator::XPath(
            "//a[contains(@class,'project-link') and text()='e2e-shop']",
        ))
        .await?
        .click()
        .await?;
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("new-deployment-form"))
        .await?;
    super::fill(c, "#new-deployment-form", "name", "vault").await?;
    super::fill(
        c,
        "#new-deployment-form",
        "image",
        "berth-demo/httpd:latest",
    )
    .await?;
    super::fill(c, "#new-deployment-form", "http_port", "8080").await?;
    let volumes = c
        .find(Locator::Css("#new-deployment-form textarea[name=volumes]"))
        .await?;
    volumes.clear().await?;
    volumes.send_keys("data:/www/data").await?;
    click(c, "#new-deployment-form button[type=submit]").await?;
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::XPath(
            "//table[@id='deployments']//a[text()='vault']",
        ))
        .await?
        .click()
        .await?;
    let container = healthy_container(c).await?;
    exec(
        &container,
        "/bin/busybox printf precious > /www/data/notes.txt",
    )?;

    // A schedule (daily at 04:00 UTC, keep 7), shown once saved.
    let cron = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#backup-schedule-form input[name=cron]"))
        .await?;
    cron.clear().await?;
    cron.send_keys("0 4 * * *").await?;
    click(c, "#backup-schedule-form button[type=submit]").await?;
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(
            "//p[@id='backup-schedule'][contains(., '0 4 * * *')]",
        ))
        .await?;

    // Opened again, the form shows the saved schedule.
    c.refresh().await?;
    let shown = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#backup-schedule-form input[name=cron]"))
        .await?
        .prop("value")
        .await?
        .unwrap_or_default();
    if shown != "0 4 * * *" {
        return Err(format!("the schedule form shows '{shown}'").into());
    }

    // Back up now: the list (read again every 2 s) shows it succeed.
    click(c, "#backup-now-form button[type=submit]").await?;
    let done =
        "//ul[@id='backups']/li[1]//span[contains(@class,'backup-status') and text()='succeeded']";
    c.wait()
        .at_most(Duration::from_secs(90))
        .for_element(Locator::XPath(done))
        .await?;
    // The repository, made by that first backup, shows up on the card without a reload.
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(
            "//p[@id='backup-repository-info'][contains(., 'local repository')]",
        ))
        .await?;

    // The file is lost; the restore (confirmed by its box) brings it back.
    exec(&container, "/bin/busybox rm /www/data/notes.txt")?;
    click(
        c,
        "#backups li:first-child .restore-form input[name=confirm]",
    )
    .await?;
    click(
        c,
        "#backups li:first-child .restore-form button[type=submit]",
    )
    .await?;
    c.wait()
        .at_most(Duration::from_secs(90))
        .for_element(Locator::XPath(
            "//ul[@id='restores']/li[1]/span[contains(@class,'restore-status') and text()='succeeded']",
        ))
        .await?;
    // The backup's files: open the volume's directory and find the file's download link.
    click(c, "#backups li:first-child .browse-files").await?;
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(
            "//div[@id='backup-files']//button[contains(@class,'snapshot-dir') and text()='data/']",
        ))
        .await?
        .click()
        .await?;
    let link = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(
            "//div[@id='backup-files']//a[contains(@class,'snapshot-file') and text()='notes.txt']",
        ))
        .await?
        .attr("href")
        .await?
        .unwrap_or_default();
    if !link.ends_with("/download?path=/volumes/data/notes.txt") {
        return Err(format!("unexpected download link '{link}'").into());
    }
    c.execute(
        "document.getElementById('backups').scrollIntoView({block: 'center'});",
        vec![],
    )
    .await?;
    let shot = c.screenshot().await?;
    std::fs::write(super::workspace_target().join("e2e-backups.png"), shot)?;

    // stock restic lists the snapshot with the password the card reveals.
    click(c, "#reveal-repository-form button[type=submit]").await?;
    let command = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#backup-repository code"))
        .await?
        .text()
        .await?;
    let password = command
        .split('\'')
        .nth(1)
        .ok_or_else(|| format!("no password in '{command}'"))?;
    let location = command
        .split_whitespace()
        .skip_while(|w| *w != "-r")
        .nth(1)
        .ok_or_else(|| format!("no repository in '{command}'"))?;
    let out = Command::new("restic")
        .args(["--no-cache", "-r", location, "snapshots", "--json"])
        .env("RESTIC_PASSWORD", password)
        .output()?;
    let listed = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || !listed.contains("kind:volumes") {
        return Err(format!("restic snapshots: {out:?}").into());
    }

    // A check of the repository with a restore drill, from the card: the newest backup is
    // restored into a scratch directory and found equal.
    click(c, "#check-now-form input[name=restore_drill]").await?;
    click(c, "#check-now-form button[type=submit]").await?;
    let checked = c
        .wait()
        .at_most(Duration::from_secs(90))
        .for_element(Locator::XPath(
            "//ul[@id='backup-checks']/li[1][span[contains(@class,'check-status') and text()='ok']]",
        ))
        .await?
        .text()
        .await?;
    if !checked.contains("drill: 1 files") {
        return Err(format!("the check reads '{checked}'").into());
    }

    // The app serves the restored file at its generated hostname.
    let app_url = c
        .find(Locator::Id("app-url"))
        .await?
        .attr("href")
        .await?
        .unwrap_or_default();
    // The route moves to the new instance as the ingress refreshes (at most every 2 s).
    let file = format!("{}/data/notes.txt", app_url.trim_end_matches('/'));
    let mut body = String::new();
    for _ in 0..20 {
        c.goto(&file).await?;
        body = c.find(Locator::Css("body")).await?.text().await?;
        if body.trim() == "precious" {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Err(format!("the restored file reads '{body}'").into())
}
