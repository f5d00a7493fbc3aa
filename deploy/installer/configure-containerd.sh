#!/bin/sh
# Adds (or removes) the nanovisor runtime handler in containerd's configuration.
#
# Idempotent: the handler's settings live in one marker block at the end of config.toml, or
# in one drop-in file, and a run rewrites that block or file instead of appending another.
# A second run with the same arguments changes nothing. Prints one word on stdout, "changed"
# or "unchanged"; everything else goes to stderr. Exits non-zero, touching nothing, when it
# cannot edit the file safely.
#
# Which form containerd reads (its config's top-level `version`):
#   version = 2  containerd 1.6/1.7: plugins."io.containerd.grpc.v1.cri".containerd.runtimes.NAME
#   version = 3  containerd 2.x:     plugins."io.containerd.cri.v1.runtime".containerd.runtimes.NAME
# A drop-in file is used only with version 3 and an `imports` glob DIR/*.toml whose DIR
# exists: containerd 1.x replaces a whole plugin section with an imported one (containerd
# issue 5837), so a version 2 drop-in would wipe the node's other CRI settings; 2.0 merges
# imported sections key by key (containerd PR 9982).
#
# Every file this script replaces is first copied to FILE.nanovisor-backup, and replaced by
# a rename, so containerd never reads a half-written file.
set -eu

usage() {
    cat >&2 <<'EOF'
usage: configure-containerd.sh [options]
  --config PATH           containerd's config, as the host sees it (/etc/containerd/config.toml)
  --root DIR              where the host's file system is mounted (default: /, i.e. none)
  --handler NAME          runtime handler name (default: nanovisor)
  --shim-config PATH      the shim's config file, passed as options.ConfigPath
                          (default: /etc/nanovisor/shim.toml)
  --default-version N     config version to write when the config is absent or holds no
                          settings: 2 for containerd 1.6/1.7, 3 for containerd 2.x
  --remove                take the handler out again
  --dry-run               only say whether a run would change anything
EOF
    exit 2
}

die() {
    echo "configure-containerd: $*" >&2
    exit 1
}

config=/etc/containerd/config.toml
root=
handler=nanovisor
shim_config=/etc/nanovisor/shim.toml
default_version=
remove=false
dry_run=false
while [ $# -gt 0 ]; do
    case "$1" in
        --config) [ $# -ge 2 ] || usage; config=$2; shift 2 ;;
        --root) [ $# -ge 2 ] || usage; root=${2%/}; shift 2 ;;
        --handler) [ $# -ge 2 ] || usage; handler=$2; shift 2 ;;
        --shim-config) [ $# -ge 2 ] || usage; shim_config=$2; shift 2 ;;
        --default-version) [ $# -ge 2 ] || usage; default_version=$2; shift 2 ;;
        --remove) remove=true; shift ;;
        --dry-run) dry_run=true; shift ;;
        -h | --help) usage ;;
        *) echo "configure-containerd: unknown argument: $1" >&2; usage ;;
    esac
done

# The handler becomes a bare TOML key and part of a file name: keep it to what both allow
# (Kubernetes restricts RuntimeClass handlers to DNS labels anyway).
case "$handler" in
    '' | -* | *[!a-z0-9-]*) die "handler \"$handler\" must be lower-case letters, digits and '-'" ;;
esac
case "$shim_config" in
    *[\"\\]* | '') die "shim config path \"$shim_config\" must be non-empty, without quotes or backslashes" ;;
esac
case "$config" in
    /*) ;;
    *) die "--config must be an absolute path (the host's), got \"$config\"" ;;
esac
case "$default_version" in
    '' | 2 | 3) ;;
    *) die "--default-version must be 2 or 3, got \"$default_version\"" ;;
esac

host_file=$root$config
begin_marker="# BEGIN nanovisor runtime $handler (written by the nanovisor installer; edits inside are lost)"
end_marker="# END nanovisor runtime $handler"

work=$(mktemp -d "${TMPDIR:-/tmp}/configure-containerd.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [ -e "$host_file" ]; then
    [ -f "$host_file" ] || die "$host_file is not a regular file"
    cp "$host_file" "$work/original"
else
    : >"$work/original"
fi

begins=$(grep -cxF "$begin_marker" "$work/original" || true)
ends=$(grep -cxF "$end_marker" "$work/original" || true)
if [ "$begins" != "$ends" ] || [ "$begins" -gt 1 ]; then
    die "$host_file: the nanovisor block for \"$handler\" is damaged ($begins BEGIN and $ends END lines); restore it from $host_file.nanovisor-backup or delete both marker lines"
fi

# The config without our block; the blank line written before the block goes with it, so
# adding and then removing the block gives back the file byte for byte.
awk -v b="$begin_marker" -v e="$end_marker" '
    $0 == b { inblock = 1; pending = 0; next }
    inblock { if ($0 == e) inblock = 0; next }
    {
        if (pending) { print ""; pending = 0 }
        if ($0 == "") { pending = 1; next }
        print
    }
    END { if (pending) print "" }
' "$work/original" >"$work/base"

# The version line, when this script wrote it (a config that had no settings before).
block_version=$(awk -v b="$begin_marker" -v e="$end_marker" '
    $0 == b { inblock = 1; next }
    $0 == e { inblock = 0; next }
    inblock && /^version[ \t]*=/ { sub(/^version[ \t]*=[ \t]*/, ""); sub(/[ \t]*(#.*)?$/, ""); print; exit }
' "$work/original")

# Top-level keys (before the first table header) of the rest of the config: `version`, the
# directories of `imports` globs (one a line), and whether it holds any setting at all.
awk '
    /^[ \t]*\[/ { exit }
    /^[ \t]*(#|$)/ { next }
    { settings = 1 }
    /^[ \t]*version[ \t]*=/ {
        v = $0; sub(/^[ \t]*version[ \t]*=[ \t]*/, "", v); sub(/[ \t]*(#.*)?$/, "", v)
        print "version " v
    }
    /^[ \t]*imports[ \t]*=/ { inimports = 1 }
    inimports {
        line = $0
        sub(/^[ \t]*imports[ \t]*=/, "", line)
        while (match(line, /"[^"]*"|\047[^\047]*\047/)) {
            print "import " substr(line, RSTART + 1, RLENGTH - 2)
            line = substr(line, RSTART + RLENGTH)
        }
        if ($0 ~ /\]/) inimports = 0
    }
    END { if (settings) print "settings" }
' "$work/base" >"$work/top"

version=$(sed -n 's/^version //p' "$work/top" | head -n 1)
version_line=
if ! grep -qx settings "$work/top"; then
    # Nothing but comments (Debian's stock file) or no file: the block carries the version.
    version=${default_version:-$block_version}
    version_line="version = $version"
fi
section=
if [ "$remove" = false ]; then
    if [ -z "$version" ] && [ -z "$version_line" ]; then
        die "$host_file has no top-level 'version': containerd reads it as version 1, which this installer does not edit; migrate it first (containerd config migrate) or add 'version = 2'"
    fi
    [ -n "$version" ] ||
        die "$host_file has no settings, so its version cannot be read: pass --default-version (2 for containerd 1.6/1.7, 3 for containerd 2.x)"
    case "$version" in
        2) section="plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.$handler" ;;
        3) section="plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.$handler" ;;
        *) die "$host_file: config version $version is not supported (2: containerd 1.6/1.7, 3: containerd 2.x)" ;;
    esac

    # A table for this handler written by hand would make containerd refuse the file once
    # our block defines it too (TOML forbids defining a table twice): stop and say so.
    conflict=$(awk -v s="[$section" '
        /^[ \t]*\[/ {
            h = $0; gsub(/[ \t]/, "", h); gsub(/\047/, "\"", h)
            if (index(h, s "]") == 1 || index(h, s ".") == 1) { print NR ": " $0; exit }
        }
    ' "$work/base")
    [ -z "$conflict" ] ||
        die "$host_file already configures runtime \"$handler\" outside the installer's block (line $conflict); remove that table or choose another handler"
fi

# The directories of the config's `imports` globs DIR/*.toml, one a line; a relative one is
# relative to the config's directory, as containerd resolves it.
sed -n 's/^import //p' "$work/top" | while IFS= read -r pattern; do
    case "$pattern" in
        */\*.toml) dir=${pattern%/\*.toml} ;;
        *) continue ;;
    esac
    case "$dir" in
        /*) echo "$dir" ;;
        *) echo "$(dirname "$config")/$dir" ;;
    esac
done >"$work/import-dirs"

# The first of those that exists takes the drop-in; version 3 only (see the top).
dropin=
if [ "$version" = 3 ]; then
    while IFS= read -r dir; do
        if [ -d "$root$dir" ]; then
            dropin=$dir/$handler-runtime.toml
            break
        fi
    done <"$work/import-dirs"
fi

settings() {
    cat <<EOF
[$section]
  # containerd starts containerd-shim-nanovisor-v1 from its PATH for this type.
  runtime_type = "io.containerd.nanovisor.v1"
  # Pod annotations the CRI plugin passes on to the shim (ACL policy, checkpoint image).
  pod_annotations = ["dev.nanovisor.*"]
  [$section.options]
    ConfigPath = "$shim_config"
EOF
}

# What the config and the drop-in should hold. The drop-in's path is absent (not written)
# when the block goes into config.toml, and absent (deleted) on --remove.
cp "$work/base" "$work/config.new"
rm -f "$work/dropin.new"
if [ "$remove" = false ]; then
    if [ -n "$dropin" ]; then
        {
            echo "# Written by the nanovisor installer: the $handler runtime handler. Replaced on every install."
            echo "version = $version"
            echo
            settings
        } >"$work/dropin.new"
    else
        {
            # A file without a final newline gets one, so the block starts on its own line.
            if [ -s "$work/base" ]; then
                if [ "$(tail -c 1 "$work/base" | od -An -c | tr -d ' ')" != '\n' ]; then
                    echo
                fi
                echo
            fi
            echo "$begin_marker"
            [ -z "$version_line" ] || echo "$version_line"
            settings
            echo "$end_marker"
        } >>"$work/config.new"
    fi
fi

# Drop-ins this handler may have left in an imported directory (the config's imports or
# version may have changed since), other than the one it keeps.
: >"$work/stale"
while IFS= read -r dir; do
    f=$dir/$handler-runtime.toml
    if [ -f "$root$f" ] && { [ "$remove" = true ] || [ "$f" != "$dropin" ]; }; then
        echo "$f" >>"$work/stale"
    fi
done <"$work/import-dirs"

same() { cmp -s "$1" "$2"; }

config_changes=false
if [ -e "$host_file" ]; then
    same "$work/config.new" "$work/original" || config_changes=true
else
    [ ! -s "$work/config.new" ] || config_changes=true
fi
dropin_changes=false
if [ -f "$work/dropin.new" ]; then
    { [ -f "$root$dropin" ] && same "$work/dropin.new" "$root$dropin"; } || dropin_changes=true
fi
changed=false
if [ "$config_changes" = true ] || [ "$dropin_changes" = true ] || [ -s "$work/stale" ]; then
    changed=true
fi

if [ "$changed" = false ]; then
    echo unchanged
    exit 0
fi
if [ "$dry_run" = true ]; then
    echo changed
    exit 0
fi

# Replaces FILE with NEW by a rename in FILE's directory, keeping FILE's mode and a backup.
replace() {
    file=$1 new=$2
    tmp=$file.nanovisor-tmp.$$
    if [ -e "$file" ]; then
        cp -p "$file" "$file.nanovisor-backup"
        cp -p "$file" "$tmp"
        cat "$new" >"$tmp"
        echo "configure-containerd: updated $file (backup: $file.nanovisor-backup)" >&2
    else
        cp "$new" "$tmp"
        chmod 0644 "$tmp"
        echo "configure-containerd: wrote $file" >&2
    fi
    # A config bind-mounted as a single file cannot be renamed over: write it in place then.
    if ! mv -f "$tmp" "$file" 2>/dev/null; then
        cat "$new" >"$file"
        rm -f "$tmp"
    fi
}

if [ "$config_changes" = true ]; then
    replace "$host_file" "$work/config.new"
fi
if [ "$dropin_changes" = true ]; then
    replace "$root$dropin" "$work/dropin.new"
fi
while IFS= read -r f; do
    cp -p "$root$f" "$root$f.nanovisor-backup"
    rm -f "$root$f"
    echo "configure-containerd: removed drop-in $root$f (backup: $root$f.nanovisor-backup)" >&2
done <"$work/stale"
echo changed
