//! One repository of one registry: oci-client for the distribution protocol, and the one
//! request it cannot cap (the manifest GET) made with reqwest.
//!
//! Every blob read here is streamed: its length is checked against its descriptor as bytes
//! arrive (a registry that sends more is cut off at the first byte too many) and its sha256
//! against its digest at the end. Bytes are handed on before that final check, so callers
//! write them somewhere that is discarded unless the whole pull succeeds.

use std::fs::File;
use std::io::SeekFrom;
use std::net::IpAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

use super::error::{RegistryError, Result};
use super::layout::Blob;
use super::{OCI_MANIFEST_MAX_BYTES, OCI_MANIFEST_MEDIA_TYPE};
use crate::digest::Digest;

/// Sent as `User-Agent`, so registry logs show who pushed.
const USER_AGENT: &str = concat!("nanovisor-runsc/", env!("CARGO_PKG_VERSION"));
/// Time to establish a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Longest silence while reading a response before giving up.
const READ_TIMEOUT: Duration = Duration::from_secs(120);
/// Bytes per upload read (oci-client sends each piece as one PATCH of the upload session).
const UPLOAD_CHUNK: usize = 4 << 20;

/// How to reach a registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Transport {
    /// HTTPS, except plain HTTP for a registry on a loopback address (`localhost`,
    /// `127.0.0.0/8`, `[::1]`), as containerd and Docker do.
    #[default]
    Auto,
    /// Plain HTTP whatever the host: no TLS, so only for a registry on a trusted network.
    PlainHttp,
}

/// What a connection is for; it decides the scope of the token a registry hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading manifests and blobs.
    Pull,
    /// Reading and writing.
    Push,
}

/// A connection to the repository of one reference (`registry/repository[:tag][@digest]`).
pub struct Registry {
    reference: Reference,
    client: Client,
    /// For the capped manifest GET (module doc).
    http: reqwest::Client,
    scheme: &'static str,
    /// The bearer token oci-client obtained, if the registry wants one (anonymous access).
    token: Option<String>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("reference", &self.reference.whole())
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl Registry {
    /// Parses `reference` and authorizes (anonymously) for `access`: for a registry with token
    /// auth this fetches a token; for one without, it is one `GET /v2/`.
    pub async fn connect(reference: &str, transport: Transport, access: Access) -> Result<Self> {
        let parsed = Reference::try_from(reference).map_err(|source| RegistryError::Reference {
            reference: reference.to_owned(),
            source,
        })?;
        let host = parsed.resolve_registry().to_owned();
        let plain = transport == Transport::PlainHttp || is_loopback(&host);
        let scheme = if plain { "http" } else { "https" };
        let config = ClientConfig {
            protocol: if plain {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(CONNECT_TIMEOUT),
            read_timeout: Some(READ_TIMEOUT),
            user_agent: USER_AGENT,
            ..ClientConfig::default()
        };
        let http = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(READ_TIMEOUT)
            .build()
            .map_err(|e| failed(&host, "setting up an HTTP client", e))?;
        let mut registry = Self {
            reference: parsed,
            client: Client::new(config),
            http,
            scheme,
            token: None,
        };
        let operation = match access {
            Access::Pull => RegistryOperation::Pull,
            Access::Push => RegistryOperation::Push,
        };
        registry.token = registry
            .client
            .auth(&registry.reference, &RegistryAuth::Anonymous, operation)
            .await
            .map_err(|e| {
                failed(
                    &host,
                    format!("authorizing for {}", registry.reference.whole()),
                    e,
                )
            })?;
        Ok(registry)
    }

    /// The parsed reference.
    pub fn reference(&self) -> &Reference {
        &self.reference
    }

    /// `host[:port]` of the registry requests go to.
    pub fn host(&self) -> &str {
        self.reference.resolve_registry()
    }

    /// Whether the repository already has `blob` (HEAD).
    pub(crate) async fn has_blob(&self, blob: &Blob) -> Result<bool> {
        self.client
            .blob_exists(&self.reference, &blob.digest.to_string())
            .await
            .map_err(|e| self.failed(format!("checking for {}", blob.name()), e))
    }

    /// Uploads `blob` from `file` (its whole content, read from the start).
    pub(crate) async fn push_blob_file(&self, blob: &Blob, file: &File) -> Result<()> {
        let op = || format!("uploading {}", blob.name());
        let file = file.try_clone().map_err(|e| RegistryError::io(op(), e))?;
        let mut file = tokio::fs::File::from_std(file);
        file.set_max_buf_size(UPLOAD_CHUNK);
        file.seek(SeekFrom::Start(0))
            .await
            .map_err(|e| RegistryError::io(op(), e))?;
        let stream = futures_util::stream::try_unfold(file, |mut file| async move {
            let mut buf = bytes::BytesMut::with_capacity(UPLOAD_CHUNK);
            let n = file.read_buf(&mut buf).await?;
            Ok::<_, OciDistributionError>((n > 0).then(|| (buf.freeze(), file)))
        });
        self.client
            .push_blob_stream(
                &self.reference,
                stream,
                &blob.digest.to_string(),
                Some(blob.size),
            )
            .await
            .map_err(|e| self.failed(op(), e))?;
        Ok(())
    }

    /// Uploads a small blob held in memory.
    pub(crate) async fn push_blob_bytes(&self, blob: &Blob, bytes: Vec<u8>) -> Result<()> {
        self.client
            .push_blob(&self.reference, bytes, &blob.digest.to_string())
            .await
            .map_err(|e| self.failed(format!("uploading {}", blob.name()), e))?;
        Ok(())
    }

    /// Pushes an OCI image manifest under the reference's tag; returns its digest.
    pub(crate) async fn push_manifest(&self, bytes: Vec<u8>) -> Result<Digest> {
        let digest = Digest::of(&bytes);
        self.client
            .push_manifest_raw(
                &self.reference,
                bytes,
                reqwest::header::HeaderValue::from_static(OCI_MANIFEST_MEDIA_TYPE),
            )
            .await
            .map_err(|e| self.failed(format!("pushing manifest {digest}"), e))?;
        Ok(digest)
    }

    /// Fetches the reference's manifest, at most [`OCI_MANIFEST_MAX_BYTES`], served as an OCI
    /// image manifest; checks it against the reference's digest if it has one. Returns the
    /// bytes and their digest.
    pub(crate) async fn fetch_manifest(&self) -> Result<(Vec<u8>, Digest)> {
        let r = &self.reference;
        let target = r.digest().or(r.tag()).unwrap_or("latest");
        let url = format!(
            "{}://{}/v2/{}/manifests/{target}",
            self.scheme,
            self.host(),
            r.repository()
        );
        let op = format!("fetching manifest {}", r.whole());
        let mut request = self
            .http
            .get(&url)
            .header(reqwest::header::ACCEPT, OCI_MANIFEST_MEDIA_TYPE);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        let mut response = request.send().await.map_err(|e| self.failed(&op, e))?;
        let status = response.status();
        if !status.is_success() {
            let detail = error_detail(response).await;
            return Err(RegistryError::Status {
                registry: self.host().to_owned(),
                op,
                status: status.as_u16(),
                detail,
            });
        }
        let layout_error = |problem: String| RegistryError::Layout {
            reference: r.whole(),
            problem,
        };
        let content_type = header(&response, reqwest::header::CONTENT_TYPE);
        if let Some(ct) = &content_type {
            let essence = ct.split(';').next().unwrap_or_default().trim();
            if essence != OCI_MANIFEST_MEDIA_TYPE {
                return Err(layout_error(format!(
                    "served as {essence:?}, expected {OCI_MANIFEST_MEDIA_TYPE:?}"
                )));
            }
        }
        let too_large = || layout_error(format!("manifest over {OCI_MANIFEST_MAX_BYTES} bytes"));
        if response
            .content_length()
            .is_some_and(|n| n > OCI_MANIFEST_MAX_BYTES)
        {
            return Err(too_large());
        }
        let served_digest = header(&response, "docker-content-digest");
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| self.failed(&op, e))? {
            if (body.len() + chunk.len()) as u64 > OCI_MANIFEST_MAX_BYTES {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let digest = Digest::of(&body);
        // The reference's digest pins the manifest; a registry's own digest header must agree.
        for (what, claimed) in [
            ("the reference", r.digest().map(str::to_owned)),
            ("the registry's Docker-Content-Digest", served_digest),
        ] {
            if let Some(claimed) = claimed {
                if claimed != digest.to_string() {
                    return Err(RegistryError::blob(
                        format!("manifest {}", r.whole()),
                        format!("{what} says {claimed}, the bytes served are {digest}"),
                    ));
                }
            }
        }
        Ok((body, digest))
    }

    /// Streams `blob` into `sink`, checking its size as it arrives and its digest at the end.
    pub(crate) async fn fetch_blob(
        &self,
        blob: &Blob,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        let name = blob.name();
        let mut stream = self
            .client
            .pull_blob_stream(&self.reference, &blob.descriptor())
            .await
            .map_err(|e| self.failed(format!("fetching {name}"), e))?;
        if let Some(n) = stream.content_length {
            if n != blob.size {
                return Err(RegistryError::blob(
                    &name,
                    format!("registry sends {n} bytes, descriptor says {}", blob.size),
                ));
            }
        }
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut ended_with = None;
        while let Some(item) = stream.next().await {
            let bytes = match item {
                Ok(bytes) => bytes,
                // oci-client's own digest check fails as the last item; our check below says
                // what did not match, so only report its error if ours passes.
                Err(e) => {
                    ended_with = Some(e);
                    break;
                }
            };
            received += bytes.len() as u64;
            if received > blob.size {
                return Err(RegistryError::blob(
                    &name,
                    format!(
                        "registry sends more than the {} bytes of its descriptor",
                        blob.size
                    ),
                ));
            }
            hasher.update(&bytes);
            sink(&bytes)?;
        }
        if received != blob.size {
            if let Some(e) = ended_with {
                return Err(self.failed(format!("fetching {name}"), e));
            }
            return Err(RegistryError::blob(
                &name,
                format!(
                    "registry sent {received} bytes, descriptor says {}",
                    blob.size
                ),
            ));
        }
        let actual = Digest::from_hasher(hasher);
        if actual != blob.digest {
            return Err(RegistryError::blob(
                &name,
                format!("registry sent content with digest {actual}"),
            ));
        }
        if let Some(e) = ended_with {
            return Err(self.failed(format!("fetching {name}"), e));
        }
        Ok(())
    }

    fn failed(
        &self,
        op: impl Into<String>,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> RegistryError {
        failed(self.host(), op, e)
    }
}

/// A failed request to `host`.
fn failed(
    host: &str,
    op: impl Into<String>,
    e: impl std::error::Error + Send + Sync + 'static,
) -> RegistryError {
    RegistryError::Registry {
        registry: host.to_owned(),
        op: op.into(),
        source: Box::new(e),
    }
}

/// A response header as text, if present and printable.
fn header(
    response: &reqwest::Response,
    name: impl reqwest::header::AsHeaderName,
) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// `: ` and the start of an error response's body (registries explain errors in JSON), or
/// nothing. Reads at most a few KiB of it.
async fn error_detail(mut response: reqwest::Response) -> String {
    const MAX: usize = 4096;
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        body.extend_from_slice(&chunk[..chunk.len().min(MAX - body.len())]);
        if body.len() >= MAX {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    let text: String = text.chars().take(300).collect();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// Whether a registry `host[:port]` is on a loopback address.
fn is_loopback(registry: &str) -> bool {
    let host = if let Some(rest) = registry.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or_default()
    } else {
        registry.split(':').next().unwrap_or_default()
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_recognised() {
        for host in [
            "localhost",
            "localhost:5000",
            "LOCALHOST:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.1.2.3:80",
            "[::1]:5000",
            "[::1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "registry.example.com",
            "localhost.example.com:5000",
            "10.0.0.1:5000",
            "[fe80::1]:5000",
            "128.0.0.1",
            "",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn references_parse_as_documented() {
        let r = Reference::try_from("127.0.0.1:5000/apps/hello:v1").unwrap();
        assert_eq!(r.resolve_registry(), "127.0.0.1:5000");
        assert_eq!(r.repository(), "apps/hello");
        assert_eq!(r.tag(), Some("v1"));
        let pinned = format!("127.0.0.1:5000/apps/hello@{}", Digest::of(b"m"));
        let r = Reference::try_from(pinned.as_str()).unwrap();
        assert_eq!(r.digest(), Some(Digest::of(b"m").to_string().as_str()));
        assert!(Reference::try_from("127.0.0.1:5000/Apps:v1").is_err());
    }
}
