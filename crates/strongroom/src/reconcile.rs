//! `strongroom reconcile`: one reconciliation pass from the console —
//! every account compared with what the chains show, the run kept (with
//! its findings, or incomplete with why) as the server's job keeps it.

use crate::Failure;
use crate::config::Config;
use crate::serve::runtime;

/// Runs one pass. Exit 0: every account compared, nothing found; exit 3:
/// findings (each printed; a wallet with an outflow Strongroom did not
/// sign is frozen); exit 1: the pass could not compare every account.
pub(crate) fn run(c: Config) -> Result<(), Failure> {
    let networks = c.clone();
    let run = runtime()?.block_on(async {
        let (svc, store) = crate::serve::build_service(&c).await?;
        let connected = crate::serve::connect_ethereum(&svc, &networks).await;
        let run = match connected {
            Ok(()) => svc
                .reconcile_chains()
                .await
                .map_err(|e| Failure::Runtime(anyhow::anyhow!("the pass failed: {e}"))),
            Err(e) => Err(e),
        };
        store.close().await;
        run
    })?;
    let kept = if run.id.is_empty() {
        "(clean like the last run kept: not kept again)".to_owned()
    } else {
        run.id.clone()
    };
    println!(
        "reconciliation {kept}: {} accounts compared, {} findings",
        run.accounts,
        run.findings.len()
    );
    for f in &run.findings {
        let frozen = f
            .freeze
            .as_deref()
            .map(|z| format!(" (wallet frozen: freeze {z})"))
            .unwrap_or_default();
        println!("finding {} {}: {}{frozen}", f.kind, f.account, f.detail);
    }
    if run.findings.is_empty() {
        Ok(())
    } else {
        Err(Failure::Broken(format!(
            "{} findings: see GET /v1/reconciliation/runs and the runbook",
            run.findings.len()
        )))
    }
}
