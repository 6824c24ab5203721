//! A job's budget: the limits it may not pass (`limits` of the request, `LIMIT_*` of the worker), the price table
//! that turns tokens into dollars (built in, `PRICES_FILE` over it), and the check made before each model call.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::event::{BudgetUsed, ErrorCode, Failure, Usage};

/// The request's `limits`, or the worker's `LIMIT_*` where the request has none. Unset: no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Budget {
    pub max_tokens: Option<u64>,
    pub max_cost_usd: Option<f64>,
    pub max_model_calls: Option<u64>,
}

impl Budget {
    pub fn is_unlimited(&self) -> bool {
        self.max_tokens.is_none() && self.max_cost_usd.is_none() && self.max_model_calls.is_none()
    }

    /// Each limit the request left out taken from `defaults`.
    pub fn or(self, defaults: Budget) -> Budget {
        Budget {
            max_tokens: self.max_tokens.or(defaults.max_tokens),
            max_cost_usd: self.max_cost_usd.or(defaults.max_cost_usd),
            max_model_calls: self.max_model_calls.or(defaults.max_model_calls),
        }
    }

    /// The limit `used` has reached, if any: a call may start only while every figure is below its limit.
    pub fn reached(&self, used: &BudgetUsed) -> Option<Exceeded> {
        let limit = if self.max_model_calls.is_some_and(|max| used.model_calls >= max) {
            "maxModelCalls"
        } else if self.max_tokens.is_some_and(|max| used.tokens >= max) {
            "maxTokens"
        } else if self.max_cost_usd.is_some_and(|max| used.cost_usd >= max) {
            "maxCostUsd"
        } else {
            return None;
        };
        Some(Exceeded { limit, used: *used })
    }
}

/// The limit a job reached, and what it had used then.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Exceeded {
    pub limit: &'static str,
    pub used: BudgetUsed,
}

impl Exceeded {
    pub fn message(&self) -> String {
        format!(
            "the job reached its {} limit (used {} tokens, {} model calls, ${:.6}); the broker refused the next \
             model call",
            self.limit, self.used.tokens, self.used.model_calls, self.used.cost_usd
        )
    }

    pub fn failure(&self) -> Failure {
        let mut failure = Failure::new(ErrorCode::BudgetExceeded, self.message());
        failure.limit = Some(self.limit);
        failure.used = Some(Box::new(self.used));
        failure
    }
}

/// Dollars per million tokens of one model.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Price {
    pub input: f64,
    pub output: f64,
    #[serde(default)]
    pub cache_read: f64,
    #[serde(default)]
    pub cache_write: f64,
}

impl Price {
    const fn new(input: f64, output: f64, cache_read: f64, cache_write: f64) -> Price {
        Price {
            input,
            output,
            cache_read,
            cache_write,
        }
    }

    pub fn cost(&self, usage: &Usage) -> f64 {
        (usage.input_tokens as f64 * self.input
            + usage.output_tokens as f64 * self.output
            + usage.cache_read_tokens as f64 * self.cache_read
            + usage.cache_creation_tokens as f64 * self.cache_write)
            / 1_000_000.0
    }
}

/// The vendors' list prices of the model families the worker's CLIs use by default, by model-name prefix. A model
/// matches its longest prefix; one that matches none costs nothing, so an operator who budgets in dollars for
/// another model lists it in `PRICES_FILE`.
const BUILT_IN: &[(&str, Price)] = &[
    ("claude-opus-4", Price::new(15.0, 75.0, 1.5, 18.75)),
    ("claude-sonnet-4", Price::new(3.0, 15.0, 0.3, 3.75)),
    ("claude-haiku-4", Price::new(1.0, 5.0, 0.1, 1.25)),
    ("claude-3-5-haiku", Price::new(0.8, 4.0, 0.08, 1.0)),
    ("gpt-5", Price::new(1.25, 10.0, 0.125, 0.0)),
    ("gpt-5-mini", Price::new(0.25, 2.0, 0.025, 0.0)),
    ("gpt-4.1", Price::new(2.0, 8.0, 0.5, 0.0)),
    ("gemini-2.5-pro", Price::new(1.25, 10.0, 0.31, 0.0)),
    ("gemini-2.5-flash", Price::new(0.3, 2.5, 0.075, 0.0)),
];

#[derive(Clone, Debug, PartialEq)]
pub struct Prices(BTreeMap<String, Price>);

impl Default for Prices {
    fn default() -> Self {
        Prices(
            BUILT_IN
                .iter()
                .map(|(name, price)| (name.to_string(), *price))
                .collect(),
        )
    }
}

impl Prices {
    /// The built-in table with `json` (`{"<model prefix>": {"input": …, "output": …, "cacheRead": …,
    /// "cacheWrite": …}}`, dollars per million tokens) over it.
    pub fn with_overrides(json: &str) -> Result<Prices, String> {
        let overrides: BTreeMap<String, Price> = serde_json::from_str(json).map_err(|e| e.to_string())?;
        let mut prices = Prices::default();
        for (model, price) in overrides {
            let rates = [price.input, price.output, price.cache_read, price.cache_write];
            if rates.iter().any(|r| !r.is_finite() || *r < 0.0) {
                return Err(format!("{model}: prices must be finite numbers of at least 0"));
            }
            prices.0.insert(model, price);
        }
        Ok(prices)
    }

    pub fn of(&self, model: &str) -> Option<&Price> {
        self.0
            .iter()
            .filter(|(prefix, _)| model.starts_with(prefix.as_str()))
            .max_by_key(|(prefix, _)| prefix.len())
            .map(|(_, price)| price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn used(tokens: u64, cost_usd: f64, model_calls: u64) -> BudgetUsed {
        BudgetUsed {
            tokens,
            cost_usd,
            model_calls,
        }
    }

    #[test]
    fn a_limit_is_reached_when_the_figure_gets_to_it() {
        let budget = Budget {
            max_tokens: Some(100),
            max_cost_usd: Some(0.5),
            max_model_calls: Some(3),
        };
        assert_eq!(budget.reached(&used(99, 0.49, 2)), None);
        assert_eq!(budget.reached(&used(100, 0.0, 0)).unwrap().limit, "maxTokens");
        assert_eq!(budget.reached(&used(0, 0.5, 0)).unwrap().limit, "maxCostUsd");
        assert_eq!(budget.reached(&used(0, 0.0, 3)).unwrap().limit, "maxModelCalls");
        assert_eq!(Budget::default().reached(&used(u64::MAX, 1e9, u64::MAX)), None);
    }

    #[test]
    fn the_request_limits_win_over_the_worker_defaults() {
        let request = Budget {
            max_tokens: Some(10),
            ..Budget::default()
        };
        let defaults = Budget {
            max_tokens: Some(1000),
            max_model_calls: Some(5),
            ..Budget::default()
        };
        assert_eq!(
            request.or(defaults),
            Budget {
                max_tokens: Some(10),
                max_cost_usd: None,
                max_model_calls: Some(5)
            }
        );
    }

    #[test]
    fn a_model_takes_the_price_of_its_longest_prefix_and_the_file_overrides_it() {
        let prices = Prices::default();
        assert_eq!(prices.of("gpt-5-mini-2025").unwrap().input, 0.25);
        assert_eq!(prices.of("gpt-5.5").unwrap().input, 1.25);
        assert_eq!(prices.of("mock-model"), None);
        let usage = Usage {
            input_tokens: 1_000_000,
            output_tokens: 100_000,
            ..Usage::default()
        };
        assert!((prices.of("claude-sonnet-4-5").unwrap().cost(&usage) - 4.5).abs() < 1e-9);

        let prices = Prices::with_overrides(r#"{"mock-model": {"input": 2, "output": 4}}"#).unwrap();
        assert_eq!(prices.of("mock-model").unwrap().output, 4.0);
        assert!(prices.of("claude-opus-4-1").is_some(), "the built-in prices stay");
        assert!(Prices::with_overrides(r#"{"m": {"input": -1, "output": 1}}"#).is_err());
        assert!(Prices::with_overrides(r#"{"m": {"inputs": 1, "output": 1}}"#).is_err());
    }
}
