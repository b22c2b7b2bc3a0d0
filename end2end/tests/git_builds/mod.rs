//! Push to deploy, in the browser: connect the deployment to a repository (served over git's
//! smart HTTP protocol on loopback), read the webhook secret the card shows once, push a
//! commit, deliver the push as GitHub signs it (a forged delivery is refused first), follow
//! the build's log live on the page, and open the new release at the generated hostname.
//! Saves `target/e2e-build.png` and `target/e2e-build-app.png`.

use std::{process::Command, time::Duration};

use fantoccini::{Client, Locator};
use hmac::{Hmac, Mac};

// The git server of the server's build tests (a plain-std helper), shared as a file.
#[allow(dead_code)]
#[path = "../../../server/tests/common/git.rs"]
mod git_server;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Posts `body` to `url` as GitHub delivers a push, signed with `secret` (HMAC-SHA256 of the
/// raw body, `X-Hub-Signature-256: sha256=<hex>`); returns the HTTP status. Uses curl
/// (argument list, body on stdin).
fn deliver(url: &str, secret: &str, delivery: &str, body: &str) -> Result<u16> {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes())?;
    mac.update(body.as_bytes());
    let signature: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut child = Command::new("curl")
        .args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "-H",
            "X-GitHub-Event: push",
            "-H",
            &format!("X-GitHub-Delivery: {delivery}"),
            "-H",
            &format!("X-Hub-Signature-256: sha256={signature}"),
            "--data-binary",
            "@-",
            url,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()?;
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), body.as_bytes())?;
    let out = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// From the app (the previous step) to its deployment page and back to the app, now built
/// from git; see the module documentation.
pub async fn push_to_deploy(c: &Client, berth_url: &str) -> Result<()> {
    let server = git_server::GitServer::start();
    let repo = server.repository("shop.git");
    c.back().await?;
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Id("git-source-form"))
        .await?;
    let deployment_page = c.current_url().await?;
    super::fill(
        c,
        "#git-source-form",
        "repository_url",
        &server.url("shop.git"),
    )
    .await?;
    c.find(Locator::Css("#git-source-form button[type=submit]"))
        .await?
        .click()
        .await?;
    let secret = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#webhook-secret code"))
        .await?
        .text()
        .await?;
    let path = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath("(//span[@class='webhook-path'])[1]"))
        .await?
        .text()
        .await?;
    if secret.len() != 64 || !path.starts_with("/webhooks/github/") {
        return Err(format!(
            "unexpected webhook '{path}' / secret of {} chars",
            secret.len()
        )
        .into());
    }

    // A commit whose page keeps the demo's heading and adds a marker of this run.
    let marker = format!("built-{}", std::process::id());
    let commit = repo.commit(
        "main",
        &[
            (
                "Dockerfile",
                "FROM berth-demo/httpd:latest\nCOPY index.html /www/index.html\n",
            ),
            (
                "index.html",
                &format!("<!doctype html><title>Hello from Berth</title><h1>Hello from Berth</h1><p id=\"built\">{marker}</p>\n"),
            ),
        ],
        "built from git",
    );
    let body = serde_json::json!({"ref": "refs/heads/main", "after": commit}).to_string();
    let hook = format!("{berth_url}{path}");
    let forged = deliver(&hook, "not the secret", "e2e-forged", &body)?;
    if forged != 401 {
        return Err(format!("a forged delivery got {forged}, not 401").into());
    }
    let accepted = deliver(&hook, &secret, "e2e-push", &body)?;
    if accepted != 202 {
        return Err(format!("the signed push got {accepted}, not 202").into());
    }

    // The build shows up in the card (read again every 2 s); its log streams into the page.
    c.wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(
            "//ul[@id='builds']/li[1]//button[contains(@class,'show-log')]",
        ))
        .await?
        .click()
        .await?;
    c.wait()
        .at_most(Duration::from_secs(60))
        .for_element(Locator::XPath(
            "//pre[@id='build-log'][contains(., 'Step 1/')]",
        ))
        .await?;
    c.wait()
        .at_most(Duration::from_secs(120))
        .for_element(Locator::XPath(
            "//span[@id='build-log-state'][contains(., 'build succeeded')]",
        ))
        .await?;
    let rejected = c
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::XPath(
            "//table[@id='deliveries']//span[@class='outcome font-medium' and text()='rejected']",
        ))
        .await;
    if rejected.is_err() {
        return Err("the forged delivery is not listed as rejected".into());
    }
    c.execute(
        "document.getElementById('build-log').scrollIntoView({block: 'center'});",
        vec![],
    )
    .await?;
    let shot = c.screenshot().await?;
    std::fs::write(super::workspace_target().join("e2e-build.png"), shot)?;

    // The new release goes live (health-gated) at the generated hostname.
    let app_url = c
        .find(Locator::Id("app-url"))
        .await?
        .attr("href")
        .await?
        .unwrap_or_default();
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    for attempt in 0.. {
        // A new query each time: Chromium may keep the old page for a while (heuristic
        // freshness from its Last-Modified), and busybox httpd ignores the query.
        c.goto(&format!("{app_url}?attempt={attempt}")).await?;
        let built = c.find(Locator::XPath("//p[@id='built']")).await;
        if let Ok(p) = built {
            if p.text().await? == marker {
                break;
            }
        }
        if std::time::Instant::now() > deadline {
            let served = Command::new("curl").args(["-s", &app_url]).output()?;
            return Err(format!(
                "{app_url} never served the built page; curl gets: {}",
                String::from_utf8_lossy(&served.stdout)
            )
            .into());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let shot = c.screenshot().await?;
    std::fs::write(super::workspace_target().join("e2e-build-app.png"), shot)?;
    // As the step before left it: the app, with its deployment page one step back.
    c.goto(deployment_page.as_str()).await?;
    c.goto(&app_url).await?;
    Ok(())
}
