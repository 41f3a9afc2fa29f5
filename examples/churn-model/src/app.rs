//! The routes: what each request gets back, independent of sockets.

use std::sync::OnceLock;

use serde_json::json;

use crate::http::{Request, Response};
use crate::metrics::Metrics;
use crate::model::Model;

/// Shared state of the server: the model (absent until loaded) and the metrics.
#[derive(Debug, Default)]
pub struct App {
    model: OnceLock<Model>,
    /// Request metrics, recorded by the server loop.
    pub metrics: Metrics,
}

impl App {
    /// Installs the loaded model; from then on the server is ready.
    pub fn set_model(&self, model: Model) {
        // Loaded once at start; a second call would be a bug, and keeping the first is harmless.
        let _ = self.model.set(model);
    }

    /// Answers one request.
    pub fn handle(&self, req: &Request) -> Response {
        match (req.method.as_str(), req.path.as_str()) {
            ("POST", "/predict") => self.predict(&req.body),
            ("GET" | "HEAD", "/health") => Response::json(200, &json!({ "status": "ok" })),
            ("GET" | "HEAD", "/ready") => self.ready(),
            ("GET" | "HEAD", "/metrics") => {
                let text = self.metrics.render(self.model.get().is_some());
                Response::text(200, "text/plain; version=0.0.4", text)
            }
            (_, "/predict" | "/health" | "/ready" | "/metrics") => Response::error(
                405,
                &format!("method {} not allowed on {}", req.method, req.path),
            ),
            _ => Response::error(404, &format!("no route {}", req.path)),
        }
    }

    fn predict(&self, body: &[u8]) -> Response {
        let Some(model) = self.model.get() else {
            return Response::error(503, "model is still loading");
        };
        match model.predict_json(body) {
            Ok(p) => Response::json(
                200,
                &json!({ "churn_probability": p.probability, "churn": p.churn }),
            ),
            Err(e) => Response::error(400, &e.to_string()),
        }
    }

    fn ready(&self) -> Response {
        match self.model.get() {
            Some(m) => Response::json(200, &json!({ "status": "ready", "model": m.name })),
            None => Response::json(503, &json!({ "status": "loading" })),
        }
    }
}
