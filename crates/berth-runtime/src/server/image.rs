//! The CRI `ImageService`: list, inspect, pull and remove images, and the image filesystem's
//! usage, over the image store.

use std::collections::HashMap;

use berth_cri::v1 as cri;
use berth_cri::v1::image_service_server::ImageService;
use tonic::{Request, Response, Status};

use super::CriService;
use super::convert::{credentials_of, image_to_cri};
use super::error::{image_status, internal};

#[tonic::async_trait]
impl ImageService for CriService {
    async fn list_images(
        &self,
        _r: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let images = self.images.list().map_err(image_status)?;
        Ok(Response::new(cri::ListImagesResponse {
            images: images.iter().map(image_to_cri).collect(),
        }))
    }

    async fn image_status(
        &self,
        r: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let req = r.into_inner();
        let name = req.image.map(|i| i.image).unwrap_or_default();
        let image = self.images.resolve(&name).map_err(image_status)?;
        // Verbose: the config as pulled (Docker's Healthcheck included), as containerd answers.
        let info = match (&image, req.verbose) {
            (Some(record), true) => crate::image::healthcheck::verbose_info(
                self.images.config_json(record).map_err(image_status)?,
            ),
            _ => HashMap::new(),
        };
        Ok(Response::new(cri::ImageStatusResponse {
            image: image.as_ref().map(image_to_cri),
            info,
        }))
    }

    async fn pull_image(
        &self,
        r: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let req = r.into_inner();
        let credentials = req.auth.as_ref().and_then(credentials_of);
        let name = req.image.map(|i| i.image).unwrap_or_default();
        // The registry client's pull future is not provably Send (a higher-ranked lifetime in
        // its stream combinators), so drive it on a blocking thread with the runtime's handle.
        let images = self.images.clone();
        let handle = tokio::runtime::Handle::current();
        let n = name.clone();
        let record =
            tokio::task::spawn_blocking(move || handle.block_on(images.pull(&n, credentials)))
                .await
                .map_err(internal)?
                .map_err(|e| Status::unknown(format!("pulling {name}: {e}")))?;
        Ok(Response::new(cri::PullImageResponse {
            image_ref: record.id,
        }))
    }

    async fn remove_image(
        &self,
        r: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let name = r.into_inner().image.map(|i| i.image).unwrap_or_default();
        self.images.remove(&name).await.map_err(image_status)?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _r: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let (bytes, inodes) = self.images.usage();
        let usage = cri::FilesystemUsage {
            timestamp: chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0),
            fs_id: Some(cri::FilesystemIdentifier {
                mountpoint: self.images.dir().display().to_string(),
            }),
            used_bytes: Some(cri::UInt64Value { value: bytes }),
            inodes_used: Some(cri::UInt64Value { value: inodes }),
        };
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![usage],
            ..Default::default()
        }))
    }
}
