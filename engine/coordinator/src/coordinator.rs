//! The [`Coordinator`]: one federation's configuration and tables, and the steps of a question
//! run in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use tessera_disclosure::{Ledger, ReleaseLog};
use tessera_protocol::RequestContext;
use tessera_schemas::Catalog;

use crate::config::FederationConfig;
use crate::decompose::Dominance;
use crate::error::QueryError;
use crate::fanout::links::{NodeSet, TrustLink};
use crate::fanout::{FederatedQueryPlanner, FederatedScan};
use crate::parse::parse;
use crate::protect::releases::{check_budget, default_release_log};
use crate::result::{PreparedQuery, QueryResult};
use crate::rewrite::{Rewriter, Tables};

/// The coordinator for one federation.
pub struct Coordinator {
    ctx: SessionContext,
    nodes: Arc<NodeSet>,
    config: FederationConfig,
    tables: Tables,
    /// The project's release log, when disclosure control is on.
    release_log: Option<ReleaseLog>,
    /// Whether the trusts recognise this coordinator (mutual TLS), so that they send the
    /// contributions and cell keys disclosure control needs.
    recognised: bool,
    next_query: AtomicU64,
}

impl Coordinator {
    /// A coordinator for the trusts in `config`, over the tables in `catalog`; it presents the
    /// certificate in `[tls]` to every node.
    pub fn new(config: FederationConfig, catalog: &Catalog) -> Result<Coordinator, QueryError> {
        Coordinator::with_runtime(config, catalog, Arc::default())
    }

    /// [`Coordinator::new`] with its central plans in `runtime` (e.g. one with a memory limit).
    pub fn with_runtime(
        config: FederationConfig,
        catalog: &Catalog,
        runtime: Arc<RuntimeEnv>,
    ) -> Result<Coordinator, QueryError> {
        config.check().map_err(QueryError::connection)?;
        let nodes = NodeSet::from_config(&config).map_err(QueryError::connection)?;
        let recognised = config.tls.is_some();
        Coordinator::over(config, catalog, nodes, recognised, runtime)
    }

    /// A coordinator whose trusts answer through `links` (e.g. a node answering its own analysts
    /// through this pipeline) and recognise it as their coordinator; its central plans run in
    /// `runtime` (e.g. a node's, with a memory limit and no spilling).
    pub fn with_links(
        config: FederationConfig,
        catalog: &Catalog,
        links: Vec<TrustLink>,
        runtime: Arc<RuntimeEnv>,
    ) -> Result<Coordinator, QueryError> {
        config.disclosure.check().map_err(QueryError::connection)?;
        let nodes = NodeSet::new(links, &config);
        Coordinator::over(config, catalog, nodes, true, runtime)
    }

    fn over(
        config: FederationConfig,
        catalog: &Catalog,
        nodes: NodeSet,
        recognised: bool,
        runtime: Arc<RuntimeEnv>,
    ) -> Result<Coordinator, QueryError> {
        let nodes = Arc::new(nodes);
        // No table functions (`generate_series` would make rows out of nothing at the centre).
        let state = SessionStateBuilder::new_with_default_features()
            .with_config(tessera_policy::session::session_config())
            .with_runtime_env(runtime)
            .with_table_functions(Default::default())
            .with_query_planner(Arc::new(FederatedQueryPlanner { nodes: nodes.clone() }))
            .build();
        let ctx = SessionContext::new_with_state(state);
        crate::catalog::register_federated(&ctx, catalog)?;
        let release_log = config.disclosure.is_on().then(|| {
            let project = &config.federation.project;
            ReleaseLog::new(
                config
                    .disclosure
                    .release_log
                    .clone()
                    .unwrap_or_else(|| default_release_log(project)),
            )
        });
        Ok(Coordinator {
            ctx,
            nodes,
            release_log,
            tables: Tables::of(catalog),
            recognised,
            config,
            next_query: AtomicU64::new(1),
        })
    }

    /// The DataFusion session (federated tables registered; scanning them directly fails).
    pub fn session(&self) -> &SessionContext {
        &self.ctx
    }

    /// The trusts, in configuration order.
    pub fn trusts(&self) -> Vec<String> {
        self.nodes.names().collect()
    }

    /// The context of a question asked by this coordinator's configured requester (or `$USER`)
    /// in its project.
    pub fn context(&self) -> RequestContext {
        let requester = match self.config.federation.requester.as_str() {
            "" => std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
            r => r.to_string(),
        };
        RequestContext::new(requester, self.config.federation.project.clone())
    }

    /// What `context`'s project has spent at each trust and may still spend (`Ok(None)`: the
    /// trust keeps no privacy budget; `Err`: why it did not say), asked of all trusts at once.
    pub async fn budget(
        &self,
        context: &RequestContext,
    ) -> Vec<(String, Result<Option<tessera_protocol::BudgetNote>, String>)> {
        let request = tessera_protocol::FragmentRequest::with_context(String::new(), self.for_question(context));
        let timeout = self.nodes.timeout();
        let asks = self.nodes.links().map(|link| {
            let request = &request;
            async move {
                let answer = crate::fanout::links::within(&link.name, timeout, link.service.budget(request)).await;
                (link.name.clone(), answer.map_err(|e| e.to_string()))
            }
        });
        futures::future::join_all(asks).await
    }

    /// `context` completed for one question: a query id and the trusts' deadline.
    fn for_question(&self, context: &RequestContext) -> RequestContext {
        let mut context = context.clone();
        if context.query_id.is_empty() {
            let n = self.next_query.fetch_add(1, Ordering::Relaxed);
            context.query_id = format!("tessera-{}-{n}", chrono::Utc::now().timestamp_millis());
        }
        let deadline = self.nodes.timeout().as_millis() as u64;
        context.timeout_ms = Some(context.timeout_ms.map_or(deadline, |t| t.min(deadline)));
        context
    }

    /// Steps 1–6 as a logical plan: the central plan with a [`FederatedScan`] wherever trusts
    /// are asked, and disclosure control around every merged value (what it did goes to `ledger`).
    pub async fn plan(
        &self,
        context: &RequestContext,
        sql: &str,
        ledger: Arc<Ledger>,
    ) -> Result<LogicalPlan, QueryError> {
        let state = self.ctx.state();
        let plan = parse(&state, sql).await?;
        let disclosure = &self.config.disclosure;
        let protect = disclosure.is_on();
        // Trusts send contributions and cell keys only to a coordinator they recognise.
        let needs_trust = protect && (disclosure.checks_dominance() || disclosure.perturbs());
        let rewriter = Rewriter {
            state: &state,
            tables: &self.tables,
            context: self.for_question(context),
            disclosure: protect.then_some((disclosure, ledger)),
            dominance: match (needs_trust, self.recognised) {
                (false, _) => Dominance::Off,
                (true, true) => Dominance::On,
                (true, false) => Dominance::NoCredentials,
            },
            private: disclosure.is_dp(),
        };
        Ok(rewriter.federate(plan)?)
    }

    /// Whether `sql` is an EXPLAIN statement.
    pub fn is_explain(sql: &str) -> bool {
        crate::parse::is_explain(sql)
    }

    /// The central plan and the exact fragment SQL each trust will receive.
    pub async fn explain(&self, sql: &str) -> Result<String, QueryError> {
        let plan = self.plan(&self.context(), sql, Arc::default()).await?;
        let optimized = self.ctx.state().optimize(&plan)?;
        let mut fragments = Vec::new();
        plan.apply(|node| {
            if let Some(scan) = FederatedScan::of(node) {
                fragments.push(scan.sql.clone());
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        let mut text = format!(
            "Central plan (runs at the coordinator):\n{}\n",
            optimized.display_indent()
        );
        let trusts = self.trusts().join(", ");
        for (i, fragment) in fragments.iter().enumerate() {
            text.push_str(&format!("\nFragment {} (sent to {trusts}):\n  {fragment}\n", i + 1));
        }
        if fragments.is_empty() {
            text.push_str("\nNo trust is asked: the query reads only public reference data.\n");
        }
        Ok(text)
    }

    /// Runs `sql` for this coordinator's own [`context`](Self::context).
    pub async fn query(&self, sql: &str) -> Result<QueryResult, QueryError> {
        self.query_as(&self.context(), sql).await
    }

    /// Runs `sql` on behalf of `context` across every trust and merges the answers.
    pub async fn query_as(&self, context: &RequestContext, sql: &str) -> Result<QueryResult, QueryError> {
        self.prepare_as(context, sql).await?.run().await
    }

    /// Plans `sql` on behalf of `context` down to an executable plan, and checks the project's
    /// budget, without asking any trust yet. The context's project must be this coordinator's:
    /// its budget and release log are the ones charged.
    pub async fn prepare_as(&self, context: &RequestContext, sql: &str) -> Result<PreparedQuery, QueryError> {
        let project = &self.config.federation.project;
        if context.project != *project {
            return Err(QueryError::query(format!(
                "this coordinator answers for project {project:?}, not {:?}",
                context.project
            )));
        }
        let started = Instant::now();
        let ledger = Arc::new(Ledger::default());
        let plan = self.plan(context, sql, ledger.clone()).await?;
        let physical = self.ctx.state().create_physical_plan(&plan).await?;
        let log = self
            .release_log
            .clone()
            .filter(|_| ledger.about_people.load(Ordering::Relaxed));
        if let Some(log) = &log {
            check_budget(log, &ledger, &self.config.disclosure, &self.config.federation.project)?;
        }
        Ok(PreparedQuery {
            physical,
            task: self.ctx.task_ctx(),
            started,
            ledger,
            disclosure: self.config.disclosure.clone(),
            log,
            sql: sql.to_string(),
        })
    }
}
