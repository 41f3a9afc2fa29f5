//! The model: logistic regression over named numeric features.
//!
//! `p = 1 / (1 + e^-(bias + Σ wᵢ·xᵢ))`. The weights file names its features, so a request is a
//! JSON object keyed by feature name and a typo is reported instead of silently scored as 0.

use std::path::Path;

use serde::Deserialize;
use serde_json::{Map, Value};

/// Why the weights file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// The file is not the expected JSON.
    #[error("parsing {path}: {source}")]
    Parse {
        path: String,
        source: serde_json::Error,
    },
    /// The JSON is well-formed but not a usable model.
    #[error("invalid model: {0}")]
    Invalid(String),
}

/// Why a request's features could not be scored (answered with 400).
#[derive(Debug, PartialEq, thiserror::Error)]
pub enum InputError {
    /// The body is not JSON.
    #[error("body is not valid JSON: {0}")]
    Json(String),
    /// The body is JSON but not an object.
    #[error("body must be a JSON object of feature name to number")]
    NotAnObject,
    /// A feature the model needs is absent.
    #[error("missing feature {0:?}")]
    Missing(String),
    /// A key that is not one of the model's features.
    #[error("unknown feature {0:?} (expected: {1})")]
    Unknown(String, String),
    /// A feature value that is not a finite number (or boolean).
    #[error("feature {0:?} must be a number or boolean")]
    NotNumeric(String),
}

/// The weights file as stored.
#[derive(Debug, Deserialize)]
struct ModelFile {
    #[serde(default)]
    name: String,
    features: Vec<String>,
    weights: Vec<f64>,
    bias: f64,
    #[serde(default = "default_threshold")]
    threshold: f64,
}

fn default_threshold() -> f64 {
    0.5
}

/// A loaded, validated model.
#[derive(Debug, Clone)]
pub struct Model {
    /// The model's name (for logs).
    pub name: String,
    features: Vec<String>,
    weights: Vec<f64>,
    bias: f64,
    threshold: f64,
}

/// The answer to one prediction.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Prediction {
    /// Probability of churn in [0, 1].
    pub probability: f64,
    /// Whether the probability reaches the model's threshold.
    pub churn: bool,
}

impl Model {
    /// Reads and validates a weights file.
    pub fn load(path: &Path) -> Result<Model, LoadError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: p.clone(),
            source,
        })?;
        let file: ModelFile =
            serde_json::from_str(&text).map_err(|source| LoadError::Parse { path: p, source })?;
        Model::new(file)
    }

    fn new(f: ModelFile) -> Result<Model, LoadError> {
        if f.features.is_empty() || f.features.len() != f.weights.len() {
            return Err(LoadError::Invalid(format!(
                "{} features but {} weights",
                f.features.len(),
                f.weights.len()
            )));
        }
        if !f
            .weights
            .iter()
            .chain([&f.bias, &f.threshold])
            .all(|w| w.is_finite())
        {
            return Err(LoadError::Invalid(
                "weights, bias and threshold must be finite".into(),
            ));
        }
        Ok(Model {
            name: f.name,
            features: f.features,
            weights: f.weights,
            bias: f.bias,
            threshold: f.threshold,
        })
    }

    /// Scores a request body (a JSON object of feature values).
    pub fn predict_json(&self, body: &[u8]) -> Result<Prediction, InputError> {
        let value: Value =
            serde_json::from_slice(body).map_err(|e| InputError::Json(e.to_string()))?;
        let Value::Object(map) = value else {
            return Err(InputError::NotAnObject);
        };
        Ok(self.predict(&self.inputs(&map)?))
    }

    /// Scores feature values given in the model's feature order.
    pub fn predict(&self, x: &[f64]) -> Prediction {
        let z = self.bias + self.weights.iter().zip(x).map(|(w, x)| w * x).sum::<f64>();
        let probability = sigmoid(z);
        Prediction {
            probability,
            churn: probability >= self.threshold,
        }
    }

    /// Orders the request's values by the model's features, rejecting anything unexpected.
    fn inputs(&self, map: &Map<String, Value>) -> Result<Vec<f64>, InputError> {
        if let Some(unknown) = map.keys().find(|k| !self.features.contains(k)) {
            return Err(InputError::Unknown(
                unknown.clone(),
                self.features.join(", "),
            ));
        }
        self.features
            .iter()
            .map(|name| match map.get(name) {
                None => Err(InputError::Missing(name.clone())),
                Some(Value::Bool(b)) => Ok(f64::from(u8::from(*b))),
                Some(Value::Number(n)) => n
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| InputError::NotNumeric(name.clone())),
                Some(_) => Err(InputError::NotNumeric(name.clone())),
            })
            .collect()
    }
}

/// The logistic function, written to stay finite for large |z|.
fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model() -> Model {
        Model::new(ModelFile {
            name: "t".into(),
            features: vec!["a".into(), "b".into()],
            weights: vec![2.0, -1.0],
            bias: 0.5,
            threshold: 0.5,
        })
        .unwrap()
    }

    #[test]
    fn probability_is_the_logistic_of_the_linear_score() {
        let m = model();
        let p = m.predict(&[1.0, 3.0]); // z = 0.5 + 2 - 3 = -0.5
        assert!((p.probability - 1.0 / (1.0 + 0.5f64.exp())).abs() < 1e-12);
        assert!(!p.churn);
        let p = m.predict(&[2.0, 0.0]); // z = 4.5
        assert!((p.probability - 1.0 / (1.0 + (-4.5f64).exp())).abs() < 1e-12);
        assert!(p.churn);
    }

    #[test]
    fn sigmoid_is_stable_at_extremes() {
        assert_eq!(sigmoid(1000.0), 1.0);
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(0.0), 0.5);
    }

    #[test]
    fn json_requests_are_parsed_by_feature_name() {
        let m = model();
        let p = m.predict_json(br#"{"b": 3, "a": true}"#).unwrap();
        assert_eq!(p, m.predict(&[1.0, 3.0]));
    }

    #[test]
    fn bad_requests_say_what_is_wrong() {
        let m = model();
        assert!(matches!(m.predict_json(b"{"), Err(InputError::Json(_))));
        assert_eq!(m.predict_json(b"[1,2]"), Err(InputError::NotAnObject));
        assert_eq!(
            m.predict_json(br#"{"a": 1}"#),
            Err(InputError::Missing("b".into()))
        );
        assert_eq!(
            m.predict_json(br#"{"a": "x", "b": 1}"#),
            Err(InputError::NotNumeric("a".into()))
        );
        assert!(
            matches!(m.predict_json(br#"{"a": 1, "b": 2, "c": 3}"#), Err(InputError::Unknown(k, _)) if k == "c")
        );
    }

    #[test]
    fn invalid_model_files_are_rejected() {
        let bad = ModelFile {
            name: String::new(),
            features: vec!["a".into()],
            weights: vec![],
            bias: 0.0,
            threshold: 0.5,
        };
        assert!(matches!(Model::new(bad), Err(LoadError::Invalid(_))));
        let nan = ModelFile {
            name: String::new(),
            features: vec!["a".into()],
            weights: vec![f64::NAN],
            bias: 0.0,
            threshold: 0.5,
        };
        assert!(matches!(Model::new(nan), Err(LoadError::Invalid(_))));
    }

    #[test]
    fn the_shipped_model_loads_and_scores_plausibly() {
        let m =
            Model::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/churn.json")).unwrap();
        let loyal = br#"{"tenure_months": 60, "monthly_charges": 40, "support_tickets": 0,
            "contract_monthly": 0, "paperless_billing": 0, "num_products": 3}"#;
        let risky = br#"{"tenure_months": 2, "monthly_charges": 95, "support_tickets": 5,
            "contract_monthly": 1, "paperless_billing": 1, "num_products": 1}"#;
        let (loyal, risky) = (
            m.predict_json(loyal).unwrap(),
            m.predict_json(risky).unwrap(),
        );
        assert!(!loyal.churn && risky.churn, "{loyal:?} {risky:?}");
    }
}
