//! `tessera certs dev`: a development CA and certificates for a coordinator and each trust's node,
//! valid for `localhost` and `127.0.0.1`. Real deployments use certificates from their own PKI.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// The organisation in every development certificate's subject.
pub const DEV_ORGANISATION: &str = "Tessera development";

/// The coordinator certificate's common name.
pub const COORDINATOR_NAME: &str = "tessera-coordinator";

/// The files written for one party: certificate and key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What [`write_dev_certs`] wrote.
#[derive(Debug, Clone)]
pub struct DevCerts {
    pub ca: PathBuf,
    pub coordinator: Party,
    /// Per trust, in the order given.
    pub nodes: Vec<(String, Party)>,
    /// The coordinator certificate's subject, which each node pins.
    pub coordinator_subject: String,
}

fn subject(common_name: &str) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    name.push(DnType::OrganizationName, DEV_ORGANISATION);
    name
}

/// The subject string a node pins for a development certificate named `common_name`.
pub fn dev_subject(common_name: &str) -> String {
    format!("CN={common_name}, O={DEV_ORGANISATION}")
}

fn failed(e: impl std::fmt::Display) -> String {
    format!("cannot make a development certificate: {e}")
}

/// A leaf certificate for `common_name`, valid for localhost and 127.0.0.1, usable to serve and
/// to connect (mutual TLS).
fn leaf(common_name: &str, ca: &Issuer<'_, KeyPair>) -> Result<(String, String), String> {
    let key = KeyPair::generate().map_err(failed)?;
    let mut params = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).map_err(failed)?;
    params.distinguished_name = subject(common_name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    let cert = params.signed_by(&key, ca).map_err(failed)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Writes `ca.pem`, `coordinator.pem`/`coordinator-key.pem` and `<NAME>.pem`/`<NAME>-key.pem` for
/// each of `names` into `out` (keys readable by their owner only). The CA's key is not kept:
/// run it again to add a trust.
pub fn write_dev_certs(out: &Path, names: &[String]) -> Result<DevCerts, String> {
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    let ca_key = KeyPair::generate().map_err(failed)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
    ca_params.distinguished_name = subject("Tessera development CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(failed)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let ca = out.join("ca.pem");
    write(&ca, &ca_cert.pem(), false)?;
    let write_party = |file_stem: &str, common_name: &str| -> Result<Party, String> {
        let (cert, key) = leaf(common_name, &issuer)?;
        let party = Party {
            cert: out.join(format!("{file_stem}.pem")),
            key: out.join(format!("{file_stem}-key.pem")),
        };
        write(&party.cert, &cert, false)?;
        write(&party.key, &key, true)?;
        Ok(party)
    };
    let coordinator = write_party("coordinator", COORDINATOR_NAME)?;
    let mut nodes = Vec::new();
    for name in names {
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!(
                "--names: `{name}` is not a trust name (letters, digits, - and _ only)"
            ));
        }
        if name == "coordinator" || name == "ca" || name.eq_ignore_ascii_case(COORDINATOR_NAME) {
            return Err(format!("--names: `{name}` is reserved"));
        }
        nodes.push((name.to_string(), write_party(name, name)?));
    }
    Ok(DevCerts {
        ca,
        coordinator,
        nodes,
        coordinator_subject: dev_subject(COORDINATOR_NAME),
    })
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), String> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    file.write_all(text.as_bytes())
        .map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificates_carry_the_subjects_nodes_pin() {
        let dir = std::env::temp_dir().join(format!("tessera-dev-certs-{}", std::process::id()));
        let certs = write_dev_certs(&dir, &["RRK".into(), "RTH".into()]).unwrap();
        let subject = |path: &Path| crate::tls::subject_of_pem(&std::fs::read(path).unwrap()).unwrap();
        assert_eq!(subject(&certs.coordinator.cert), certs.coordinator_subject);
        assert_eq!(subject(&certs.nodes[0].1.cert), dev_subject("RRK"));
        assert_ne!(subject(&certs.nodes[1].1.cert), certs.coordinator_subject);
        for bad in [
            "",
            "a b",
            "../x",
            "coordinator",
            "tessera-coordinator",
            "Tessera-Coordinator",
        ] {
            assert!(write_dev_certs(&dir, &[bad.to_string()]).is_err(), "{bad:?}");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_common_name_that_spells_out_the_pin_does_not_match_it() {
        // (common name, subject as rendered)
        let cases = [
            (
                "tessera-coordinator, O=Tessera development",
                "CN=tessera-coordinator\\, O\\=Tessera development, O=Tessera development",
            ),
            ("a+b", "CN=a\\+b, O=Tessera development"),
            (" lead", "CN=\\ lead, O=Tessera development"),
            ("#x", "CN=\\#x, O=Tessera development"),
            ("tessera-coordinator", "CN=tessera-coordinator, O=Tessera development"),
        ];
        for (common_name, rendered) in cases {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
            params.distinguished_name = subject(common_name);
            let cert = params.self_signed(&key).unwrap();
            let subject = crate::tls::subject_of(cert.der()).unwrap();
            assert_eq!(subject, rendered, "{common_name:?}");
        }
    }
}
