//! Exact merging of second-moment statistics (variance, covariance, correlation, regression).
//!
//! Each trust returns, per group, `n`, the means of x and y and the co-moments
//! `Sxx = Σ(x-x̄)²`, `Syy`, `Sxy` (DataFusion's `regr_count/avgx/avgy/sxx/syy/sxy`). The centre
//! combines them with Chan et al.'s pairwise update, which is numerically stable (no
//! sum-of-squares cancellation), then evaluates the requested statistic with DataFusion's own
//! rules for NULL results.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature, Volatility};

/// The statistic a merge produces from the combined moments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Statistic {
    VarSamp,
    VarPop,
    StddevSamp,
    StddevPop,
    CovarSamp,
    CovarPop,
    Corr,
    RegrSlope,
    RegrIntercept,
    RegrR2,
    RegrCount,
    RegrAvgx,
    RegrAvgy,
    RegrSxx,
    RegrSyy,
    RegrSxy,
}

impl Statistic {
    /// The statistic computed by DataFusion aggregate `name` (canonical name), if it is one.
    pub fn of_aggregate(name: &str) -> Option<Statistic> {
        use Statistic::*;
        Some(match name {
            "var" => VarSamp,
            "var_pop" => VarPop,
            "stddev" => StddevSamp,
            "stddev_pop" => StddevPop,
            "covar_samp" => CovarSamp,
            "covar_pop" => CovarPop,
            "corr" => Corr,
            "regr_slope" => RegrSlope,
            "regr_intercept" => RegrIntercept,
            "regr_r2" => RegrR2,
            "regr_count" => RegrCount,
            "regr_avgx" => RegrAvgx,
            "regr_avgy" => RegrAvgy,
            "regr_sxx" => RegrSxx,
            "regr_syy" => RegrSyy,
            "regr_sxy" => RegrSxy,
            _ => return None,
        })
    }

    /// Whether the statistic involves only one variable.
    pub fn is_univariate(self) -> bool {
        matches!(
            self,
            Statistic::VarSamp | Statistic::VarPop | Statistic::StddevSamp | Statistic::StddevPop
        )
    }

    /// Whether the statistic describes a relationship between two variables (needs residual df).
    pub fn is_model(self) -> bool {
        use Statistic::*;
        matches!(self, CovarSamp | CovarPop | Corr | RegrSlope | RegrIntercept | RegrR2)
    }

    /// Whether the user's arguments are `(y, x)` (the regr_* family) rather than `(x, y)`.
    pub fn takes_y_first(self) -> bool {
        use Statistic::*;
        matches!(
            self,
            RegrSlope | RegrIntercept | RegrR2 | RegrCount | RegrAvgx | RegrAvgy | RegrSxx | RegrSyy | RegrSxy
        )
    }

    fn name(self) -> &'static str {
        use Statistic::*;
        match self {
            VarSamp => "tessera_merge_var_samp",
            VarPop => "tessera_merge_var_pop",
            StddevSamp => "tessera_merge_stddev_samp",
            StddevPop => "tessera_merge_stddev_pop",
            CovarSamp => "tessera_merge_covar_samp",
            CovarPop => "tessera_merge_covar_pop",
            Corr => "tessera_merge_corr",
            RegrSlope => "tessera_merge_regr_slope",
            RegrIntercept => "tessera_merge_regr_intercept",
            RegrR2 => "tessera_merge_regr_r2",
            RegrCount => "tessera_merge_regr_count",
            RegrAvgx => "tessera_merge_regr_avgx",
            RegrAvgy => "tessera_merge_regr_avgy",
            RegrSxx => "tessera_merge_regr_sxx",
            RegrSyy => "tessera_merge_regr_syy",
            RegrSxy => "tessera_merge_regr_sxy",
        }
    }
}

/// The merge aggregate: six Float64 inputs `(n, x̄, ȳ, Sxx, Syy, Sxy)`, one statistic out.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MergeMoments {
    statistic: Statistic,
    signature: Signature,
}

impl MergeMoments {
    /// The merge UDAF for `statistic`.
    pub fn udaf(statistic: Statistic) -> Arc<AggregateUDF> {
        Arc::new(AggregateUDF::from(MergeMoments {
            statistic,
            signature: Signature::exact(vec![DataType::Float64; 6], Volatility::Immutable),
        }))
    }
}

impl AggregateUDFImpl for MergeMoments {
    fn name(&self) -> &str {
        self.statistic.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(match self.statistic {
            Statistic::RegrCount => DataType::UInt64,
            _ => DataType::Float64,
        })
    }

    fn accumulator(&self, _acc_args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(MomentsAccumulator {
            statistic: self.statistic,
            moments: Moments::default(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        Ok(["n", "mean_x", "mean_y", "sxx", "syy", "sxy"]
            .iter()
            .map(|part| Arc::new(Field::new(format!("{}[{part}]", args.name), DataType::Float64, true)))
            .collect())
    }
}

/// Count, means and co-moments of a set of (x, y) pairs.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub struct Moments {
    pub n: f64,
    pub mean_x: f64,
    pub mean_y: f64,
    pub sxx: f64,
    pub syy: f64,
    pub sxy: f64,
}

impl Moments {
    /// Chan et al.'s pairwise combination of two disjoint sets.
    pub fn combine(&mut self, other: &Moments) {
        if other.n == 0.0 {
            return;
        }
        if self.n == 0.0 {
            *self = *other;
            return;
        }
        let n = self.n + other.n;
        let dx = other.mean_x - self.mean_x;
        let dy = other.mean_y - self.mean_y;
        let weight = self.n * other.n / n;
        self.mean_x += dx * other.n / n;
        self.mean_y += dy * other.n / n;
        self.sxx += other.sxx + dx * dx * weight;
        self.syy += other.syy + dy * dy * weight;
        self.sxy += other.sxy + dx * dy * weight;
        self.n = n;
    }

    /// The statistic, NULL where DataFusion's own aggregate would give NULL.
    pub fn evaluate(&self, statistic: Statistic) -> ScalarValue {
        use Statistic::*;
        let n = self.n;
        let value = |ok: bool, v: f64| ScalarValue::Float64(ok.then_some(v));
        let (var_pop_x, var_pop_y) = (self.sxx / n, self.syy / n);
        match statistic {
            VarSamp => value(n > 1.0, self.sxx / (n - 1.0)),
            VarPop => value(n > 0.0, self.sxx / n),
            StddevSamp => value(n > 1.0, (self.sxx / (n - 1.0)).sqrt()),
            StddevPop => value(n > 0.0, (self.sxx / n).sqrt()),
            CovarSamp => value(n > 1.0, self.sxy / (n - 1.0)),
            CovarPop => value(n > 0.0, self.sxy / n),
            Corr => value(
                n >= 2.0 && self.sxx != 0.0 && self.syy != 0.0,
                self.sxy / (self.sxx.sqrt() * self.syy.sqrt()),
            ),
            RegrSlope => value(n > 1.0 && var_pop_x != 0.0, self.sxy / self.sxx),
            RegrIntercept => value(
                n > 1.0 && var_pop_x != 0.0,
                self.mean_y - self.sxy / self.sxx * self.mean_x,
            ),
            RegrR2 => value(
                n > 1.0 && var_pop_x != 0.0 && var_pop_y != 0.0,
                (self.sxy * self.sxy) / (self.sxx * self.syy),
            ),
            RegrCount => ScalarValue::UInt64(Some(n as u64)),
            RegrAvgx => value(n >= 1.0, self.mean_x),
            RegrAvgy => value(n >= 1.0, self.mean_y),
            RegrSxx => value(n >= 1.0, self.sxx),
            RegrSyy => value(n >= 1.0, self.syy),
            RegrSxy => value(n >= 1.0, self.sxy),
        }
    }
}

#[derive(Debug)]
struct MomentsAccumulator {
    statistic: Statistic,
    moments: Moments,
}

impl MomentsAccumulator {
    fn absorb(&mut self, columns: &[ArrayRef]) -> Result<()> {
        let columns = columns
            .iter()
            .map(|c| cast(c, &DataType::Float64))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let values = columns
            .iter()
            .map(|c| c.as_primitive::<Float64Type>())
            .collect::<Vec<_>>();
        for row in 0..values[0].len() {
            if values.iter().any(|v| v.is_null(row)) || values[0].value(row) == 0.0 {
                continue;
            }
            let part = Moments {
                n: values[0].value(row),
                mean_x: values[1].value(row),
                mean_y: values[2].value(row),
                sxx: values[3].value(row),
                syy: values[4].value(row),
                sxy: values[5].value(row),
            };
            self.moments.combine(&part);
        }
        Ok(())
    }
}

impl Accumulator for MomentsAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        self.absorb(values)
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        self.absorb(states)
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let m = self.moments;
        Ok([m.n, m.mean_x, m.mean_y, m.sxx, m.syy, m.sxy]
            .into_iter()
            .map(|v| ScalarValue::Float64(Some(v)))
            .collect())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        Ok(self.moments.evaluate(self.statistic))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
    }
}
