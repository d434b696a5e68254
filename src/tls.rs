//! DNS over TLS's server side (SPEC §7): the certificate chain and key of
//! `tls_cert_file`/`tls_key_file` as a rustls server config (TLS 1.2 or later, ALPN
//! `dot`), read at start and on each reload, so a renewed certificate is taken up by
//! SIGHUP and a broken one fails the reload and keeps the one in use.

use crate::config::{ConfigError, ConfigErrors, TlsFiles};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// ALPN protocol id of DNS over TLS (RFC 7858).
pub const ALPN_DOT: &[u8] = b"dot";

/// The server config for `files`; errors name the config file, the key and the file.
pub fn server_config(config_file: &Path, files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>, ConfigErrors> {
    let error = |key: &str, path: &Path, message: String| {
        ConfigErrors(vec![ConfigError {
            file: config_file.to_path_buf(),
            line: 0,
            column: 0,
            key: format!("server.{key}"),
            message: format!("{}: {message}", path.display()),
        }])
    };
    let certificates = CertificateDer::pem_file_iter(&files.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| error("tls_cert_file", &files.cert_file, format!("cannot read a PEM certificate chain: {e}")))?;
    if certificates.is_empty() {
        return Err(error("tls_cert_file", &files.cert_file, "holds no certificate".into()));
    }
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| error("tls_key_file", &files.key_file, format!("cannot read a PEM private key: {e}")))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| error("tls_cert_file", &files.cert_file, e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|e| error("tls_key_file", &files.key_file, format!("does not go with the certificate: {e}")))?;
    config.alpn_protocols = vec![ALPN_DOT.to_vec()];
    Ok(Arc::new(config))
}
