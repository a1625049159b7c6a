//! The console in a real browser: Debian's Chromium, driven over WebDriver by its ChromeDriver,
//! against the stack `make up` started. Orders are placed from outside, over the services' HTTP
//! APIs, and the pages are watched as a person would watch them: a placed order's page follows
//! its saga without a reload, the waterfall shows each compensation, the time slider travels, a
//! dead letter is redriven and a review approved with the tokens typed into the page. Every page
//! is checked by an accessibility engine (axe-core, from npm), and three screenshots are saved to
//! `docs/images/` for the README.
//!
//! Nothing here downloads a browser: Chromium and ChromeDriver are the OS packages
//! (`apt-get install chromium chromium-driver`; CI installs them).

use std::os::unix::process::CommandExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use saga_e2e::{Api, HeldProjection, order_body, repo_root, restart, unique_sku, wait_for};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// The rule that makes Shipping fail an order's `StockReserved` three times (as often as it
/// tries before dead-lettering) for SKUs starting `e2e-console-dead-`, as
/// `unique_sku("console-dead")` makes them: `make test` starts the stack with it; the redrive
/// then finds the rule used up and succeeds.
const DEAD_LETTER_RULE: &str = "shipping:sku=e2e-console-dead-:3:StockReserved";

/// How long a saga may take on a busy test machine.
const SAGA: Duration = Duration::from_secs(60);

fn console_url() -> String {
    std::env::var("HISTORY_URL").unwrap_or_else(|_| "http://127.0.0.1:8085".into())
}

/// A headless Chromium and the ChromeDriver that drives it, both stopped on drop.
struct Browser {
    client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        // A killed ChromeDriver leaves its browsers running (and polling the console's counts
        // through every later suite): the driver leads a process group of its own, and the
        // whole group goes.
        let group = format!("-{}", self.driver.id());
        let killed = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        if !killed.is_ok_and(|status| status.success()) {
            let _ = self.driver.kill();
        }
        let _ = self.driver.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

impl Browser {
    async fn start() -> anyhow::Result<Self> {
        let chromium = which("chromium")?;
        let chromedriver = which("chromedriver")?;
        let port = free_port()?;
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", chromedriver.display()))?;
        let profile = std::env::temp_dir().join(format!("console-test-{}", uuid::Uuid::new_v4()));
        let capabilities = json!({
            "browserName": "chrome",
            // The accessibility engine runs as one script per page, and with the other suites
            // beside this one it has taken longer than WebDriver's default 30 s.
            "timeouts": { "script": SCRIPT_DEADLINE.as_millis() as u64 },
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    // This machine has no network but loopback: keep Chromium from trying.
                    "--disable-background-networking", "--disable-component-update",
                    "--disable-sync", "--no-first-run", "--disable-quic",
                    "--window-size=1400,1000",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        });
        let Value::Object(capabilities) = capabilities else {
            bail!("capabilities are an object");
        };
        let webdriver = format!("http://127.0.0.1:{port}");
        let client = wait_for(
            "ChromeDriver to start a session",
            Duration::from_secs(30),
            || {
                let capabilities = capabilities.clone();
                let webdriver = webdriver.clone();
                async move {
                    match ClientBuilder::native()
                        .capabilities(capabilities)
                        .connect(&webdriver)
                        .await
                    {
                        Ok(client) => Ok((Some(client), String::new())),
                        Err(error) => Ok((None, error.to_string())),
                    }
                }
            },
        )
        .await?;
        Ok(Self {
            client,
            driver,
            profile,
        })
    }

    async fn open(&self, path: &str) -> anyhow::Result<()> {
        self.client
            .goto(&format!("{}{path}", console_url()))
            .await?;
        Ok(())
    }

    async fn js(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    /// The text of the first element matching `css`, empty if there is none.
    async fn text(&self, css: &str) -> anyhow::Result<String> {
        let text = self
            .js(
                "const e = document.querySelector(arguments[0]); return e ? e.innerText : '';",
                vec![json!(css)],
            )
            .await?;
        Ok(text.as_str().unwrap_or_default().to_owned())
    }

    /// Waits until the text of `css` satisfies `done`; fails showing the last text seen.
    async fn wait_text(
        &self,
        what: &str,
        css: &str,
        done: impl Fn(&str) -> bool,
    ) -> anyhow::Result<String> {
        wait_for(what, SAGA, || async {
            let text = self.text(css).await?;
            Ok((done(&text).then(|| text.clone()), text))
        })
        .await
    }

    async fn fill(&self, css: &str, text: &str) -> anyhow::Result<()> {
        let field = self.client.find(Locator::Css(css)).await?;
        field.clear().await?;
        field.send_keys(text).await?;
        Ok(())
    }

    async fn click(&self, css: &str) -> anyhow::Result<()> {
        self.client.find(Locator::Css(css)).await?.click().await?;
        Ok(())
    }

    /// Sends the page's action form and returns the text of the answer page, once the browser
    /// shows it: a click only starts the navigation, so the old page can still be there.
    async fn submit(&self, action: &str) -> anyhow::Result<String> {
        self.click("form.action button[type=submit]").await?;
        wait_for(&format!("the answer to {action}"), SAGA, || async {
            let shown = self
                .js(
                    "return document.readyState === 'complete' && location.pathname === arguments[0]
                       ? document.querySelector('main').innerText : null;",
                    vec![json!(action)],
                )
                .await?;
            Ok((
                shown.as_str().map(str::to_owned),
                format!("not yet: {shown}"),
            ))
        })
        .await
    }

    async fn select(&self, css: &str, value: &str) -> anyhow::Result<()> {
        self.client
            .find(Locator::Css(css))
            .await?
            .select_by_value(value)
            .await?;
        Ok(())
    }

    /// Runs axe-core on the page; fails on any serious or critical violation, naming them.
    async fn assert_accessible(&self, page: &str) -> anyhow::Result<()> {
        let engine = axe_source().await?;
        self.js(engine, Vec::new()).await?;
        let elements = self
            .js(
                "return document.getElementsByTagName('*').length;",
                Vec::new(),
            )
            .await?;
        let started = Instant::now();
        let found = self
            .client
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, { runOnly: { type: 'tag',
                     values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice'] } })
                   .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact,
                       help: v.help, nodes: v.nodes.slice(0, 3).map(n => n.target.join(' ')) }))))
                   .catch(e => done('axe failed: ' + e));",
                Vec::new(),
            )
            .await
            .with_context(|| {
                format!(
                    "{page}: the accessibility engine over {elements} elements, stopped after {:?}",
                    started.elapsed()
                )
            })?;
        println!(
            "{page}: {elements} elements checked in {:?}",
            started.elapsed()
        );
        let Value::Array(violations) = found else {
            bail!("{page}: {found}");
        };
        let serious: Vec<&Value> = violations
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect();
        if !serious.is_empty() {
            bail!("{page}: serious accessibility violations: {serious:#?}");
        }
        Ok(())
    }

    /// Saves what the window shows from the top of the page, with nothing focused.
    async fn screenshot(&self, name: &str) -> anyhow::Result<()> {
        self.js(
            "document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0);",
            Vec::new(),
        )
        .await?;
        let png = self.client.screenshot().await?;
        let path = repo_root().join("docs/images").join(name);
        std::fs::create_dir_all(path.parent().context("docs/images")?)?;
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))
    }
}

fn which(program: &str) -> anyhow::Result<PathBuf> {
    ["/usr/bin", "/usr/local/bin", "/usr/lib/chromium"]
        .iter()
        .map(|dir| PathBuf::from(dir).join(program))
        .find(|path| path.exists())
        .with_context(|| {
            format!("{program} not found: apt-get install chromium chromium-driver (CI does)")
        })
}

/// How long one script in the browser may run: the accessibility engine over a whole page.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(120);

/// axe-core's script, installed from npm into `.local/axe` the first time.
async fn axe_source() -> anyhow::Result<&'static str> {
    static SOURCE: OnceCell<String> = OnceCell::const_new();
    SOURCE
        .get_or_try_init(|| async {
            let prefix = repo_root().join(".local/axe");
            let file = prefix.join("node_modules/axe-core/axe.min.js");
            if !file.exists() {
                let install = prefix.clone();
                let status = tokio::task::spawn_blocking(move || {
                    Command::new("npm")
                        .args(["install", "--no-audit", "--no-fund", "--silent", "--prefix"])
                        .arg(&install)
                        .arg("axe-core@4.14.1")
                        .status()
                })
                .await?
                .context("running npm to install axe-core")?;
                if !status.success() {
                    bail!("npm install axe-core@4.14.1 failed: {status}");
                }
            }
            std::fs::read_to_string(&file).with_context(|| format!("reading {}", file.display()))
        })
        .await
        .map(String::as_str)
}

async fn order_status(api: &Api, order_id: &str) -> anyhow::Result<String> {
    Ok(api
        .order(order_id)
        .await?
        .map(|o| o["status"].as_str().unwrap_or_default().to_owned())
        .unwrap_or_default())
}

async fn wait_order_status(api: &Api, order_id: &str, status: &str) -> anyhow::Result<()> {
    wait_for(
        &format!("order {order_id} to be {status}"),
        SAGA,
        || async {
            let now = order_status(api, order_id).await?;
            Ok(((now == status).then_some(()), now))
        },
    )
    .await
}

#[tokio::test]
async fn a_placed_order_shows_in_progress_then_its_events_then_confirmed_without_a_reload()
-> anyhow::Result<()> {
    let api = Api::from_env()?;
    let sku = unique_sku("console-live");
    api.set_stock(&sku, 5).await?;
    let browser = Browser::start().await?;
    // Hold the projection back for a moment, so that the page is certainly open before the
    // read side holds the order: what a user sees when the read side lags.
    let projection = HeldProjection::hold().await?;
    let opened = async {
        let order_id = api
            .place(&order_body(&[(&sku, 1, 1_250)], "GB", "tok_visa"))
            .await?;
        browser.open(&format!("/console/orders/{order_id}")).await?;
        let shown = browser.text("#live").await?;
        // Marks this document, and counts the live region's updates, to show there is no
        // reload.
        browser
            .js(
                "window.sameDocument = true; window.updates = 0;
                 new MutationObserver(() => window.updates++)
                   .observe(document.getElementById('live'), { childList: true });",
                Vec::new(),
            )
            .await?;
        Ok::<_, anyhow::Error>((order_id, shown))
    }
    .await;
    projection.release().await?;
    let (order_id, shown) = opened?;
    assert!(
        shown.contains("IN PROGRESS"),
        "a freshly placed order is in progress, not missing: {shown}"
    );

    browser
        .wait_text("the page to show CONFIRMED", "#order-status", |t| {
            t.contains("CONFIRMED")
        })
        .await?;
    let events = browser
        .wait_text(
            "the page to list all five events",
            "table.hops tbody",
            |t| t.contains("OrderConfirmed"),
        )
        .await?;
    let mut at = 0;
    for event in [
        "OrderPlaced",
        "PaymentAuthorized",
        "StockReserved",
        "ShipmentScheduled",
        "OrderConfirmed",
    ] {
        let found = events[at..]
            .find(event)
            .with_context(|| format!("{event} after the events before it in: {events}"))?;
        at += found;
    }
    let same = browser
        .js(
            "return [window.sameDocument === true, window.updates];",
            Vec::new(),
        )
        .await?;
    assert_eq!(same[0], json!(true), "the page was not reloaded");
    assert!(
        same[1].as_i64().unwrap_or(0) >= 1,
        "the live region was updated in place: {same}"
    );
    assert!(
        browser.text("#live").await?.contains("Waits for\nnothing"),
        "the saga waits for nothing once confirmed"
    );

    // The time slider, on the finished order.
    browser.open(&format!("/console/orders/{order_id}")).await?;
    let slider = browser.client.find(Locator::Css("#as-of")).await?;
    slider
        .send_keys(&char::from(fantoccini::key::Key::Home).to_string())
        .await?;
    browser
        .wait_text("the state as of OrderPlaced", "#state", |t| {
            t.contains("PENDING") && !t.contains("AUTHORIZED")
        })
        .await?;
    slider
        .send_keys(&char::from(fantoccini::key::Key::End).to_string())
        .await?;
    let end = browser
        .wait_text("the state as of OrderConfirmed", "#state", |t| {
            t.contains("CONFIRMED")
        })
        .await?;
    assert!(
        end.contains("SCHEDULED"),
        "shipment scheduled at the end: {end}"
    );
    browser.assert_accessible("an order's page").await?;
    browser.screenshot("console-order.png").await?;
    Ok(())
}

#[tokio::test]
async fn the_waterfall_shows_each_compensation() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let browser = Browser::start().await?;
    let paths = [
        (
            "tok_decline",
            5,
            "GB",
            "PAYMENT_DECLINED",
            vec!["OrderCancelled"],
        ),
        (
            "tok_visa",
            0,
            "GB",
            "OUT_OF_STOCK",
            vec!["PaymentRefunded", "OrderCancelled"],
        ),
        (
            "tok_visa",
            5,
            "AQ",
            "SHIPPING_FAILED",
            vec!["StockReleased", "PaymentRefunded", "OrderCancelled"],
        ),
    ];
    for (method, stock, country, reason, undos) in paths {
        let sku = unique_sku("console-undo");
        api.set_stock(&sku, stock).await?;
        let order_id = api
            .place(&order_body(&[(&sku, 1, 900)], country, method))
            .await?;
        browser.open(&format!("/console/orders/{order_id}")).await?;
        browser
            .wait_text(
                &format!("order {order_id} cancelled ({reason}) with its compensation completed"),
                "#order-status",
                |t| t.contains(reason) && t.contains("compensation COMPLETED"),
            )
            .await?;
        let compensations = browser
            .wait_text(
                &format!("the compensations of {reason}"),
                "table.hops tbody",
                |t| undos.iter().all(|u| t.contains(u)),
            )
            .await?;
        let marked = browser
            .js(
                "return [...document.querySelectorAll('table.hops tr.compensation th')]
                   .map(th => th.innerText);",
                Vec::new(),
            )
            .await?;
        for undo in &undos {
            assert!(
                marked.as_array().is_some_and(|rows| rows
                    .iter()
                    .any(|r| r.as_str().is_some_and(|r| r.contains(undo)))),
                "{reason}: {undo} is marked as a compensation: {marked} in {compensations}"
            );
        }
        let bars = browser
            .js(
                "return document.querySelectorAll('.waterfall rect.hop.compensation').length;",
                Vec::new(),
            )
            .await?;
        assert_eq!(
            bars,
            json!(undos.len()),
            "{reason}: one bar per compensation"
        );
    }
    Ok(())
}

#[tokio::test]
async fn a_dead_letter_is_redriven_from_the_page_after_a_dry_run() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    // `make test` starts the stack with the rule; a stack started otherwise gets it here.
    let standing = std::env::var("FAULT_INJECTION").is_ok_and(|r| r.contains(DEAD_LETTER_RULE));
    if !standing {
        restart("shipping", &[("FAULT_INJECTION", DEAD_LETTER_RULE)])?;
    }
    let sku = unique_sku("console-dead");
    api.set_stock(&sku, 5).await?;
    let order_id = api
        .place(&order_body(&[(&sku, 1, 700)], "GB", "tok_visa"))
        .await?;
    let browser = Browser::start().await?;
    let page = format!("/console/dead-letters?order={order_id}");
    wait_for(
        &format!("a dead letter of {order_id} on the page"),
        SAGA,
        || async {
            browser.open(&page).await?;
            let table = browser.text("main table").await?;
            Ok((table.contains(&order_id).then_some(()), table))
        },
    )
    .await?;
    browser.assert_accessible("the dead letters").await?;
    browser.screenshot("console-dead-letters.png").await?;

    // A wrong token is refused, with a message.
    let refused = redrive(&browser, &order_id, "not-the-token", DryRun::Yes).await?;
    assert!(
        refused.contains("operator token is wrong"),
        "a wrong token is refused: {refused}"
    );

    // A dry run says what it would do and does nothing.
    browser.open(&page).await?;
    let dry = redrive(&browser, &order_id, &operator_token(), DryRun::Yes).await?;
    assert!(
        dry.contains("Dry run") && dry.contains("StockReserved"),
        "the dry run lists the letter: {dry}"
    );
    assert_eq!(
        order_status(&api, &order_id).await?,
        "PENDING",
        "a dry run changes nothing"
    );

    // The redrive completes the order.
    browser.open(&page).await?;
    let done = redrive(&browser, &order_id, &operator_token(), DryRun::No).await?;
    assert!(done.contains("went through"), "redriven: {done}");
    let confirmed = wait_order_status(&api, &order_id, "CONFIRMED").await;
    if !standing {
        restart("shipping", &[])?;
    }
    confirmed
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DryRun {
    Yes,
    No,
}

/// Fills the open dead-letters page's form for every letter of `order` and sends it; returns
/// the answer page's text.
async fn redrive(
    browser: &Browser,
    order: &str,
    token: &str,
    dry_run: DryRun,
) -> anyhow::Result<String> {
    browser.select("#what", &format!("order:{order}")).await?;
    if dry_run == DryRun::No {
        // The dry run is checked by default.
        browser.click("#dry-run").await?;
    }
    browser.fill("#operator-token", token).await?;
    browser.submit("/console/dead-letters/redrive").await
}

/// Fills the open reviews page's form to approve `order` and sends it; returns the answer
/// page's text.
async fn decide(browser: &Browser, order: &str, token: &str) -> anyhow::Result<String> {
    browser.select("#review", order).await?;
    browser.fill("#reviewer", "ada@example.org").await?;
    browser.fill("#reviewer-token", token).await?;
    browser.submit("/console/reviews/decision").await
}

fn operator_token() -> String {
    std::env::var("CONSOLE_OPERATOR_TOKEN").unwrap_or_else(|_| "dev-console-operator".into())
}

fn reviewer_token() -> String {
    std::env::var("PAYMENT_REVIEWER_TOKEN").unwrap_or_else(|_| "dev-payment-reviewer".into())
}

#[tokio::test]
async fn a_review_is_approved_from_the_page_and_the_order_completes() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let sku = unique_sku("console-review");
    api.set_stock(&sku, 5).await?;
    let order_id = api
        .place(&order_body(&[(&sku, 1, 1_500)], "GB", "tok_review"))
        .await?;
    let browser = Browser::start().await?;
    wait_for(
        &format!("the review of {order_id} on the page"),
        SAGA,
        || async {
            browser.open("/console/reviews").await?;
            let table = browser.text("main").await?;
            Ok((table.contains(&order_id).then_some(()), table))
        },
    )
    .await?;
    browser.assert_accessible("the reviews").await?;

    let refused = decide(&browser, &order_id, "not-the-token").await?;
    assert!(
        refused.contains("reviewer token is wrong"),
        "a wrong token is refused: {refused}"
    );

    browser.open("/console/reviews").await?;
    let decided = decide(&browser, &order_id, &reviewer_token()).await?;
    assert!(decided.contains("approved"), "decided: {decided}");
    wait_order_status(&api, &order_id, "CONFIRMED").await
}

#[tokio::test]
async fn every_page_passes_the_accessibility_engine() -> anyhow::Result<()> {
    let api = Api::from_env()?;
    let sku = unique_sku("console-a11y");
    api.set_stock(&sku, 5).await?;
    let order_id = api
        .place(&order_body(&[(&sku, 1, 400)], "GB", "tok_visa"))
        .await?;
    wait_order_status(&api, &order_id, "CONFIRMED").await?;
    let browser = Browser::start().await?;
    for (name, path) in [
        ("the orders", "/".to_owned()),
        ("an order", format!("/console/orders/{order_id}")),
        ("the stuck sagas", "/console/stuck".to_owned()),
        ("the dead letters", "/console/dead-letters".to_owned()),
        ("the reviews", "/console/reviews".to_owned()),
        ("the system as of a moment", "/console/system".to_owned()),
    ] {
        browser.open(&path).await?;
        browser.assert_accessible(name).await?;
    }
    browser.open(&format!("/?customer={}", "cust-42")).await?;
    let listed = browser.text("main").await?;
    assert!(listed.contains("Orders per status"), "{listed}");
    browser.open("/").await?;
    browser.screenshot("console-orders.png").await?;
    Ok(())
}
