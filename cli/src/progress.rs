//! A progress line per trust, on a terminal, for queries that take longer than half a second.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use tessera_coordinator::NodeOutcome;
use tessera_coordinator::{Coordinator, QueryError, QueryResult, RequestContext};

/// Runs `sql` on behalf of `context`, showing each trust's state on stderr if it is a terminal
/// and the query is slow.
pub async fn with_progress(
    coordinator: &Coordinator,
    context: &RequestContext,
    sql: &str,
) -> Result<QueryResult, QueryError> {
    let prepared = coordinator.prepare_as(context, sql).await?;
    if !std::io::stderr().is_terminal() {
        return prepared.run().await;
    }
    let watch = prepared.watch();
    let run = prepared.run();
    tokio::pin!(run);
    tokio::select! {
        result = &mut run => return result,
        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
    }
    let bars = MultiProgress::new();
    let style = ProgressStyle::with_template("{spinner} {prefix:>6} {msg}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    let lines = watch
        .states()
        .into_iter()
        .map(|(trust, _)| {
            let bar = bars.add(ProgressBar::new_spinner().with_style(style.clone()).with_prefix(trust));
            bar.set_message("working…");
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        })
        .collect::<Vec<_>>();
    let mut ticker = tokio::time::interval(Duration::from_millis(100));
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            _ = ticker.tick() => {
                for ((_, state), bar) in watch.states().into_iter().zip(&lines) {
                    match state {
                        Some(NodeOutcome::Answered { groups, elapsed, .. }) => {
                            bar.finish_with_message(format!("answered {groups} groups in {:.1} s", elapsed.as_secs_f64()))
                        }
                        Some(NodeOutcome::Failed(reason)) => bar.finish_with_message(reason),
                        None => {}
                    }
                }
            }
        }
    };
    for bar in lines {
        bar.finish_and_clear();
    }
    result
}
