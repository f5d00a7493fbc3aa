//! Mounting a snapshot's mounts (containerd's `type`, `source`, `options`) at a container's
//! rootfs, as containerd's mount package does: options that are mount flags become flags, the
//! rest the data string. Done in-process with mount(2): containerd-shim's helper forks and waits
//! through the shim's own reaper, which this process does not run.

use std::path::Path;

use nix::mount::{mount, MsFlags};

/// The longest data string the kernel takes (one page).
const MAX_DATA: usize = 4096;

/// Flags from options; `(flags, data)`. `clear` options (`rw`, `suid`, …) unset their flag.
pub fn parse_options(options: &[String]) -> (MsFlags, String) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for o in options {
        let (set, flag) = match o.as_str() {
            "ro" => (true, MsFlags::MS_RDONLY),
            "rw" => (false, MsFlags::MS_RDONLY),
            "nosuid" => (true, MsFlags::MS_NOSUID),
            "suid" => (false, MsFlags::MS_NOSUID),
            "nodev" => (true, MsFlags::MS_NODEV),
            "dev" => (false, MsFlags::MS_NODEV),
            "noexec" => (true, MsFlags::MS_NOEXEC),
            "exec" => (false, MsFlags::MS_NOEXEC),
            "noatime" => (true, MsFlags::MS_NOATIME),
            "relatime" => (true, MsFlags::MS_RELATIME),
            "bind" => (true, MsFlags::MS_BIND),
            "rbind" => (true, MsFlags::MS_BIND | MsFlags::MS_REC),
            "sync" => (true, MsFlags::MS_SYNCHRONOUS),
            "defaults" => (true, MsFlags::empty()),
            other => {
                data.push(other);
                continue;
            }
        };
        if set {
            flags |= flag;
        } else {
            flags &= !flag;
        }
    }
    (flags, data.join(","))
}

/// Mounts one of containerd's mounts at `target`.
pub fn mount_one(
    target: &Path,
    fs_type: &str,
    source: &str,
    options: &[String],
) -> Result<(), String> {
    let (flags, data) = parse_options(options);
    if data.len() >= MAX_DATA {
        return Err(format!(
            "{fs_type} mount options are {} bytes, more than a page (too many layers)",
            data.len()
        ));
    }
    let fs = (!fs_type.is_empty() && !flags.contains(MsFlags::MS_BIND)).then_some(fs_type);
    let data = (!data.is_empty()).then_some(data.as_str());
    let bind = flags.contains(MsFlags::MS_BIND);
    // MS_RDONLY is ignored on a new bind mount: it is applied by the remount below.
    let first = if bind {
        flags & !MsFlags::MS_RDONLY
    } else {
        flags
    };
    mount(Some(source), target, fs, first, data)
        .map_err(|e| format!("mounting {fs_type} {source} at {}: {e}", target.display()))?;
    // A read-only bind mount needs a remount to become read-only.
    if bind && flags.contains(MsFlags::MS_RDONLY) {
        mount(
            None::<&str>,
            target,
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
            None::<&str>,
        )
        .map_err(|e| format!("making {} read-only: {e}", target.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_split_into_flags_and_data() {
        let o: Vec<String> = [
            "index=off",
            "workdir=/w",
            "ro",
            "upperdir=/u",
            "lowerdir=/l",
            "nodev",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let (flags, data) = parse_options(&o);
        assert_eq!(flags, MsFlags::MS_RDONLY | MsFlags::MS_NODEV);
        assert_eq!(data, "index=off,workdir=/w,upperdir=/u,lowerdir=/l");
        let (flags, data) =
            parse_options(&["rbind".to_string(), "ro".to_string(), "rw".to_string()]);
        assert_eq!(flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert!(data.is_empty());
    }
}
