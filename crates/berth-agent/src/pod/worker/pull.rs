//! Images: making a container's image present as its pull policy says (with the pull backoff
//! and the kubelet's Events and waiting reasons), and the user an image runs as.

use std::time::{Duration, Instant};

use berth_cri::v1 as cri;
use k8s_openapi::api::core::v1::Container;
use kube::runtime::events::EventType;

use super::Worker;
use crate::backoff::Backoff;
use crate::pod::spec;
use crate::probe;

impl Worker {
    /// Makes the image present as the pull policy says; `Err` is the waiting reason and message.
    pub(super) async fn ensure_image(&mut self, c: &Container) -> Result<(), (String, String)> {
        let image = spec::image(c);
        let now = Instant::now();
        if self.track(&c.name).pull_backoff.waiting(now) {
            let msg = format!("Back-off pulling image \"{image}\"");
            return Err(("ImagePullBackOff".into(), msg));
        }
        let mut img = self.ctx.cri.image.clone();
        let spec_ = cri::ImageSpec {
            image: image.clone(),
            ..Default::default()
        };
        // Verbose: the same answer carries the image's HEALTHCHECK (see `ensure_liveness`).
        let status = img
            .image_status(cri::ImageStatusRequest {
                image: Some(spec_.clone()),
                verbose: true,
            })
            .await
            .map(tonic::Response::into_inner)
            .ok()
            .filter(|r| r.image.is_some());
        let present = status.is_some();
        let pull = match spec::should_pull(c, present) {
            Ok(p) => p,
            Err(msg) => {
                self.event(EventType::Warning, "ErrImageNeverPull", msg.clone());
                return Err(("ErrImageNeverPull".into(), msg));
            }
        };
        if !pull {
            let t = self.track(&c.name);
            if t.liveness.is_none() {
                let probe = c.liveness_probe.clone();
                t.liveness =
                    Some(probe.or_else(|| status.as_ref().and_then(probe::healthcheck_probe)));
            }
            self.event(
                EventType::Normal,
                "Pulled",
                format!("Container image \"{image}\" already present on machine"),
            );
            return Ok(());
        }
        self.event(
            EventType::Normal,
            "Pulling",
            format!("Pulling image \"{image}\""),
        );
        let started = Instant::now();
        let req = cri::PullImageRequest {
            image: Some(spec_),
            auth: None,
            sandbox_config: None,
        };
        match img.pull_image(req).await {
            Ok(_) => {
                self.track(&c.name).pull_backoff = Backoff::new();
                let secs = started.elapsed().as_secs_f64();
                self.event(
                    EventType::Normal,
                    "Pulled",
                    format!("Successfully pulled image \"{image}\" in {secs:.3}s"),
                );
                Ok(())
            }
            Err(e) => {
                let t = self.track(&c.name);
                // The first failure shows ErrImagePull; retries wait 10 s doubling (ImagePullBackOff).
                t.pull_backoff.exited(Instant::now(), Duration::ZERO);
                t.pull_backoff.exited(Instant::now(), Duration::ZERO);
                let msg = format!("Failed to pull image \"{image}\": {}", e.message());
                self.event(EventType::Warning, "Failed", msg.clone());
                Err(("ErrImagePull".into(), msg))
            }
        }
    }

    /// The user `c`'s image runs as, from the runtime (root if it cannot tell).
    pub(super) async fn image_user(&self, c: &Container) -> spec::ImageUser {
        let req = cri::ImageStatusRequest {
            image: Some(cri::ImageSpec {
                image: spec::image(c),
                ..Default::default()
            }),
            verbose: false,
        };
        let status = self.ctx.cri.image.clone().image_status(req).await;
        spec::ImageUser::of(status.ok().and_then(|r| r.into_inner().image).as_ref())
    }
}
