//! Variance and standard deviation under differential privacy: each trust releases noisy
//! sums (`count(x)`, `sum(x)`, `sum(x·x)`, each with its own calibrated noise), and the centre
//! evaluates the statistic from the merged sums. This is post-processing of released values,
//! so it costs nothing beyond the three sums; a noisy centred sum below zero is read as zero.

use datafusion::arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::functions::math::expr_fn::sqrt;
use datafusion::logical_expr::{cast, lit, when, Expr};

use crate::decompose::{Context, Decomposition};
use crate::moments::Statistic;

impl Decomposition {
    /// `statistic` of `args` from noisy sums (variances and standard deviations only).
    pub(crate) fn noisy_moments(
        &mut self,
        ctx: &Context,
        statistic: Statistic,
        args: Vec<Expr>,
        filter: Option<Box<Expr>>,
    ) -> Result<Expr> {
        let [x] = args.as_slice() else {
            return Err(DataFusionError::Plan(format!(
                "with differential privacy Tessera gives variances and standard deviations; {statistic:?} of two \
                 variables is not available yet (ask for avg(x), avg(y) and avg(x * y))"
            )));
        };
        let real = cast(x.clone(), DataType::Float64);
        let mut total = |name: &str, arg: Expr| -> Result<Expr> {
            let partial = self.partial(ctx.call(name, vec![arg], false, filter.clone())?);
            Ok(cast(
                self.merge(ctx.call("sum", vec![cast(partial, DataType::Float64)], false, None)?),
                DataType::Float64,
            ))
        };
        // The same count and sum as an avg(x) beside it: one noisy value each.
        let n = total("count", x.clone())?;
        let sum = total("sum", x.clone())?;
        let squares = total("sum", real.clone() * real)?;
        let centred = squares - sum.clone() * sum / n.clone();
        let centred = when(centred.clone().lt(lit(0.0)), lit(0.0)).otherwise(centred)?;
        let (least, divisor) = match statistic {
            Statistic::VarSamp | Statistic::StddevSamp => (1.0, n.clone() - lit(1.0)),
            _ => (0.0, n.clone()),
        };
        let variance = when(n.gt(lit(least)), centred / divisor).end()?;
        Ok(match statistic {
            Statistic::StddevSamp | Statistic::StddevPop => sqrt(variance),
            _ => variance,
        })
    }
}
