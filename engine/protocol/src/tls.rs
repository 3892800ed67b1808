//! TLS on every Flight link: reading certificates, what a client presents and trusts, and the
//! subject of a peer's certificate (how a node recognises its federation's coordinator).

use std::path::Path;

use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// Installs rustls's ring provider as the process default. Call once at start-up: when two
/// providers are compiled in, rustls cannot choose one by itself.
pub fn install_crypto_provider() {
    // An error means a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A problem with a certificate or key file, naming the file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TlsError(pub String);

/// Reads a PEM file, checking it holds what `what` says (`CERTIFICATE` or `PRIVATE KEY`).
pub fn read_pem(path: &Path, what: &str) -> Result<Vec<u8>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| TlsError(format!("{}: {e}", path.display())))?;
    let text = String::from_utf8_lossy(&bytes);
    if !(text.contains("-----BEGIN") && text.contains(what)) {
        return Err(TlsError(format!(
            "{}: not a PEM file holding a {what} (`tessera certs dev` writes development ones)",
            path.display()
        )));
    }
    Ok(bytes)
}

/// What a client trusts (the CA its peers' certificates chain to) and, for mutual TLS, the
/// certificate and key it presents.
#[derive(Clone)]
pub struct ClientTls {
    ca: Vec<u8>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("mutual", &self.identity.is_some())
            .finish()
    }
}

impl ClientTls {
    /// Trusts the CA in PEM text; presents no certificate.
    pub fn trusting(ca_pem: impl Into<Vec<u8>>) -> ClientTls {
        ClientTls {
            ca: ca_pem.into(),
            identity: None,
        }
    }

    /// Also presents `cert_pem` with its `key_pem` (mutual TLS).
    pub fn presenting(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> ClientTls {
        self.identity = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Reads the CA and, when given, the certificate and key to present.
    pub fn load(ca: &Path, identity: Option<(&Path, &Path)>) -> Result<ClientTls, TlsError> {
        let tls = ClientTls::trusting(read_pem(ca, "CERTIFICATE")?);
        match identity {
            None => Ok(tls),
            Some((cert, key)) => Ok(tls.presenting(read_pem(cert, "CERTIFICATE")?, read_pem(key, "PRIVATE KEY")?)),
        }
    }

    /// Whether a certificate is presented.
    pub fn is_mutual(&self) -> bool {
        self.identity.is_some()
    }

    /// tonic's settings for a channel.
    pub fn config(&self) -> ClientTlsConfig {
        let config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&self.ca));
        match &self.identity {
            Some((cert, key)) => config.identity(Identity::from_pem(cert, key)),
            None => config,
        }
    }
}

/// The subject of a DER certificate as RFC 4514-style text in certificate order, e.g.
/// `CN=tessera-coordinator, O=Tessera development`. Special characters in values are escaped,
/// so a common name that contains `, O=…` never reads like a second attribute. A subject with a
/// multi-valued part or a value that is not text has no rendering (it never matches a pin).
pub fn subject_of(der: &[u8]) -> Option<String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der).ok()?;
    let mut parts = Vec::new();
    for rdn in certificate.subject().iter() {
        let mut attributes = rdn.iter();
        let attribute = attributes.next()?;
        if attributes.next().is_some() {
            return None;
        }
        let name = attribute_name(&attribute.attr_type().to_id_string());
        let value = attribute.as_str().ok()?;
        parts.push(format!("{name}={}", escape_value(value)));
    }
    Some(parts.join(", "))
}

/// The short name of a distinguished-name attribute, or its dotted OID.
fn attribute_name(oid: &str) -> String {
    match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        other => other,
    }
    .to_string()
}

/// Escapes a value as RFC 4514 does: `, + " \ < > ; =`, a leading `#` or space, a trailing space,
/// and control characters.
fn escape_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            c if c.is_control() => out.push_str(&format!("\\{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// The first certificate's subject in PEM text (what `tessera gen` pins in each node.toml).
pub fn subject_of_pem(pem: &[u8]) -> Option<String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem).ok()?;
    subject_of(&block.contents)
}
