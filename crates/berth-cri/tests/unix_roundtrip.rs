//! A CRI client and server talk over a Unix socket, with messages above tonic's 4 MiB default.
// A test crate: unwraps are fine here, and it sees every dev-dependency.
#![allow(unused_crate_dependencies, clippy::unwrap_used)]

use berth_cri::v1::image_service_server::ImageService;
use berth_cri::v1::*;
use tonic::{Request, Response, Status};

/// An image service that lists one image per tag it was told about.
struct Images {
    tags: Vec<String>,
}

#[tonic::async_trait]
impl ImageService for Images {
    async fn list_images(
        &self,
        _: Request<ListImagesRequest>,
    ) -> Result<Response<ListImagesResponse>, Status> {
        let image = Image {
            id: "sha256:abc".into(),
            repo_tags: self.tags.clone(),
            size: 1,
            ..Default::default()
        };
        Ok(Response::new(ListImagesResponse {
            images: vec![image],
        }))
    }
    async fn image_status(
        &self,
        req: Request<ImageStatusRequest>,
    ) -> Result<Response<ImageStatusResponse>, Status> {
        let wanted = req.into_inner().image.map(|s| s.image).unwrap_or_default();
        let image = self.tags.contains(&wanted).then(|| Image {
            id: "sha256:abc".into(),
            ..Default::default()
        });
        Ok(Response::new(ImageStatusResponse {
            image,
            info: Default::default(),
        }))
    }
    async fn pull_image(
        &self,
        _: Request<PullImageRequest>,
    ) -> Result<Response<PullImageResponse>, Status> {
        Err(Status::unavailable("no registry in this test"))
    }
    async fn remove_image(
        &self,
        _: Request<RemoveImageRequest>,
    ) -> Result<Response<RemoveImageResponse>, Status> {
        Ok(Response::new(RemoveImageResponse {}))
    }
    async fn image_fs_info(
        &self,
        _: Request<ImageFsInfoRequest>,
    ) -> Result<Response<ImageFsInfoResponse>, Status> {
        Ok(Response::new(ImageFsInfoResponse::default()))
    }
}

#[tokio::test]
async fn client_and_server_round_trip_large_messages_over_a_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("cri.sock");
    // ~6 MiB of tags: above tonic's 4 MiB default, below CRI's 16 MiB.
    let tags: Vec<String> = (0..60_000)
        .map(|i| format!("localhost:5000/model-{i:06}:v1-{}", "x".repeat(80)))
        .collect();
    let listener = berth_cri::bind(&sock).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(berth_cri::image_server(Images { tags: tags.clone() }))
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::UnixListenerStream::new(listener),
                async {
                    let _ = stop_rx.await;
                },
            ),
    );

    let mut client = berth_cri::connect(&format!("unix://{}", sock.display()))
        .await
        .unwrap();
    let listed = client
        .image
        .list_images(ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(listed.images[0].repo_tags, tags);

    let spec = |image: &str| {
        Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        })
    };
    let present = client
        .image
        .image_status(ImageStatusRequest {
            image: spec(&tags[7]),
            verbose: false,
        })
        .await
        .unwrap();
    assert_eq!(present.into_inner().image.unwrap().id, "sha256:abc");
    let absent = client
        .image
        .image_status(ImageStatusRequest {
            image: spec("nope:1"),
            verbose: false,
        })
        .await
        .unwrap();
    assert!(
        absent.into_inner().image.is_none(),
        "an absent image is None, not an error"
    );

    // A service this server does not offer answers UNIMPLEMENTED, which CRI clients tolerate.
    let err = client
        .runtime
        .version(VersionRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);

    stop_tx.send(()).unwrap();
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn connecting_to_a_missing_socket_fails_with_the_path() {
    let err = berth_cri::connect("unix:///nonexistent/berth-test/cri.sock")
        .await
        .err()
        .expect("must fail");
    assert!(
        err.to_string().contains("/nonexistent/berth-test/cri.sock"),
        "{err}"
    );
}
