//! TLS server configs (rustls, TLS 1.2 or later) for DNS over TLS (SPEC §7: ALPN
//! `dot`) and the admin API's HTTPS (ALPN `http/1.1`): a certificate chain and key
//! read at start and on each reload, so a renewed certificate is taken up by SIGHUP
//! and a broken one fails the reload and keeps the one in use.

use crate::config::{ConfigError, ConfigErrors, TlsFiles};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// ALPN protocol id of DNS over TLS (RFC 7858).
pub const ALPN_DOT: &[u8] = b"dot";
/// ALPN protocol id of the admin API.
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The server config for `files` (`server.{prefix}cert_file` and `…key_file`),
/// offering `alpn`; errors name the config file, the key and the file.
pub fn server_config(
    config_file: &Path,
    files: &TlsFiles,
    prefix: &str,
    alpn: &[u8],
) -> Result<Arc<rustls::ServerConfig>, ConfigErrors> {
    let error = |key: &str, path: &Path, message: String| {
        ConfigErrors(vec![ConfigError {
            file: config_file.to_path_buf(),
            line: 0,
            column: 0,
            key: format!("server.{prefix}{key}"),
            message: format!("{}: {message}", path.display()),
        }])
    };
    let certificates = CertificateDer::pem_file_iter(&files.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| error("cert_file", &files.cert_file, format!("cannot read a PEM certificate chain: {e}")))?;
    if certificates.is_empty() {
        return Err(error("cert_file", &files.cert_file, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| error("key_file", &files.key_file, format!("cannot read a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error("cert_file", &files.cert_file, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|e| error("key_file", &files.key_file, format!("does not go with the certificate: {e}")))?;
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(Arc::new(config))
}
