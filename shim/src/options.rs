//! The runtime options containerd passes in `CreateTaskRequest.options`.
//!
//! For a runtime type other than runc's, containerd's CRI plugin turns the runtime's
//! `options` table into `runtimeoptions.v1.Options { type_url = 1; config_path = 2; }`;
//! `ConfigPath` names our configuration file. No generated code exists for that message in
//! the shim protos, and it has two strings, so it is decoded here field by field.

use containerd_shim::protos::protobuf::rt::WireType;
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::CodedInputStream;

/// The message name containerd registers for the options (the Any's type URL ends in it).
const RUNTIME_OPTIONS: &str = "runtimeoptions.v1.Options";

/// The configuration path the options name, if any. Options of another type (runc's, say)
/// are refused: they mean containerd was configured for a different shim.
pub fn config_path(options: Option<&Any>) -> Result<Option<String>, String> {
    let Some(any) = options else {
        return Ok(None);
    };
    if any.type_url.is_empty() && any.value.is_empty() {
        return Ok(None);
    }
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    if name != RUNTIME_OPTIONS {
        return Err(format!(
            "runtime options of type {:?}: this shim takes {RUNTIME_OPTIONS} (ConfigPath)",
            any.type_url
        ));
    }
    decode_config_path(&any.value).map_err(|e| format!("runtime options: {e}"))
}

fn decode_config_path(bytes: &[u8]) -> Result<Option<String>, String> {
    let mut input = CodedInputStream::from_bytes(bytes);
    let mut path = None;
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(|e| e.to_string())? {
        let wire = WireType::new(tag & 7).ok_or_else(|| format!("bad wire type in tag {tag}"))?;
        match (tag >> 3, wire) {
            (2, WireType::LengthDelimited) => {
                path = Some(input.read_string().map_err(|e| e.to_string())?);
            }
            _ => input.skip_field(wire).map_err(|e| e.to_string())?,
        }
    }
    Ok(path.filter(|p| !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Options { type_url: "io.containerd.nanovisor.v1", config_path: "/etc/nv.toml" }`.
    fn encoded() -> Vec<u8> {
        let mut v = vec![0x0a, 26];
        v.extend_from_slice(b"io.containerd.nanovisor.v1");
        v.extend_from_slice(&[0x12, 12]);
        v.extend_from_slice(b"/etc/nv.toml");
        v
    }

    #[test]
    fn reads_config_path() {
        let any = Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value: encoded(),
            ..Default::default()
        };
        assert_eq!(config_path(Some(&any)), Ok(Some("/etc/nv.toml".into())));
        assert_eq!(config_path(None), Ok(None));
    }

    #[test]
    fn refuses_other_types_and_garbage() {
        let runc = Any {
            type_url: "containerd.runc.v1.Options".into(),
            value: vec![],
            ..Default::default()
        };
        assert!(config_path(Some(&runc)).is_err());
        let truncated = Any {
            type_url: "runtimeoptions.v1.Options".into(),
            value: encoded()[..20].to_vec(),
            ..Default::default()
        };
        assert!(config_path(Some(&truncated)).is_err());
    }
}
